"""The processes' plot: sample paths with the ensemble band against the exact mean ± SD, the
density at the last output, the probability ledger over time, and the stability margin."""

from __future__ import annotations

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


def stability_panel(ax: Any, model: Any, ds: xr.Dataset) -> None:
    """R(Δt), the growth of the second moment per step, against the step Δt: the run's step, the
    largest stable one, and the limit 1."""
    from medtransport.audit.ms_stability import largest_ms_stable_step, ms_growth, sde_ms_stable
    from medtransport.display import duration

    sde, h = model.sde(), model.scenario.time.dt
    scheme = model.method
    if not sde_ms_stable(sde):
        ax.text(0.5, 0.5, "mean-square stability not applicable:\nthe SDE's own second "
                "moment does not decay", ha="center", va="center", transform=ax.transAxes)
        ax.set_title("mean-square stability margin")
        ax.set_axis_off()
        return
    h_star = largest_ms_stable_step(sde, scheme)
    top = 2.0 * max(h, h_star if np.isfinite(h_star) else h)
    hs = np.linspace(top / 400, top, 400)
    r = [ms_growth(sde, x, scheme) for x in hs]
    # the unit the run's step is spoken in (a 15 min step on an axis of minutes)
    scale, unit = (3600.0, "h") if top > 7200 else (60.0, "min") if top > 120 else (1.0, "s")
    ax.plot(hs / scale, r, lw=2, label=f"R(Δt), {scheme}")
    ax.axhline(1.0, color="k", ls="--", lw=1, label="limit R = 1")
    if np.isfinite(h_star):
        ax.axvline(h_star / scale, color="tab:red", ls=":", label=f"largest stable step "
                   f"{duration(h_star)}")
    r_run = ms_growth(sde, h, scheme)
    ax.plot([h / scale], [r_run], "o", color="tab:green" if r_run < 1 else "tab:red", ms=8,
            label=f"this run: Δt = {duration(h)}, R = {r_run:.4g}")
    ax.set_xlabel(f"time step Δt [{unit}]")
    ax.set_ylabel("R(Δt): growth of E[X²] per step")
    ax.set_title("mean-square stability margin")
    ax.legend(fontsize="x-small", loc="best")


def _shown_unit(model: Any, ds: xr.Dataset) -> tuple[str, float, str]:
    """The state's unit on the axes, the factor from it to the stored unit, and the density's
    unit: the unit the scenario was written in (µm, mmHg, mg/L), counts in 10³ or 10⁶ (not
    with matplotlib's detached ``1e6`` offset), a dimensionless state without brackets."""
    from medtransport.display import DisplayUnits, convert, pretty

    canonical = str(ds["mean"].attrs["units"])
    values = ds["state"].values
    if canonical in ("dimensionless", "1", ""):
        return "", 1.0, ""
    if canonical in ("cell", "cells"):
        reach = float(np.nanmax(np.abs(values)))
        power = 6 if reach >= 1e6 else 3 if reach >= 1e4 else 0
        if power:
            unit = f"10{'⁶' if power == 6 else '³'} cells"
            return unit, 10.0 ** power, f"per {unit}"
        return "cells", 1.0, "per cell"
    unit = DisplayUnits(model).unit(model.state_name, canonical, values)
    try:
        scale = float(convert(1.0, unit, canonical))
    except Exception:  # an unconvertible choice: show what the result holds
        unit, scale = canonical, 1.0
    shown = pretty(unit)
    if "/" in shown and "(" not in shown and shown.count("/") == 1:
        top, bottom = shown.split("/")
        inverse = bottom if top == "1" else f"{bottom}/{top}"
    else:
        inverse = f"1/{shown}" if " " not in shown and "·" not in shown else f"1/({shown})"
    return shown, scale, inverse


def process_plot(model: Any, ds: xr.Dataset, figure: Any) -> None:
    figure.set_size_inches(13, 8)
    t, tu = _time_axis(ds["time"].values - ds["time"].values[0])
    units, scale, inverse = _shown_unit(model, ds)
    label_u = f" [{units}]" if units else ""
    axes = figure.subplots(2, 2)
    ax = axes[0, 0]
    paths = ds["sample_paths"].values / scale
    for j in range(paths.shape[1]):
        ax.plot(t, paths[:, j], color="0.6", lw=0.7, alpha=0.8,
                label="sample paths" if j == 0 else None)
    q = ds["quantiles"].values / scale
    ax.fill_between(t, q[:, 0], q[:, -1], color="tab:blue", alpha=0.2,
                    label="5–95 % of the ensemble")
    mean, sd = ds["mean"].values / scale, np.sqrt(ds["variance"].values) / scale
    ax.plot(t, mean, color="tab:blue", lw=2, label="ensemble mean")
    ax.plot(t, mean - sd, color="tab:blue", lw=1, ls=":")
    ax.plot(t, mean + sd, color="tab:blue", lw=1, ls=":", label="ensemble mean ± SD")
    if "exact_mean" in ds:
        em, es = ds["exact_mean"].values / scale, ds["exact_sd"].values / scale
        ax.plot(t, em, "k--", lw=1.5, label="exact mean")
        ax.plot(t, em - es, "k:", lw=1)
        ax.plot(t, em + es, "k:", lw=1, label="exact mean ± SD")
    ax.set_xlabel(f"time [{tu}]")
    ax.set_ylabel(f"{model.state_name}{label_u}")
    ax.set_title(f"{ds.attrs.get('paths', '')} paths, {ds.attrs.get('scheme', '')}")
    # beside the panel: inside, "best" still covered part of a band that fills the axes
    ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0),
              borderaxespad=0.0)

    ax = axes[0, 1]
    x = ds["state"].values / scale
    for i in np.unique(np.linspace(1, ds.sizes["time"] - 1, 4).astype(int)):
        ax.step(x, ds["density"].values[i] * scale, where="mid", label=f"t = {t[i]:.3g} {tu}")
    ax.set_xlabel(f"{model.state_name}{label_u}")
    ax.set_ylabel(f"probability density [{inverse}]" if inverse else "probability density")
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
    ax.plot(t, ds["beyond_histogram"].values, lw=1,
            label="alive beyond the histogram\n(stored, may come back)")
    ax.set_ylim(-0.05, 1.1)
    ax.set_xlabel(f"time [{tu}]")
    ax.set_ylabel("fraction of paths")
    ax.set_title("probability ledger")
    # beside, like the paths' legend above: the column's margin is there anyway
    ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0),
              borderaxespad=0.0)

    stability_panel(axes[1, 1], model, ds)
    figure.suptitle(model.scenario.name)


def pk_plot(model: Any, ds: xr.Dataset, figure: Any) -> None:
    """Concentration paths and band against the exact mean ± SD; the per-path books."""
    t = (ds["time"].values - ds["time"].values[0]) / 3600.0
    figure.set_size_inches(15, 4.5)
    ax1, ax2, ax3 = figure.subplots(1, 3)
    stability_panel(ax3, model, ds)
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
