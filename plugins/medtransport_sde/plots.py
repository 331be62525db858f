"""The processes' plot: sample paths with the ensemble band against the exact mean ± SD, the
density at the last output, the probability ledger over time, and the stability margin."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import xarray as xr

__all__ = ["process_plot"]


def _time_axis(t: np.ndarray) -> tuple[np.ndarray, str]:
    span = float(t[-1] - t[0]) if t.size else 0.0
    for unit, scale in (("day", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if span >= 3 * scale:
            return t / scale, unit
    return t, "s"


def _margins(ds: xr.Dataset) -> list[dict[str, Any]]:
    report = json.loads(ds.attrs.get("audit_report", "{}") or "{}")
    return [r for r in report.get("results", []) if r.get("stage") == "pre"]


def process_plot(model: Any, ds: xr.Dataset, figure: Any) -> None:
    t, tu = _time_axis(ds["time"].values - ds["time"].values[0])
    units = ds["mean"].attrs["units"]
    label_u = "" if units == "dimensionless" else f" [{units}]"
    axes = figure.subplots(2, 2)
    ax = axes[0, 0]
    paths = ds["sample_paths"].values
    for j in range(paths.shape[1]):
        ax.plot(t, paths[:, j], color="0.6", lw=0.7, alpha=0.8,
                label="sample paths" if j == 0 else None)
    q = ds["quantiles"].values
    ax.fill_between(t, q[:, 0], q[:, -1], color="tab:blue", alpha=0.2,
                    label="5–95 % of the ensemble")
    mean, sd = ds["mean"].values, np.sqrt(ds["variance"].values)
    ax.plot(t, mean, color="tab:blue", lw=2, label="ensemble mean")
    ax.plot(t, mean - sd, color="tab:blue", lw=1, ls=":")
    ax.plot(t, mean + sd, color="tab:blue", lw=1, ls=":", label="ensemble mean ± SD")
    if "exact_mean" in ds:
        em, es = ds["exact_mean"].values, ds["exact_sd"].values
        ax.plot(t, em, "k--", lw=1.5, label="exact mean")
        ax.plot(t, em - es, "k:", lw=1)
        ax.plot(t, em + es, "k:", lw=1, label="exact mean ± SD")
    ax.set_xlabel(f"time [{tu}]")
    ax.set_ylabel(f"{model.state_name}{label_u}")
    ax.set_title(f"{ds.attrs.get('paths', '')} paths, {ds.attrs.get('scheme', '')}")
    ax.legend(fontsize="x-small", loc="best")

    ax = axes[0, 1]
    x = ds["state"].values
    for i in np.unique(np.linspace(1, ds.sizes["time"] - 1, 4).astype(int)):
        ax.step(x, ds["density"].values[i], where="mid", label=f"t = {t[i]:.3g} {tu}")
    ax.set_xlabel(f"{model.state_name}{label_u}")
    ax.set_ylabel(f"density [{ds['density'].attrs['units']}]")
    ax.set_title("histogram density")
    ax.legend(fontsize="x-small")

    ax = axes[1, 0]
    n = float(ds.attrs.get("paths", 1))
    ax.plot(t, ds["alive"].values / n, lw=2, label="alive")
    total = ds["alive"].values.copy()
    for name in ds.data_vars:
        if str(name).startswith("absorbed_"):
            ax.plot(t, ds[name].values / n, lw=1.5,
                    label=str(name).replace("absorbed_", "absorbed at ").replace("_", " "))
            total = total + ds[name].values
    ax.plot(t, total / n, "k--", lw=1, label="alive + absorbed (must be 1)")
    ax.plot(t, ds["beyond_histogram"].values, lw=1, label="alive beyond the histogram")
    ax.set_ylim(-0.05, 1.1)
    ax.set_xlabel(f"time [{tu}]")
    ax.set_ylabel("fraction of paths")
    ax.set_title("probability ledger")
    ax.legend(fontsize="x-small")

    ax = axes[1, 1]
    margins = _margins(ds)
    names = [m["name"] for m in margins] or ["(no margins)"]
    values = [float(m["measured"]) for m in margins] or [0.0]
    colours = ["tab:green" if m["passed"] else "tab:red" for m in margins] or ["0.5"]
    ax.barh(names, values, color=colours)
    ax.axvline(1.0, color="k", ls="--", lw=1, label="stability limit R(h) = 1")
    for i, m in enumerate(margins):
        ax.text(0.02, i, m["detail"][:70], fontsize="xx-small", va="center")
    ax.set_xlabel("R(h): growth of the second moment per step")
    ax.set_title("mean-square stability margin")
    ax.legend(fontsize="x-small", loc="lower right")
    figure.suptitle(model.scenario.name)
    figure.tight_layout()


def pk_plot(model: Any, ds: xr.Dataset, figure: Any) -> None:
    """Concentration paths and band against the exact mean ± SD; the per-path books."""
    t = (ds["time"].values - ds["time"].values[0]) / 3600.0
    ax1, ax2 = figure.subplots(1, 2)
    paths = ds["sample_paths"].values
    for j in range(paths.shape[1]):
        ax1.plot(t, paths[:, j], color="0.6", lw=0.7, label="sample paths" if j == 0 else None)
    q = ds["concentration_quantiles"].values
    ax1.fill_between(t, q[:, 0], q[:, -1], color="tab:blue", alpha=0.2, label="5–95 %")
    ax1.plot(t, ds["concentration_mean"].values, color="tab:blue", lw=2, label="ensemble mean")
    em, es = ds["exact_mean"].values, ds["exact_sd"].values
    ax1.plot(t, em, "k--", label="exact mean")
    ax1.plot(t, em + es, "k:", label="exact mean ± SD")
    ax1.plot(t, em - es, "k:")
    ax1.set_xlabel("time [h]")
    ax1.set_ylabel("concentration [mg/L]")
    ax1.set_title(f"{ds.attrs.get('paths', '')} paths, {ds.attrs.get('scheme', '')}")
    ax1.legend(fontsize="x-small")
    ax2.plot(t, ds["amount"].values[:, 0], label="mean amount in body")
    ax2.plot(t, ds["eliminated"].values, label="mean eliminated")
    ax2.plot(t, ds["amount"].values[:, 0] + ds["eliminated"].values, "k--",
             label="body + eliminated (= dose on every path)")
    ax2.set_xlabel("time [h]")
    ax2.set_ylabel("amount [mg]")
    ax2.set_title("drug ledger")
    ax2.legend(fontsize="x-small")
    figure.suptitle(model.scenario.name)
    figure.tight_layout()
