"""The report's plots, drawn with matplotlib and embedded as base64 PNG (no file, no network).

- the ledger of each species over time — stored (recomputed from the states), what the ledger
  accounts for, and the cumulative inflow, outflow, sink and source — with the residual
  stored − (initial + inflow + source − outflow − sink) on its own scale below, against the
  mass-balance tolerance, and the time of a failure marked;
- the model family's main plot, through :meth:`medtransport.Model.plot`;
- for a population, the 5th, 50th and 95th percentiles over patients of the main
  concentration variable.

Every figure carries alt text that states what it shows in numbers.
"""

from __future__ import annotations

import base64
import dataclasses
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from medtransport.report.content import LEDGER_TERMS, format_number, is_ledger_variable

if TYPE_CHECKING:
    from medtransport.audit.report import AuditReport

__all__ = ["Plot", "family_plot", "ledger_plot", "population_bands", "recorded_plot"]

PERCENTILES = (5, 50, 95)


@dataclass
class Plot:
    """An embedded image (``data_uri``) with its alt text and caption, or — if it could not
    be drawn — a ``note`` saying why."""

    kind: str
    title: str
    alt: str = ""
    caption: str = ""
    data_uri: str = ""
    note: str = ""
    table: list[tuple[str, ...]] | None = None
    table_header: tuple[str, ...] | None = None


def _figure(width: float = 10.0, height: float = 4.5) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def time_axis(t: np.ndarray) -> tuple[str, float]:
    span = float(t[-1] - t[0]) if len(t) else 0.0
    for unit, scale in (("h", 3600.0), ("min", 60.0)):
        if span >= 3 * scale:
            return unit, scale
    return "s", 1.0


def _over_patients(var: xr.DataArray, how: str, n_patients: int | None = None) -> np.ndarray:
    """Sum (or max |·|) over patients; a term kept once for all patients (a shared dosing
    schedule) counts once per patient in the sum; a population store's totals
    (``summed_patients``) are already taken over the patients."""
    if "summed_patients" in var.attrs:
        return np.asarray(var.values, dtype=float)
    if "patient" not in var.dims:
        values = np.asarray(var.values, dtype=float)
        return values * n_patients if how == "sum" and n_patients else values
    values = var.transpose("time", "patient").values
    if how == "sum":
        return np.sum(values, axis=1)
    return np.max(np.abs(values), axis=1)


