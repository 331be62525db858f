"""The PK models' plots: concentration–time curves and the drug account, in hours, mg and mg/L.

One patient: the concentrations (left) with the NCA of the central compartment and any
dialysis or CRRT sessions shaded with the drug each removed, and the drug account (right): in
the body, what the ledger expects, given, eliminated, dialysate, unabsorbed.

A population: percentile bands of the central concentration (left) and — per patient, never
summed over patients, which has no clinical meaning — the bands of the drug in the body and of
the drug eliminated (right); a chunked population's summary, which keeps no amounts, shows the
distribution of the patients' exposure (AUC or Cmax) instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

__all__ = ["plot_one", "plot_population"]

_BANDS = (5, 25, 50, 75, 95)


def _hours(dataset: xr.Dataset) -> np.ndarray:
    return np.asarray(dataset["time"].values, dtype=float) / 3600.0


def _nca_text(dataset: xr.Dataset) -> str:
    rows = [(label, dataset[f"nca_{key}"]) for key, label in (
        ("cmax", "Cmax"), ("tmax", "Tmax"), ("auc_last", "AUClast"),
        ("auc_inf", "AUCinf"), ("half_life", "t½"), ("clearance", "CL"))
        if f"nca_{key}" in dataset and dataset[f"nca_{key}"].ndim == 0]
    if not rows:
        return ""
    text = "\n".join(f"{label} {float(v):.4g} {v.attrs['units']}" for label, v in rows)
    # NCA is of the whole sampled profile; after several doses it is not a single-dose NCA
    return "NCA, central, whole profile\n" + text


def _dose_times(model: Any) -> list[float]:
    """The dose times of the scenario's regimens, in hours."""
    times: set[float] = set()
    for r in getattr(model, "regimens", []):
        count = r.count if r.every else 1
        times.update(r.at + k * (r.every or 0.0) for k in range(count))
    return sorted(times)


def _interval_text(model: Any, dataset: xr.Dataset, doses: list[float]) -> str:
    """NCA of the first and the last dosing interval (a repeated regimen is not one profile:
    its AUC to infinity and terminal half-life mean nothing): Cmax, Tmax after the dose,
    the trough and AUCτ of each."""
    from medtransport.units import Q_
    from medtransport_pk.nca import nca

    t = _hours(dataset)
    conc = dataset["concentration"].sel(tissue="central")
    unit = str(conc.attrs.get("units", ""))
    ends = [*doses[1:], float(t[-1])]
    lines = [f"central, {len(doses)} doses"]
    for label, start, end in (("first interval", doses[0], ends[0]),
                              ("last interval", doses[-1], ends[-1])):
        sel = (t >= start - 1e-9) & (t <= end + 1e-9)
        if sel.sum() < 3:
            continue
        tt, cc = t[sel] - start, np.clip(conc.values[sel], 0.0, None)
        try:
            r = nca(Q_(tt, "h"), Q_(cc, unit), route="extravascular")
        except ValueError:
            continue
        lines += [f"{label} ({end - start:.3g} h)",
                  f" Cmax   {r.cmax.magnitude:.4g} {unit}",
                  f" Tmax   {r.tmax.magnitude:.3g} h after the dose",
                  f" trough {cc[-1]:.4g} {unit}",
                  f" AUCτ   {r.auc_last.magnitude:.4g} h·{unit}"]
    return "\n".join(lines) if len(lines) > 1 else ""


def _shade_sessions(ax: Any, dataset: xr.Dataset) -> None:
    """Dialysis and CRRT sessions shaded, each labelled with the drug it removed."""
    if "session_start" not in dataset or "dialysis_removed" not in dataset \
            or dataset["dialysis_removed"].ndim != 1:
        return
    unit = dataset["dialysis_removed"].attrs.get("units", "")
    for j, (a, b) in enumerate(zip(dataset["session_start"].values,
                                   dataset["session_end"].values, strict=True)):
        ax.axvspan(float(a), float(b), color="tab:blue", alpha=0.12, zorder=0,
                   label="dialysis / CRRT" if j == 0 else None)
        # at the foot of the span (x in data, y in axes), clear of the legend
        ax.annotate(f"−{float(dataset['dialysis_removed'].values[j]):.3g} {unit}",
                    (float(b), 0.03), xycoords=ax.get_xaxis_transform(), xytext=(2, 0),
                    textcoords="offset points", fontsize="x-small", va="bottom")
    ax.legend(fontsize="small", loc="upper left")


