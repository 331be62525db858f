"""Plots of the dialysis plugin: the urea saw-tooth with Kt/V per session, the books, and drug
concentrations with the sessions shaded."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

__all__ = ["plot_drug", "plot_urea", "shade_sessions"]


def shade_sessions(ax: Any, starts_h: np.ndarray, stops_h: np.ndarray, scale: float) -> None:
    for k, (a, b) in enumerate(zip(starts_h, stops_h, strict=True)):
        ax.axvspan(a / scale, b / scale, color="tab:blue", alpha=0.12,
                   label="dialysis session" if k == 0 else None)


#: Legends sit beside the panels (inside they hide the curves: the last pre-dialysis peak,
#: the cumulative books), far enough right to clear the urea panel's BUN axis.
_BESIDE = {"loc": "center left", "bbox_to_anchor": (1.1, 0.5), "fontsize": "x-small"}


#: The urea and water books' terms as a nephrologist names them (all cumulative).
_BOOK_TERMS = {"urea_generated": "generated", "dialysate_removed": "removed by dialysis",
               "renal_removed": "removed by residual renal function",
               "water_intake": "intake", "water_ultrafiltration": "ultrafiltration",
               "water_urine": "urine"}


def _time_axis(ds: xr.Dataset) -> tuple[float, str]:
    """Hours per axis unit and its name: days beyond two days (a dialysis week), else h."""
    span_h = float(ds["time"].values[-1] - ds["time"].values[0]) / 3600.0
    return (24.0, "days") if span_h > 48 else (1.0, "h")


def _headroom(ax: Any, share: float = 0.18) -> None:
    """Room above the highest curve for the per-session labels, inside the frame."""
    low, high = ax.get_ylim()
    ax.set_ylim(low, high + share * (high - low))


def _median(var: xr.DataArray) -> np.ndarray:
    return var.median("patient").values if "patient" in var.dims else var.values


def plot_urea(model: Any, ds: xr.Dataset, figure: Any) -> None:
    from medtransport.display import pretty

    axes = figure.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1, 1]})
    scale, tunit = _time_axis(ds)
    t_d = ds["time"].values / 3600.0 / scale
    starts = np.array([s.start for s in model.sessions])
    stops = np.array([s.stop for s in model.sessions])
    ax = axes[0]
    conc = ds["concentration"]
    label_p = " (median patient)" if "patient" in conc.dims else ""
    pools = [str(name) for name in conc["compartment"].values]
    for name in pools:
        # one pool is the whole urea space; two are named by where the urea is
        pool = "urea (single pool)" if len(pools) == 1 else f"urea, {name.replace('_', ' ')}"
        ax.plot(t_d, _median(conc.sel(compartment=name)), label=f"{pool}{label_p}")
    _headroom(ax)
    shade_sessions(ax, starts, stops, scale)
    if "sp_ktv" in ds:
        sp = _median(ds["sp_ktv"])
        pre = _median(ds["pre_urea"])
        for k, t_s in enumerate(ds["session_start"].values / 3600.0 / scale):
            flag = "" if sp[k] >= 1.2 else " < 1.2"
            ax.annotate(f"Kt/V {sp[k]:.2f}{flag}", (t_s, pre[k]), textcoords="offset points",
                        xytext=(2, 4), fontsize="x-small",
                        color="black" if sp[k] >= 1.2 else "tab:red")
    ax.set_ylabel(f"urea [{pretty(str(conc.attrs['units']))}]")
    bun = ax.secondary_yaxis("right", functions=(lambda c: c * 2.80134,
                                                 lambda b: b / 2.80134))
    bun.set_ylabel("BUN [mg/dL]")
    extra = (f"; TAC {float(_median(ds['time_averaged_concentration'])):.1f} mmol/L, nPCR "
             f"{float(_median(ds['npcr'])):.2f} g/kg/day")
    if "std_ktv" in ds:
        extra += (f", stdKt/V {float(_median(ds['std_ktv'])):.2f} (Leypoldt "
                  f"{float(_median(ds['std_ktv_leypoldt'])):.2f})")
    if "e_ktv" in ds and "rebound" in ds and float(np.max(_median(ds["rebound"]))) > 0:
        extra += (f"; eKt/V {float(np.mean(_median(ds['e_ktv']))):.2f} (rate equation "
                  f"{float(np.mean(_median(ds['e_ktv_rate_equation']))):.2f}), rebound "
                  f"{100 * float(np.mean(_median(ds['rebound']))):.0f} %")
    ax.set_title(f"urea over time{extra}", fontsize="small")
    ax.legend(**_BESIDE)
    for ax, species, terms in ((axes[1], "urea", ("urea_generated", "dialysate_removed",
                                                  "renal_removed")),
                               (axes[2], "water", ("water_intake", "water_ultrafiltration",
                                                   "water_urine"))):
        total = "patient" if "patient" in ds.dims else None

        def summed(v: xr.DataArray, total: Any = total) -> np.ndarray:
            if total and total in v.dims:
                return v.sum(total).values
            # a term every patient shares is stored once
            return v.values * (ds.sizes[total] if total else 1)

        unit = pretty(str(ds[terms[0]].attrs["units"]))
        stored = ds["urea_amount" if species == "urea" else "water_volume"].sum("compartment")
        ax.plot(t_d, summed(stored), lw=2, label="in the body (from the states)")
        if f"{species}_expected" in ds:
            ax.plot(t_d, summed(ds[f"{species}_expected"]), "--", label="ledger expects")
        for name in terms:
            ax.plot(t_d, summed(ds[name]), label=_BOOK_TERMS.get(name, name.replace("_", " ")))
        if f"{species}_residual" in ds:
            worst = float(np.abs(ds[f"{species}_residual"]).max())
            who = f", all {ds.sizes['patient']} patients" if total else ""
            ax.set_title(f"{species} books{who} (max |residual| {worst:.1e} {unit})",
                         fontsize="small")
        ax.set_ylabel(f"{species} [{unit}]")
        ax.legend(**_BESIDE)
    axes[-1].set_xlabel(f"time [{tunit}]")
    if figure.get_layout_engine() is None:  # the CLI's constrained layout places them itself
        figure.subplots_adjust(right=0.8, hspace=0.35)
    figure.suptitle(model.scenario.name)


#: The drug books' terms as a clinician names them.
_DRUG_TERMS = {"given": "given (cumulative)", "renal_eliminated": "eliminated, renal",
               "nonrenal_eliminated": "eliminated, non-renal",
               "dialysate_removed": "removed by dialysis"}


def plot_drug(model: Any, ds: xr.Dataset, figure: Any) -> None:
    from medtransport.display import pretty

    ax1, ax2 = figure.subplots(2, 1, sharex=True)
    scale, tunit = _time_axis(ds)
    t = ds["time"].values / 3600.0 / scale
    conc = ds["concentration"]
    med = _median(conc.sel(tissue="central"))
    ax1.plot(t, med, label="central" + (" (median)" if "patient" in conc.dims else ""))
    starts = np.array([s.start for s in model.sessions])
    stops = np.array([s.stop for s in model.sessions])
    shade_sessions(ax1, starts, stops, scale)
    _headroom(ax1, 0.25)
    if "session_removed" in ds:
        removed = _median(ds["session_removed"])
        frac = _median(ds["session_removed_fraction"])
        for k, (a, b) in enumerate(zip(starts, stops, strict=True)):
            if k < removed.size:
                # in the headroom above the curve, centred on the session
                ax1.annotate(f"−{removed[k]:.0f} {pretty(ds['session_removed'].attrs['units'])}"
                             f"\n({100 * frac[k]:.0f} %)", ((a + b) / 2 / scale, 0.97),
                             xycoords=("data", "axes fraction"), ha="center", va="top",
                             fontsize="x-small")
    ax1.set_ylabel(f"concentration [{pretty(str(conc.attrs['units']))}]")
    ax1.legend(**_BESIDE)
    total = "patient" if "patient" in ds.dims else None
    unit = pretty(str(ds["amount"].attrs["units"]))

    def summed(v: xr.DataArray) -> np.ndarray:
        return v.sum(total).values if total else v.values

    ax2.plot(t, summed(ds["amount"].sum("compartment")), lw=2, label="in the body")
    for name, label in _DRUG_TERMS.items():
        if name in ds:
            ax2.plot(t, summed(ds[name]), label=label)
    if "drug_residual" in ds:
        worst = float(np.abs(ds["drug_residual"]).max())
        ax2.set_title(f"drug books (max |residual| {worst:.1e} {unit})", fontsize="small")
    ax2.set_xlabel(f"time [{tunit}]")
    ax2.set_ylabel(f"amount of drug [{unit}]")
    ax2.legend(**_BESIDE)
    figure.suptitle(model.scenario.name)
