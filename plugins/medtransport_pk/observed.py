"""Non-compartmental analysis of a data set's observations, one subject at a time.

For every subject of a :class:`~medtransport_pk.records.RecordTable`, its observations (EVID 0,
MDV 0, a DV) at their times since the subject's first dose go to :func:`medtransport_pk.nca.nca`
(linear-up/log-down AUC; λz by the adjusted-R² rule; a point at the dose time added when the
first sample is later). Observations before the first dose are left out.

- Cmax, Tmax, Clast and Tlast always (times since the first dose);
- after a single dose (one dose record, no ADDL, no SS) also AUClast, λz, t½, AUC∞ and, when
  the DV is a concentration of the dosed amount, CL = Dose/AUC∞ (CL/F after an extravascular
  dose) and V_z = Dose/(λz·AUC∞). After several doses these are NaN: an AUC from the first dose
  through sparse troughs and peaks would mislead, and the per-interval AUCτ is the multiple-dose
  NCA's (:mod:`medtransport_pk.nca`).

Per dosing interval (:mod:`medtransport_pk.subject_intervals`: from each dose time of the
subject to its next, the last to dose + II) with at least two observations, one row of
``observed_interval_*`` (the subject, the interval's number, its start): the number of
observations in it, Cmax, Tmax (since the interval's dose), Cmin and the AUC from the first
to the last observation in the interval (linear-up/log-down). That is AUCτ when the samples
span the interval (a sample at the dose and one at the next); with sparser samples it is a
partial AUC, and no point is extrapolated to the interval's ends.

The route decides the start of the AUC and the λz window: an infusion (RATE ≠ 0), an
extravascular dose (into the depot), or an IV bolus.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import xarray as xr

from medtransport.units import Q_
from medtransport_pk.nca import nca
from medtransport_pk.records import RecordTable

__all__ = ["OBSERVED_METRICS", "attach_observed_nca", "observed_interval_nca", "observed_nca",
           "subject_summary"]

#: metric → (long name, how its unit follows from the time unit t, DV unit c and amount unit a)
OBSERVED_METRICS = {
    "cmax": ("largest observed DV", "c"),
    "tmax": ("time of the largest observed DV since the first dose", "t"),
    "clast": ("last positive observed DV", "c"),
    "tlast": ("time of the last positive observed DV since the first dose", "t"),
    "auc_last": ("AUC of the observed DV from the dose to Tlast (single dose)", "c*t"),
    "lambda_z": ("terminal slope of the observed DV (single dose)", "1/t"),
    "half_life": ("terminal half-life of the observed DV (single dose)", "t"),
    "auc_inf": ("AUC of the observed DV extrapolated to infinity (single dose)", "c*t"),
    "clearance": ("dose/AUC∞ of the observed DV (CL/F if extravascular; single dose)", "cl"),
    "volume_z": ("dose/(λz·AUC∞) of the observed DV (single dose)", "v"),
}


def _route(table: RecordTable, i: int) -> str:
    if table.rate[i] != 0:
        return "infusion"
    cmt = int(table.cmt[i])
    depot = table.compartments.get(cmt) == "depot" or (
        cmt == 0 and table.compartments.get(1) == "depot")
    return "extravascular" if depot else "iv_bolus"


def _units(table: RecordTable) -> dict[str, str]:
    c = table.dv_unit or "1"
    a = table.amount_unit
    auc = f"h*{c}"
    units = {"c": c, "t": "h", "c*t": auc, "1/t": "1/h", "cl": "", "v": ""}
    per_volume = Q_(1.0, a) / Q_(1.0, c)
    if per_volume.check("[volume]"):
        units["cl"], units["v"] = "L/h", "L"
    return units


def observed_nca(table: RecordTable) -> xr.Dataset:
    """NCA of every subject's observed DV, as an :class:`xarray.Dataset` over ``subject`` (the
    IDs) with variables ``observed_<metric>`` (units from the DV's, the hour and the dose's)
    and ``observed_n``, ``doses`` (counted with their ADDL) and ``dose_route``."""
    ids = table.subjects()
    units = _units(table)
    values = {m: np.full(ids.size, math.nan) for m in OBSERVED_METRICS}
    n_obs = np.zeros(ids.size, dtype=np.int64)
    n_doses = np.zeros(ids.size, dtype=np.int64)
    routes = np.full(ids.size, "", dtype=object)
    # every record's individual (position in ``ids``; an ID that comes back is a new one)
    subj = table.individuals()
    rows = np.arange(len(table))
    dose_rows = rows[np.isin(table.evid, (1, 4))]
    n_doses[:] = np.bincount(subj[dose_rows], weights=1 + table.addl[dose_rows],
                             minlength=ids.size).astype(np.int64)
    n_dose_records = np.bincount(subj[dose_rows], minlength=ids.size)
    first = np.full(ids.size, len(table), dtype=np.int64)
    np.minimum.at(first, subj[dose_rows], dose_rows)
    has_dose = first < len(table)
    first = np.where(has_dose, first, 0)
    t0 = np.where(has_dose, table.time[first], -np.inf)
    seen = (table.evid == 0) & (table.mdv == 0) & np.isfinite(table.dv)
    used = seen & has_dose[subj] & (table.time >= t0[subj])
    n_obs[:] = np.bincount(subj[np.where(has_dose[subj], used, seen)], minlength=ids.size)
    for s in np.flatnonzero(has_dose):
        routes[s] = _route(table, int(first[s]))
    # the observations of every subject with a dose, grouped by subject in data order
    obs = rows[used]
    obs = obs[np.argsort(subj[obs], kind="stable")]
    so = subj[obs]
    t_all = table.time[obs] - t0[so]
    c_all = np.clip(table.dv[obs], 0.0, None)
    # repeated samples at one time: NCA needs increasing times; keep the first
    # (built by position, so that a data set without any observation gives empty masks)
    keep = np.ones(so.size, dtype=bool)
    keep[1:] = (so[1:] != so[:-1]) | (np.diff(t_all) > 0)
    obs, so, t_all, c_all = obs[keep], so[keep], t_all[keep], c_all[keep]
    single = has_dose & (n_dose_records == 1) & (table.addl[first] == 0) & \
        (table.ss[first] == 0)
    # after several doses only Cmax, Tmax, Clast and Tlast are reported, by nca()'s
    # definitions (Tmax the first time of the largest value; Clast the last positive one)
    multi = ~single[so]
    pos = np.arange(so.size)
    if multi.any():
        cmax = np.full(ids.size, -np.inf)
        np.maximum.at(cmax, so[multi], c_all[multi])
        at_max = multi & (c_all == cmax[so])
        i_max = np.full(ids.size, so.size, dtype=np.int64)
        np.minimum.at(i_max, so[at_max], pos[at_max])
        got = i_max < so.size
        values["cmax"][got] = c_all[i_max[got]]
        values["tmax"][got] = t_all[i_max[got]]
        positive = multi & (c_all > 0)
        i_last = np.full(ids.size, -1, dtype=np.int64)
        np.maximum.at(i_last, so[positive], pos[positive])
        got = i_last >= 0
        values["clast"][got] = c_all[i_last[got]]
        values["tlast"][got] = t_all[i_last[got]]
    starts = np.searchsorted(so, np.arange(ids.size), side="left")
    ends = np.searchsorted(so, np.arange(ids.size), side="right")
    for s in np.flatnonzero(single & (ends > starts)):
        t, c = t_all[starts[s]:ends[s]], c_all[starts[s]:ends[s]]
        f = int(first[s])
        dose = Q_(float(table.amt[f]), table.amount_unit) \
            if units["cl"] and table.amt[f] > 0 else None
        try:
            result = nca(Q_(t, "h"), Q_(c, units["c"]), dose=dose,
                         route=routes[s])  # type: ignore[arg-type]
        except ValueError:
            continue
        for metric in ("cmax", "tmax", "clast", "tlast", "auc_last", "lambda_z",
                       "half_life", "auc_inf"):
            values[metric][s] = float(getattr(result, metric).magnitude)
        if result.clearance is not None and result.volume_z is not None:
            values["clearance"][s] = float(result.clearance.m_as("L/h"))
            values["volume_z"][s] = float(result.volume_z.m_as("L"))
    ds = xr.Dataset(coords={"subject": ("subject", ids, {"units": "1",
                                                         "long_name": "subject (ID)"})})
    for metric, (long_name, kind) in OBSERVED_METRICS.items():
        unit = units[kind]
        if not unit:
            continue  # no dose-based metric when DV is not a concentration of the dose
        ds[f"observed_{metric}"] = ("subject", values[metric],
                                    {"units": unit, "long_name": f"NCA: {long_name}"})
    ds["observed_n"] = ("subject", n_obs, {"units": "1",
                                           "long_name": "observations (EVID 0, MDV 0, DV)"})
    ds["doses"] = ("subject", n_doses, {"units": "1",
                                        "long_name": "doses given (with additional doses)"})
    ds["dose_route"] = ("subject", routes.astype(str), {"units": "1",
                                                        "long_name": "route of the first dose"})
    return ds


def observed_interval_nca(table: RecordTable, min_points: int = 2) -> xr.Dataset:
    """NCA per dosing interval of every subject's observed DV (see the module docstring):
    one row (``observed_interval``) per interval with at least ``min_points`` observations,
    with the subject's position in :func:`observed_nca`'s ``subject`` and the interval's
    number within the subject."""
    from medtransport_pk.subject_intervals import dosing_intervals, grouped_nca

    subj = table.individuals()
    iv = dosing_intervals(table, subj)
    units = _units(table)
    seen = np.flatnonzero((table.evid == 0) & (table.mdv == 0) & np.isfinite(table.dv))
    seen = seen[np.lexsort((table.time[seen], subj[seen]))]
    so, t = subj[seen], table.time[seen]
    k = np.searchsorted(iv.key(iv.subject, iv.start), iv.key(so, t), side="right") - 1
    kk = np.maximum(k, 0)
    inside = (k >= 0) & (iv.subject[kk] == so) & (t < iv.end[kk]) if iv.start.size else \
        np.zeros(so.size, bool)
    # repeated samples at one time: keep the first (NCA needs increasing times)
    inside &= np.r_[True, (so[1:] != so[:-1]) | (np.diff(t) > 0)][:so.size]
    k, rows = k[inside], seen[inside]
    out = grouped_nca(k, table.time[rows] - iv.start[k], np.clip(table.dv[rows], 0.0, None),
                      iv.start.size, min_points=min_points)
    keep = np.flatnonzero(out.n >= min_points)
    dim = "observed_interval"
    ds = xr.Dataset(coords={dim: (dim, np.arange(keep.size), {
        "units": "1", "long_name": "dosing interval of a subject with observations (row)"})})
    for name, values, unit, label in (
            ("subject", iv.subject, "1", "subject (its position among the subjects)"),
            ("number", iv.rank, "1", "the subject's k-th interval (0: from its first dose)"),
            ("start", iv.start, "h", "time of the dose opening the interval"),
            ("n", out.n, "1", "observations in the interval"),
            ("auc", out.auc, units["c*t"], "AUC of the observed DV from the first to the last "
             "observation in the interval (AUCτ when they span it)"),
            ("cmax", out.cmax, units["c"], "largest observed DV in the interval"),
            ("tmax", out.tmax, "h", "time of the largest observed DV after the dose"),
            ("cmin", out.cmin, units["c"], "lowest observed DV in the interval")):
        ds[f"observed_interval_{name}"] = (dim, np.asarray(values)[keep],
                                           {"units": unit, "long_name": f"NCA: {label}"})
    return ds


def attach_observed_nca(ds: xr.Dataset, table: RecordTable | None, dim: str) -> None:
    """Add the observed-data NCA to a run's result, over ``dim`` (its subjects, in the table's
    order): every metric that applies to all subjects (a result holds no NaN), and the counts
    of observations and doses."""
    if table is None or dim not in ds.dims or ds.sizes[dim] != table.subjects().size:
        return
    obs = observed_nca(table)
    for name, var in obs.data_vars.items():
        values = var.values
        if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
            continue  # e.g. AUC∞ after several doses: not for every subject
        if values.dtype.kind in "OU":
            continue
        ds[str(name)] = (dim, values, dict(var.attrs))
    per_interval = observed_interval_nca(table)
    if per_interval.sizes["observed_interval"]:
        ds.update(per_interval)  # one merge into the (large) result


def _fmt(value: float, digits: int = 4) -> str:
    return "–" if not np.isfinite(value) else f"{value:.{digits}g}"


def subject_summary(table: RecordTable, dataset: xr.Dataset | None = None
                    ) -> tuple[str, list[str], list[list[str]]]:
    """A per-subject table for the CLI: doses, observations, the observed NCA and — when the
    result has predictions over ``record`` (``concentration``) — how they compare with DV
    (median of (DV − PRED)/PRED over the subject's observations)."""
    obs = observed_nca(table)
    u = {name: obs[name].attrs["units"] for name in obs.data_vars}
    columns = ["ID", "doses", "obs", f"Cmax obs [{u['observed_cmax']}]",
               f"Tmax obs [{u['observed_tmax']}]", f"AUClast obs [{u['observed_auc_last']}]",
               f"t½ obs [{u['observed_half_life']}]"]
    pred = _record_prediction(dataset, len(table))
    if pred is not None:
        columns += [f"Cmax pred [{pred[1]}]", "median (DV−PRED)/PRED"]
    rows: list[list[str]] = []
    individual = table.individuals()
    for s, ident in enumerate(obs["subject"].values):
        row = [str(int(ident)), str(int(obs["doses"][s])), str(int(obs["observed_n"][s])),
               _fmt(float(obs["observed_cmax"][s])), _fmt(float(obs["observed_tmax"][s])),
               _fmt(float(obs["observed_auc_last"][s])),
               _fmt(float(obs["observed_half_life"][s]))]
        if pred is not None:
            values = pred[0]
            idx = np.flatnonzero(individual == s)
            seen = idx[(table.evid[idx] == 0) & (table.mdv[idx] == 0)
                       & np.isfinite(table.dv[idx])]
            cmax = float(np.nanmax(values[idx])) if idx.size else math.nan
            ok = seen[values[seen] > 0]
            rel = float(np.median((table.dv[ok] - values[ok]) / values[ok])) if ok.size \
                else math.nan
            row += [_fmt(cmax), "–" if not np.isfinite(rel) else f"{rel:+.1%}"]
        rows.append(row)
    title = f"subjects of {table.source} ({len(rows)}; observed-data NCA since the first dose)"
    return title, columns, rows


def _record_prediction(dataset: xr.Dataset | None, n: int) -> tuple[np.ndarray, str] | None:
    """The central concentration at every record (in DV's unit when the result has it so),
    if the result has it."""
    if dataset is None or "record" not in dataset.dims:
        return None
    for name in ("concentration_dv_unit", "concentration"):
        conc: Any = dataset.get(name)
        if conc is not None and conc.dims == ("record",) and conc.sizes["record"] == n:
            return np.asarray(conc.values, dtype=float), str(conc.attrs.get("units", ""))
    return None