def ledger_plot(ds: xr.Dataset, species: str, report: AuditReport,
                display: Any = None) -> Plot:
    """Ledger terms over time (top) and the residual on its own scale (bottom), in the unit
    ``display`` (a :class:`medtransport.display.DisplayUnits`) chooses for the species."""
    t = np.asarray(ds["time"].values, dtype=float)
    unit_t, scale = time_axis(t)
    stored = ds[f"{species}_stored"]
    unit = str(stored.attrs.get("units", ""))
    population = "patient" in stored.dims or "summed_patients" in stored.attrs
    mb = next((r for r in report.results if r.name == f"mass_balance[{species}]"), None)
    fig = _figure(10.0, 6.0)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    lines = {"stored (recomputed from the states)": _over_patients(stored, "sum"),
             "ledger: initial + inflow + source − outflow − sink":
                 _over_patients(ds[f"{species}_expected"], "sum")}
    n_patients = int(stored.attrs.get("summed_patients", ds.sizes.get("patient", 0))) \
        if population else None
    for term in LEDGER_TERMS:
        name = f"{species}_{term}"
        if name in ds:
            lines[f"cumulative {term}"] = _over_patients(ds[name], "sum", n_patients)
    factor = 1.0
    if display is not None:  # amounts, residuals and tolerances are all linear in the unit
        from medtransport.display import convert, pretty

        shown_unit = display.unit(species, unit, np.concatenate(list(lines.values())))
        try:
            factor = float(convert(1.0, unit, shown_unit))
            unit = pretty(shown_unit)
        except Exception:
            factor = 1.0
        lines = {k: v * factor for k, v in lines.items()}
    lines, relative_to = _as_changes(lines)
    # a dimensionless species (a probability) has no unit to show: no empty brackets
    from medtransport.display import pretty as _pretty

    unit = _pretty(unit)
    bracket, spaced = (f" [{unit}]", f" {unit}") if unit else ("", "")
    for i, (label, values) in enumerate(lines.items()):
        top.plot(t / scale, values, "--" if i == 1 else "-", label=label,
                 linewidth=2.2 if i == 0 else 1.4)
    who = f", summed over {n_patients} patients" if population else ""
    top.set_ylabel(f"{species}{bracket}" if relative_to is None else
                   f"change in {species} since t0{bracket}")
    top.set_title(f"conservation ledger of {species}{who}" + (
        "" if relative_to is None else
        f": changes since t0 (content at t0 {format_number(relative_to)}{spaced})"))
    top.legend(fontsize="small")
    residual = ds[f"{species}_residual"] * factor
    if mb is not None:
        mb = dataclasses.replace(mb, tolerance=mb.tolerance * factor)
    if population:
        shown = _over_patients(residual, "max")
        bottom.plot(t / scale, shown, color="C3", label="max over patients of |residual|")
        bottom.set_ylabel(f"|residual|{bracket}")
    else:
        shown = np.asarray(residual.values, dtype=float)
        bottom.plot(t / scale, shown, color="C3", label="residual = stored − ledger")
        bottom.set_ylabel(f"residual{bracket}")
    finite = shown[np.isfinite(shown)]
    worst = float(np.max(np.abs(finite))) if finite.size else float("nan")
    title = "residual on its own scale"
    if mb is not None and np.isfinite(mb.tolerance):
        if mb.tolerance <= 3 * worst:
            bottom.axhline(mb.tolerance, color="0.4", linestyle=":",
                           label=f"tolerance ±{mb.tolerance:.3g}")
            if not population:
                bottom.axhline(-mb.tolerance, color="0.4", linestyle=":")
        else:
            # Drawn, the tolerance would flatten the residual to a line at zero.
            title += f" (tolerance ±{mb.tolerance:.3g}{spaced}, off this scale)"
    failed_at = None
    if mb is not None and not mb.passed and "time_s" in mb.where:
        failed_at = float(mb.where["time_s"])
        for ax in (top, bottom):
            ax.axvline(failed_at / scale, color="black", linestyle="--", linewidth=1.5)
        # the label on the side of the line with room for it
        late = failed_at - t[0] > 0.6 * (t[-1] - t[0])
        bottom.annotate(" audit failed here ", (failed_at / scale, 0.97),
                        xycoords=("data", "axes fraction"), color="black",
                        ha="right" if late else "left", va="top", fontsize="small",
                        fontweight="bold", bbox={"facecolor": "white", "edgecolor": "none",
                                                 "alpha": 0.85, "pad": 1})
    bottom.set_xlabel(f"time [{unit_t}]")
    bottom.set_title(title)
    bottom.legend(fontsize="small")
    alt = (f"Two stacked line plots over time from {t[0] / scale:.3g} to {t[-1] / scale:.3g} "
           f"{unit_t}. Top: the conservation ledger of {species}{' in ' + unit if unit else ''}"
           f"{who}: "
           + "; ".join(f"{k} from {format_number(float(v[0]))} to {format_number(float(v[-1]))}"
                       for k, v in lines.items())
           + f". Bottom: the residual, largest magnitude {format_number(worst)}{spaced}")
    if mb is not None:
        alt += f", against a tolerance of {format_number(mb.tolerance)}{spaced}"
        alt += " (passed)." if mb.passed else " (FAILED)."
    if failed_at is not None:
        alt += (f" A dashed black line marks where the audit failed, at t = "
                f"{failed_at / scale:.4g} {unit_t}.")
    data = _png(fig)
    return Plot("ledger", f"Ledger of {species}", alt,
                f"Ledger of {species}: the stored amount is recomputed by the framework from "
                "the states; the residual is plotted on its own scale with the tolerance.",
                data)


