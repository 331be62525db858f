"""Plots of a fit: individual courses against the levels, and the goodness-of-fit panels.

Goodness of fit (the tables a pharmacometrician checks first): DV against PRED and against
IPRED (with the line of identity), CWRES against time and against PRED (with zero and ±2).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

__all__ = ["fit_figure", "save_fit_plot"]

MAX_PANELS = 12


def _observed(ds: xr.Dataset) -> np.ndarray:
    return np.isfinite(ds["IPRED"].values) & np.isfinite(ds["DV"].values)


def goodness_of_fit(ds: xr.Dataset, axes: list[Any]) -> None:
    """DV vs PRED, DV vs IPRED, CWRES vs TIME, CWRES vs PRED on four axes."""
    obs = _observed(ds)
    unit = ds["DV"].attrs.get("units", "")
    dv, pred, ipred = (ds[v].values[obs] for v in ("DV", "PRED", "IPRED"))
    cwres, t = ds["CWRES"].values[obs], ds["TIME"].values[obs]
    for ax, x, name in ((axes[0], pred, "PRED"), (axes[1], ipred, "IPRED")):
        ax.scatter(x, dv, s=10, alpha=0.7)
        top = float(np.nanmax(np.concatenate([x, dv]))) * 1.05 if dv.size else 1.0
        ax.plot([0, top], [0, top], color="k", lw=0.8)
        ax.set_xlabel(f"{name} [{unit}]")
        ax.set_ylabel(f"DV [{unit}]")
        ax.set_title(f"DV vs {name}")
    for ax, x, label in ((axes[2], t, "TIME [h]"), (axes[3], pred, f"PRED [{unit}]")):
        ax.scatter(x, cwres, s=10, alpha=0.7)
        for level, style in ((0, "-"), (2, "--"), (-2, "--")):
            ax.axhline(level, color="k", lw=0.8, ls=style)
        ax.set_xlabel(label)
        ax.set_ylabel("CWRES")
        ax.set_title(f"CWRES vs {label.split()[0]}")


def individual_courses(ds: xr.Dataset, axes: list[Any], curves: dict[int, Any]) -> None:
    """Per subject: the levels, and the individual (and population) predicted course."""
    unit = ds["DV"].attrs.get("units", "")
    obs = _observed(ds)
    for ax, sid in zip(axes, ds["ID"].values[:len(axes)], strict=False):
        mine = (ds["ID_record"].values == sid) & obs
        if sid in curves:
            t, ipred, pred = curves[sid]
            ax.plot(t, pred, color="0.6", ls="--", lw=1, label="PRED (typical)")
            ax.plot(t, ipred, color="C1", lw=1.5, label="IPRED (η̂)")
        ax.scatter(ds["TIME"].values[mine], ds["DV"].values[mine], s=14, color="C0",
                   zorder=3, label="DV")
        ax.set_title(f"ID {sid}", fontsize=9)
        ax.set_xlabel("time [h]", fontsize=8)
        ax.set_ylabel(f"[{unit}]", fontsize=8)
        ax.tick_params(labelsize=7)
    if axes:
        axes[0].legend(fontsize=7)


def fit_figure(ds: xr.Dataset, curves: dict[int, Any], figure: Any) -> None:
    """Individual courses (up to :data:`MAX_PANELS` subjects) above the four GOF panels."""
    n = min(ds.sizes["ID"], MAX_PANELS)
    cols = 4
    rows = -(-n // cols) + 1
    figure.set_size_inches(14, 3.0 * rows)
    grid = figure.add_gridspec(rows, cols)
    ind = [figure.add_subplot(grid[i // cols, i % cols]) for i in range(n)]
    individual_courses(ds, ind, curves)
    gof = [figure.add_subplot(grid[rows - 1, j]) for j in range(4)]
    goodness_of_fit(ds, gof)
    figure.suptitle(f"{ds.attrs.get('title', '')} — {ds.attrs.get('method', '')} fit, "
                    f"OFV {float(ds['ofv']):.2f}")
    figure.tight_layout()


def save_fit_plot(ds: xr.Dataset, curves: dict[int, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure()
    fit_figure(ds, curves, fig)
    fig.savefig(path, dpi=90, format=path.rsplit(".", 1)[-1] if "." in path else "png")


def courses(ds: xr.Dataset, layout: Any, n_points: int = 200) -> dict[int, Any]:
    """(t, IPRED, PRED) on a fine grid per subject, when the plugin's layout offers ``grid``
    (else no curves: the plot shows the levels and the record predictions only)."""
    grid = getattr(layout, "grid", None)
    if grid is None:
        return {}
    t_end = float(np.nanmax(ds["TIME"].values)) * 1.05 + 1e-9
    times = np.linspace(0.0, t_end, n_points)
    names = [str(v) for v in ds.data_vars if f"typical_{v}" in ds]
    phi = np.stack([ds[n].values for n in names], axis=1)
    typical = np.stack([np.full(ds.sizes["ID"], float(ds[f"typical_{n}"])) for n in names],
                       axis=1)
    if "covariate_factor" in ds:
        typical = typical * ds["covariate_factor"].values
    ipred = grid(phi, times)
    pred = grid(typical, times)
    return {sid: (times, ipred[i], pred[i]) for i, sid in enumerate(ds["ID"].values)}