def plot_one(model: Any, dataset: xr.Dataset, figure: Any) -> None:
    """Concentration–time curves (left) and the drug account (right) of one patient."""
    ax1, ax2 = figure.subplots(1, 2)
    t = _hours(dataset)
    conc = dataset["concentration"]
    for name in conc["tissue"].values:
        ax1.plot(t, conc.sel(tissue=name).values, label=str(name))
    ax1.set_xlabel("time [h]")
    ax1.set_ylabel(f"concentration [{conc.attrs['units']}]")
    ax1.set_title("concentration–time")
    ax1.legend(fontsize="small", loc="upper left")
    _shade_sessions(ax1, dataset)
    doses = _dose_times(model)
    if len(doses) > 1:
        text = _interval_text(model, dataset, doses)
        for d in doses:
            ax1.axvline(d, color="0.85", linewidth=0.8, zorder=0)
    else:
        text = _nca_text(dataset)
    if text:
        # beside the axes, not over the curves
        ax1.annotate(text, (1.02, 1.0), xycoords="axes fraction", ha="left", va="top",
                     fontsize="x-small", family="monospace",
                     bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.9})
    unit = dataset["amount"].attrs["units"]
    ax2.plot(t, dataset["amount"].sum("compartment").values, label="in the body")
    if "drug_expected" in dataset:
        ax2.plot(t, dataset["drug_expected"].values, "--", label="ledger: in the body")
    if "drug_inflow" in dataset:
        start = float(dataset["drug_expected"].values[0]) if "drug_expected" in dataset \
            else 0.0
        ax2.plot(t, start + dataset["drug_inflow"].values, label="given (from t0)")
    ax2.plot(t, dataset["eliminated"].values, label="eliminated")
    if "dialysate" in dataset:
        ax2.plot(t, dataset["dialysate"].values, label="dialysate (dialysis, CRRT)")
    if "unabsorbed" in dataset and float(dataset["unabsorbed"].max()) > 0:
        ax2.plot(t, dataset["unabsorbed"].values, label="unabsorbed")
    ax2.set_xlabel("time [h]")
    ax2.set_ylabel(f"amount of drug [{unit}]")
    ax2.set_title("drug account")
    ax2.legend(fontsize="small")
    figure.suptitle(model.scenario.name)


def _bands(ax: Any, t: np.ndarray, values: np.ndarray, label: str, color: str) -> None:
    """Median line and 5–95 % band of (time, patient) values."""
    q = np.nanpercentile(values, (5, 50, 95), axis=1)
    ax.fill_between(t, q[0], q[2], alpha=0.2, color=color, linewidth=0)
    ax.plot(t, q[1], color=color, label=f"{label}: median, 5–95 % band")


def plot_population(model: Any, dataset: xr.Dataset, figure: Any) -> None:
    """Central-concentration bands (left) and, per patient, the drug account or the
    exposure distribution (right)."""
    ax1, ax2 = figure.subplots(1, 2)
    t = _hours(dataset)
    n = dataset.sizes["patient"]
    conc = dataset["concentration"].sel(tissue="central").transpose("time", "patient")
    q = np.nanpercentile(conc.values, _BANDS, axis=1)
    ax1.fill_between(t, q[0], q[4], alpha=0.25, label="5–95 %", linewidth=0)
    ax1.fill_between(t, q[1], q[3], alpha=0.4, label="25–75 %", linewidth=0)
    ax1.plot(t, q[2], label="median")
    ax1.set_xlabel("time [h]")
    ax1.set_ylabel(f"central concentration [{conc.attrs['units']}]")
    ax1.set_title(f"central concentration, {n} virtual patients")
    ax1.legend(fontsize="small", loc="upper left")
    if "amount" in dataset and "eliminated" in dataset:
        unit = dataset["amount"].attrs["units"]
        body = dataset["amount"].sum("compartment").transpose("time", "patient").values
        _bands(ax2, t, body, "in the body", "C0")
        _bands(ax2, t, dataset["eliminated"].transpose("time", "patient").values,
               "eliminated", "C3")
        ax2.set_xlabel("time [h]")
        ax2.set_ylabel(f"amount of drug per patient [{unit}]")
        ax2.set_title("drug account per patient")
        ax2.legend(fontsize="small", loc="upper left")
        if "drug_residual" in dataset:
            worst = float(np.abs(dataset["drug_residual"]).max())
            ax2.text(0.98, 0.02, f"largest |ledger residual| of any patient: {worst:.2g} {unit}",
                     transform=ax2.transAxes, ha="right", va="bottom", fontsize="x-small")
    else:
        _exposure(ax2, dataset)
    figure.suptitle(model.scenario.name)


def _exposure(ax: Any, dataset: xr.Dataset) -> None:
    """Histogram of the patients' exposure: the first of AUC over 24 h, AUC to the last
    sample, Cmax that the result has."""
    for key, label in (("nca_auc_24h", "AUC over 24 h"), ("nca_auc_last", "AUC to the last "
                       "sample"), ("nca_cmax", "Cmax")):
        if key in dataset and dataset[key].dims == ("patient",):
            values = np.asarray(dataset[key].values, dtype=float)
            values = values[np.isfinite(values)]
            from medtransport.display import pretty

            unit = pretty(str(dataset[key].attrs.get("units", "")))  # mg·h/L, not mg/L*h
            ax.hist(values, bins=min(40, max(5, values.size // 20)), color="C0", alpha=0.7)
            p5, p50, p95 = np.percentile(values, (5, 50, 95))
            for v, style in ((p5, ":"), (p50, "-"), (p95, ":")):
                ax.axvline(v, color="black", linestyle=style, linewidth=1)
            ax.set_xlabel(f"{label} [{unit}]")
            ax.set_ylabel("patients")
            ax.set_title(f"exposure: median {p50:.4g}, 5–95 % {p5:.4g}–{p95:.4g} {unit}",
                         fontsize="medium")
            return
    ax.set_axis_off()
    ax.text(0.5, 0.5, "no per-patient exposure in this result", ha="center",
            transform=ax.transAxes)