#: The initial content is drawn as an offset when it exceeds every change this many times:
#: 76 kJ of enthalpy above 0 K would flatten 1.8 kJ of laser input onto the floor.
CHANGES_ONLY = 5.0


def _as_changes(lines: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], float | None]:
    """The ledger lines as they are, or — when the content at t0 dwarfs every change — the
    changes since t0: Δ stored, the ledger's inputs − outputs, and the cumulative terms (which
    start at 0 anyway). Returns the lines and the content at t0 they are relative to."""
    stored, ledger = list(lines.values())[:2]
    if not (len(stored) and np.isfinite(stored[0]) and np.isfinite(ledger[0])):
        return lines, None
    base = float(ledger[0])
    changes = [np.nanmax(np.abs(stored - stored[0])), np.nanmax(np.abs(ledger - base))]
    changes += [np.nanmax(np.abs(v)) for v in list(lines.values())[2:]]
    if not abs(base) > CHANGES_ONLY * max(max(changes), 1e-300):
        return lines, None
    out = {"Δ stored since t0 (recomputed from the states)": stored - stored[0],
           "ledger: inflow + source − outflow − sink": ledger - base}
    out.update(list(lines.items())[2:])
    return out, base


def family_plot(model: Any, ds: xr.Dataset) -> Plot:
    """The model family's own plot (:meth:`Model.plot`); a note if it cannot be drawn."""
    title = "Model family plot"
    if model is None:
        return Plot("family", title, note="the model's own plot is drawn only in the report "
                                          "a run writes (`medtransport run SCENARIO --report "
                                          "R.html`): a report made from a result file never "
                                          "rebuilds the model, whose inputs it would read")
    try:
        fig = _figure(11.0, 4.5)
        model.plot(ds, fig)
        data = _png(fig)
    except Exception as exc:  # a family plot must not take the audit report down with it
        return Plot("family", title, note=f"the plot of {model.id} could not be drawn: "
                                          f"{type(exc).__name__}: {exc}")
    axes = [ax.get_title() for ax in fig.axes if ax.get_title()]
    alt = (f"The main plot of the model {model.id} ({model.title})"
           + (f", panels: {'; '.join(axes)}" if axes else "") + ".")
    return Plot("family", f"{title}: {model.title}", alt,
                f"Drawn by {model.id} {model.version} (Model.plot).", data)


def main_variable(ds: xr.Dataset, species: list[str]) -> str | None:
    """The population's main concentration variable: a (time, patient, …) variable named like
    a concentration, else one whose unit is an amount per volume, else the first such variable
    that is not part of the ledger."""
    from medtransport.units import ureg

    candidates = [str(v) for v in ds.data_vars if "time" in ds[v].dims
                  and "patient" in ds[v].dims and not is_ledger_variable(str(v), species)]
    for name in candidates:
        if "concentration" in name:
            return name
    for name in candidates:
        try:
            dims = ureg.parse_units(str(ds[name].attrs.get("units", ""))).dimensionality
        except Exception:
            continue
        if dims.get("[length]", 0) == -3:
            return name
    return candidates[0] if candidates else None


