"""Plots of the noise models: image strips over t, SNR(t) and the variance budget; for the
reverse process, the sample density over the reverse steps and its moments."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

__all__ = ["plot_forward", "plot_reverse"]


def _strip(figure: Any, ds: xr.Dataset, var: str, title: str) -> None:
    n_time = ds.sizes["time"]
    show = np.unique(np.linspace(0, n_time - 1, min(n_time, 6)).astype(int))
    data = ds[var]
    axes = figure.subplots(1, len(show), squeeze=False)[0]
    for ax, i in zip(axes, show, strict=True):
        frame = data.isel(time=int(i))
        if frame.ndim >= 2:
            while frame.ndim > 2:
                frame = frame.isel({frame.dims[-1]: frame.sizes[frame.dims[-1]] // 2})
            ax.imshow(frame.values, cmap="gray", aspect="auto")
            ax.set_xticks([])
            ax.set_yticks([])
        else:
            ax.plot(frame.values, lw=0.7)
            ax.set_ylim(-4, 4)
            ax.set_yticks([])
        ax.set_title(f"k = {int(ds['step'].values[i])}", fontsize="small")
    figure.suptitle(title, fontsize="small")


def plot_forward(model: Any, ds: xr.Dataset, figure: Any) -> None:
    top, bottom = figure.subfigures(2, 1, height_ratios=[1, 1.3])
    _strip(top, ds, "image", "noised data x_k (normalized)")
    k = ds["diffusion_step"].values
    ax, ax2 = bottom.subplots(1, 2)
    snr = ds["snr"].values
    positive = snr > 0
    ax.semilogy(k[positive], snr[positive], label="SNR_k = ᾱ/(1 − ᾱ)")
    ax.semilogy(k, ds["beta"].values, "--", label="β_k")
    ax.set_xlabel("DDPM step k")
    ax.set_ylabel("SNR and β (log scale)")
    ax.set_title(f"SNR (terminal {ds.attrs.get('terminal_snr', float('nan')):.3g})")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax = ax2
    steps = ds["step"].values
    ax.plot(k, ds["alpha_bar"].values, label="signal ᾱ")
    ax.plot(k, 1.0 - ds["alpha_bar"].values, label="noise 1 − ᾱ")
    if "variance_expected" in ds:
        ax.plot(steps, ds["variance_expected"].values, "k-", lw=0.8, label="ledger m₂")
    if "variance_stored" in ds:
        ax.plot(steps, ds["variance_stored"].values, "ro", ms=4, label="measured m₂(x_k)")
    ax.set_ylim(-0.05, max(1.2, float(np.nanmax(ds.get("variance_stored", xr.DataArray([1])))) +
                                0.05))
    ax.set_xlabel("DDPM step k")
    ax.set_ylabel("m₂ (standardized)")
    ax.set_title("variance budget")
    # outside the axes: inside, it covered the curves it explains
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.suptitle(model.scenario.name, fontsize="medium")


def plot_reverse(model: Any, ds: xr.Dataset, figure: Any) -> None:
    top, bottom = figure.subfigures(2, 1, height_ratios=[1, 1.3])
    n_time = ds.sizes["time"]
    show = np.unique(np.linspace(0, n_time - 1, min(n_time, 6)).astype(int))
    axes = top.subplots(1, len(show), squeeze=False)[0]
    top.suptitle("sample density over the reverse steps", fontsize="small")
    for ax, i in zip(axes, show, strict=True):
        d = ds["density"].isel(time=int(i))
        ax.pcolormesh(ds["x"].values, ds["y"].values, d.transpose("y", "x").values,
                      cmap="magma")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"k = {int(ds['step'].values[i])}", fontsize="small")
    ax, ax2 = bottom.subplots(1, 2)
    final = ds["samples"].isel(time=-1).values
    ax.scatter(final[:, 0], final[:, 1], s=1, alpha=0.3, label="samples at k = 0")
    means = ds["component_mean"].values
    ax.plot(means[:, 0], means[:, 1], "r+", ms=12, label="component means")
    ax.set_aspect("equal")
    ax.set_xlabel(str(ds["axis"].values[0]))
    ax.set_ylabel(str(ds["axis"].values[1]))
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title("generated data")
    ax = ax2
    steps = ds["step"].values
    for a, name in enumerate(ds["axis"].values):
        ax.plot(steps, ds["sample_variance"].values[:, a], "o", ms=3,
                label=f"sample var {name}")
        if "reference_variance" in ds:
            ax.plot(steps, ds["reference_variance"].values[:, a], "-", lw=0.8,
                    label=f"exact var {name}")
    ax.invert_xaxis()
    ax.set_xlabel("DDPM step k (reverse time →)")
    ax.set_ylabel("variance")
    ax.set_title("moments along the reverse process")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.suptitle(model.scenario.name, fontsize="medium")
