"""The family's plot: signal against b, ADC per shell, and Monte Carlo against exact."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

if TYPE_CHECKING:
    from medtransport_dwi.model import DWISignal


def _plain_log_ticks(ax: Any) -> None:
    """Log axis ticks as plain numbers (0.5, not 5×10⁻¹)."""
    from matplotlib.ticker import FormatStrFormatter

    ax.yaxis.set_major_formatter(FormatStrFormatter("%.2g"))
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%.2g"))
    ax.tick_params(axis="y", which="minor", labelsize="x-small")


def _cos2_to_fastest(ds: xr.Dataset, weighted: np.ndarray) -> tuple[np.ndarray, str]:
    """cos²θ between each gradient direction and the direction of fastest diffusion (the
    lowest diffusion-weighted signal): for an axially symmetric tensor ln S is linear in it."""
    g = np.asarray(ds["gradient_direction"].values, dtype=float)
    s = np.asarray(ds["signal"].values, dtype=float)
    k = np.flatnonzero(weighted)[int(np.argmin(s[weighted]))]
    axis = g[k] / (np.linalg.norm(g[k]) or 1.0)
    norms = np.linalg.norm(g, axis=1)
    cos = np.divide(g @ axis, norms, out=np.zeros_like(norms), where=norms > 0)
    label = "[" + ", ".join(f"{c:.2g}" for c in axis) + "]"
    return cos ** 2, label


def plot(model: DWISignal, ds: xr.Dataset, figure: Any) -> None:
    ax1, ax2, ax3 = figure.subplots(1, 3)
    b = ds["b_value"].values
    s = ds["signal"].values
    se = ds["signal_standard_error"].values
    weighted = b > 0
    single_shell = len(np.unique(b[weighted])) == 1
    if single_shell and "gradient_direction" in ds and weighted.sum() > 1:
        _single_shell(ds, ax1, ax2, weighted)
    else:
        _multi_shell(model, ds, ax1, ax2)
    if "signal_exact" in ds:
        exact = ds["signal_exact"].values
        ax3.errorbar(exact, s, yerr=2 * se, fmt="o", ms=3, label="Monte Carlo ± 2 SE")
        lo, hi = float(min(exact.min(), s.min())), float(max(exact.max(), s.max()))
        ax3.plot([lo, hi], [lo, hi], "k--", lw=1, label="identity")
        ax3.set_xlabel("exact (matrix formalism) [S/S0]")
        ax3.set_ylabel("Monte Carlo [S/S0]")
        ax3.set_title("Monte Carlo vs exact")
        ax3.legend(fontsize="small")
    else:
        _spin_ledger(ds, ax3)
    figure.suptitle(model.scenario.name)


def _multi_shell(model: DWISignal, ds: xr.Dataset, ax1: Any, ax2: Any) -> None:
    b = ds["b_value"].values
    s = ds["signal"].values
    se = ds["signal_standard_error"].values
    sep = ds["pulse_separation"].values
    b0 = b == 0
    for value in np.unique(sep[~b0]) if (~b0).any() else np.unique(sep):
        # the b = 0 measurement is every diffusion time's starting point
        sel = (sep == value) | b0
        order = np.argsort(b[sel], kind="stable")
        ax1.errorbar(b[sel][order], s[sel][order],
                     yerr=2 * se[sel][order] if se.any() else None, fmt="o-", ms=3, lw=0.8,
                     label=f"Δ = {value:g} ms")
    ax1.set_yscale("log")
    _plain_log_ticks(ax1)
    ax1.set_xlabel("b [s/mm²]")
    ax1.set_ylabel("signal S/S0 (log scale)")
    ax1.set_title(f"signal vs b ({model.method})")
    ax1.legend(fontsize="small")
    if "adc" in ds:
        shell_sep = ds["shell_pulse_separation"].values
        for value in np.unique(shell_sep):
            sel = shell_sep == value
            ax2.plot(ds["shell_b_value"].values[sel], ds["adc"].values[sel], "s-",
                     label=f"Δ = {value:g} ms")
        ax2.legend(fontsize="small")
        ax2.set_xlabel("shell b [s/mm²]")
        ax2.set_ylabel("ADC [µm²/ms]")
    title = "ADC per shell"
    if "fractional_anisotropy" in ds:
        title += (f"\nDTI: FA {float(ds['fractional_anisotropy']):.3f}, "
                  f"MD {float(ds['mean_diffusivity']):.3f} µm²/ms")
    ax2.set_title(title, fontsize="medium")


def _single_shell(ds: xr.Dataset, ax1: Any, ax2: Any, weighted: np.ndarray) -> None:
    """One b-value in many directions: signal and ADC against the direction, not a column
    of points at one b and a one-point 'ADC per shell'."""
    b = float(np.unique(ds["b_value"].values[weighted])[0])
    s = np.asarray(ds["signal"].values, dtype=float)
    se = np.asarray(ds["signal_standard_error"].values, dtype=float)
    cos2, axis = _cos2_to_fastest(ds, weighted)
    s0 = float(np.mean(s[~weighted])) if (~weighted).any() else 1.0
    ax1.errorbar(cos2[weighted], s[weighted] / s0,
                 yerr=2 * se[weighted] / s0 if se.any() else None, fmt="o", ms=3)
    ax1.set_yscale("log")
    _plain_log_ticks(ax1)
    ax1.set_xlabel(f"cos²θ to the fastest direction {axis}")
    ax1.set_ylabel("signal S/S0 (log scale)")
    ax1.set_title(f"signal per direction, b = {b:g} s/mm²", fontsize="medium")
    adc = -np.log(np.clip(s[weighted] / s0, 1e-12, None)) / b * 1e3  # mm²/s → µm²/ms
    ax2.plot(cos2[weighted], adc, "o", ms=3, label="per direction: −ln(S/S0)/b")
    if "mean_diffusivity" in ds:
        md = float(ds["mean_diffusivity"])
        ax2.axhline(md, color="0.3", linestyle="--", lw=1, label=f"DTI MD {md:.3f} µm²/ms")
    ax2.set_xlabel(f"cos²θ to the fastest direction {axis}")
    ax2.set_ylabel("apparent diffusion coefficient [µm²/ms]")
    title = "ADC per direction"
    if "fractional_anisotropy" in ds:
        title += f" (DTI FA {float(ds['fractional_anisotropy']):.3f})"
    ax2.set_title(title, fontsize="medium")
    ax2.legend(fontsize="small")


def _spin_ledger(ds: xr.Dataset, ax: Any) -> None:
    """The spins per compartment at the start and at the end: conserved quantities drawn as
    bars, not as flat lines taking a panel."""
    spins = np.asarray(ds["spins"].values, dtype=float)
    names = [str(c) for c in ds["compartment"].values]
    x = np.arange(len(names))
    ax.bar(x - 0.2, spins[0], width=0.4, label="at t0")
    ax.bar(x + 0.2, spins[-1], width=0.4, label=f"at {ds['time'].values[-1] * 1e3:.3g} ms")
    ax.set_xticks(x, names)
    ax.set_xlabel("compartment")
    ax.set_ylabel("spins per compartment [S0]")
    drift = float(np.max(np.abs(spins - spins[0])))
    ax.set_title(f"spin ledger (largest change {drift:.2g} S0)", fontsize="medium")
    ax.legend(fontsize="small")
