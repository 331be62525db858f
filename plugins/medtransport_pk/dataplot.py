"""The plot of a data-set run: observed DV against the model's predictions, per subject.

Reads the result alone: over ``record`` the variables ``ID``, ``TIME`` (h), ``EVID``, ``MDV``,
``DV`` and the prediction ``concentration_dv_unit`` (or ``concentration``); for smooth curves
the grid prediction ``grid_concentration`` (time × patient × tissue, the subjects in the order
of ``subject_id``), else the predictions at the records.

- Up to :data:`PANELS` subjects: one small panel each, the prediction as a line, the
  observations as dots, dose times (with the run's record table, additional doses too) as
  ticks at the bottom.
- More: a spaghetti/VPC-style panel (every subject's prediction as a thin line, the 5–95 %
  band and median of the predictions across subjects, every observation as a dot) beside a
  goodness-of-fit panel, observed DV against the prediction at the same record with the line
  of identity.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import xarray as xr

from medtransport.units import Q_
from medtransport_pk.records import RecordTable

__all__ = ["PANELS", "plot_records"]

#: the most subjects drawn one panel each
PANELS = 12


def _prediction(ds: xr.Dataset) -> tuple[np.ndarray, str]:
    for name in ("concentration_dv_unit", "concentration"):
        if name in ds and ds[name].dims == ("record",):
            return np.asarray(ds[name].values, dtype=float), str(ds[name].attrs.get("units"))
    raise ValueError("the result has no prediction over 'record'")


def _grid(ds: xr.Dataset, unit: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(time h, subject IDs, central concentration (subject, time) in ``unit``) or None."""
    if "grid_concentration" not in ds or "subject_id" not in ds:
        return None
    conc = ds["grid_concentration"]
    if "tissue" in conc.dims:
        conc = conc.sel(tissue="central")
    if "patient" not in conc.dims:
        conc = conc.expand_dims("patient")
    try:
        factor = float(Q_(1.0, conc.attrs["units"]).m_as(unit))
    except Exception:
        return None
    values = conc.transpose("patient", "time").values * factor
    return ds["time"].values / 3600.0, np.asarray(ds["subject_id"].values), values


def _dose_times(table: RecordTable, individual: int) -> np.ndarray:
    """Every dose time of an individual, additional doses (ADDL every II) included."""
    rows = np.flatnonzero((table.individuals() == individual) & np.isin(table.evid, (1, 4)))
    return np.concatenate([table.time[i] + table.ii[i] * np.arange(table.addl[i] + 1)
                           for i in rows]) if rows.size else np.empty(0)


def plot_records(ds: xr.Dataset, figure: Any, title: str = "",
                 table: RecordTable | None = None) -> None:
    """Draw the data-set plot of ``ds`` on ``figure`` (see the module doc); with the run's
    ``table``, the additional doses (ADDL) are marked too."""
    ids = np.asarray(ds["ID"].values)
    time = np.asarray(ds["TIME"].values, dtype=float)
    dv = np.asarray(ds["DV"].values, dtype=float)
    evid = np.asarray(ds["EVID"].values)
    mdv = np.asarray(ds["MDV"].values)
    pred, unit = _prediction(ds)
    observed = (evid == 0) & (mdv == 0) & np.isfinite(dv)
    dose = np.isin(evid, (1, 4))
    # individuals as NONMEM counts them: a new one whenever ID changes (an ID may come back)
    new = np.ones(ids.size, bool)
    new[1:] = ids[1:] != ids[:-1]
    individual = np.cumsum(new) - 1
    subjects = np.arange(int(new.sum()))
    labels = ids[new]
    grid = _grid(ds, unit)
    dv_unit = ds["DV"].attrs.get("units", "")

    def curve(s: int) -> tuple[np.ndarray, np.ndarray]:
        if grid is not None:
            t, sid, values = grid
            if sid.size == subjects.size:  # one grid row per individual, in order
                return t, values[s]
        mine = np.flatnonzero(individual == s)
        return time[mine], pred[mine]

    if subjects.size <= PANELS:
        cols = math.ceil(math.sqrt(subjects.size))
        rows = math.ceil(subjects.size / cols)
        figure.set_size_inches(max(6.0, 3.0 * cols), max(3.0, 2.4 * rows))
        axes = np.atleast_1d(figure.subplots(rows, cols, squeeze=False)).ravel()
        repeated = labels.size != np.unique(labels).size
        for ax, s in zip(axes, subjects, strict=False):
            t, c = curve(int(s))
            ax.plot(t, c, color="C0", lw=1.2, label="prediction")
            mine = individual == s
            ax.plot(time[mine & observed], dv[mine & observed], "o", color="C3", ms=3.5,
                    label="observed")
            doses = _dose_times(table, int(s)) if table is not None else time[mine & dose]
            for td in doses:
                ax.axvline(td, ymax=0.05, color="0.4", lw=1)
            name = f"ID {labels[s]}" + (f" (individual {s + 1})" if repeated else "")
            ax.set_title(name, fontsize="small")
            ax.tick_params(labelsize="x-small")
        for ax in axes[subjects.size:]:
            ax.set_visible(False)
        # one legend for all panels, outside them, so it hides no observation
        handles, labels = axes[0].get_legend_handles_labels()
        figure.legend(handles, labels, loc="outside upper right", fontsize="small", ncols=2)
        figure.supxlabel("time [h]", fontsize="small")
        figure.supylabel(f"concentration [{dv_unit}]", fontsize="small")
    else:
        ax1, ax2 = figure.subplots(1, 2)
        for s in subjects:
            t, c = curve(int(s))
            ax1.plot(t, c, color="C0", lw=0.5, alpha=0.25)
        if grid is not None:
            t, _, values = grid
            q = np.nanpercentile(values, [5, 50, 95], axis=0)
            ax1.fill_between(t, q[0], q[2], color="C1", alpha=0.25,
                             label="predictions 5–95 %")
            ax1.plot(t, q[1], color="C1", lw=1.5, label="median prediction")
        ax1.plot(time[observed], dv[observed], "o", color="C3", ms=2.5, alpha=0.7,
                 label="observed")
        ax1.set_xlabel("time [h]")
        ax1.set_ylabel(f"concentration [{dv_unit}]")
        ax1.set_title(f"{subjects.size} subjects: predictions and observations")
        ax1.legend(fontsize="small")
        ax2.plot(pred[observed], dv[observed], "o", color="C3", ms=3, alpha=0.6)
        top = float(np.nanmax(np.concatenate([pred[observed], dv[observed], [0.0]])))
        ax2.plot([0.0, top], [0.0, top], "k--", lw=1, label="identity")
        ax2.set_xlabel(f"prediction PRED [{unit}]")
        ax2.set_ylabel(f"observed DV [{dv_unit}]")
        ax2.set_title("observed against predicted")
        ax2.legend(fontsize="small")
    if title:
        figure.suptitle(title)