def population_bands(ds: xr.Dataset, species: list[str]) -> Plot | None:
    """5th, 50th and 95th percentile over patients of the main concentration variable: exact
    from the curves when the result holds them all and they fit in memory (2²⁴ values), else
    the bands a population run streamed into its store (``<name>_band``, within 2⁻⁸; a
    metrics-only store holds no curve)."""
    streamed = next((str(n) for n, v in ds.data_vars.items() if str(n).endswith("_band")
                     and v.dims == ("band_percentile", "band_time")), None)
    main = main_variable(ds, species)
    small = main is not None and ds[main].sizes["time"] * ds[main].sizes["patient"] <= 2**24
    picked: list[str] = []
    if streamed is not None and not small and set(PERCENTILES) <= {
            float(p) for p in ds["band_percentile"].values}:
        name = streamed[:-len("_band")]
        q = ds[streamed].sel(band_percentile=list(PERCENTILES)).values
        t = np.asarray(ds["band_time"].values, dtype=float)
        unit = str(ds[streamed].attrs.get("units", ""))
        picked.append("streamed")
    else:
        if main is None:
            return None
        name = main
        var = ds[name]
        for dim in var.dims:
            if dim not in ("time", "patient"):
                picked.append(f"{dim} = {var[dim].values[0]}" if dim in var.coords else
                              f"{dim} index 0")
                var = var.isel({dim: 0})
        values = var.transpose("time", "patient").values
        t = np.asarray(ds["time"].values, dtype=float)
        unit = str(ds[name].attrs.get("units", ""))
        q = np.nanpercentile(values, PERCENTILES, axis=1)
    unit_t, scale = time_axis(t)
    fig = _figure(10.0, 4.0)
    ax = fig.subplots()
    ax.fill_between(t / scale, q[0], q[2], alpha=0.3, label="5th–95th percentile")
    ax.plot(t / scale, q[1], label="median (50th percentile)")
    where = f" ({', '.join(picked)})" if picked else ""
    ax.set_title(f"{name}{where} across {ds.sizes['patient']} virtual patients")
    ax.set_xlabel(f"time [{unit_t}]")
    ax.set_ylabel(f"{name} [{unit}]")
    ax.legend(fontsize="small")
    peak = int(np.nanargmax(q[1]))
    rows = []
    for label, i in (("peak of the median", peak), ("last output", len(t) - 1)):
        rows.append((label, f"{t[i] / scale:.4g} {unit_t}",
                     *(format_number(float(q[k][i])) for k in range(len(PERCENTILES)))))
    alt = (f"Percentile band plot of {name}{where} in {unit} over time across "
           f"{ds.sizes['patient']} patients. The median peaks at {format_number(q[1][peak])} "
           f"{unit} at {t[peak] / scale:.4g} {unit_t}, where the 5th and 95th percentiles are "
           f"{format_number(q[0][peak])} and {format_number(q[2][peak])} {unit}.")
    return Plot("population", f"Population: {name}{where}", alt,
                "Shaded: 5th to 95th percentile over patients; line: median.", _png(fig),
                table=rows, table_header=("when", "time", *(f"P{p} [{unit}]"
                                                           for p in PERCENTILES)))


def recorded_plot(recorded: Any, ds: xr.Dataset) -> Plot:
    """A report made from a file: the default plot (ledger and final density of the first
    conserved species) from what the result recorded, since the model is not rebuilt."""
    from medtransport.plotting import default_plot

    title = "Model plot"
    why = ("the model family's own plot is drawn only in the report a run writes "
           "(`medtransport run SCENARIO --report R.html`): a report made from a result file "
           "never rebuilds the model, whose inputs it would read")
    if recorded.conserved[0].variable not in ds:
        return Plot("family", title, note=why)  # the default plot has nothing to draw here
    try:
        fig = _figure(11.0, 4.5)
        default_plot(recorded, ds, fig)
        data = _png(fig)
    except Exception as exc:
        return Plot("family", title, note=f"{why}; the default plot could not be drawn from "
                                          f"the file: {type(exc).__name__}: {exc}")
    species = recorded.conserved[0]
    alt = (f"The default plot of {recorded.id} from the result file: the ledger of "
           f"{species.name} over time and its {species.dimension} ('{species.variable}') at "
           "the last output time.")
    return Plot("family", f"{title}: {recorded.title or recorded.id}", alt,
                f"The default plot, drawn from the file; {why}.", data)
