"""Default plots: the ledger over time and the final density of the first conserved species.

Models draw their family's own plot by overriding :meth:`medtransport.Model.plot`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

if TYPE_CHECKING:
    from medtransport.model import Model


def _label(var: xr.DataArray) -> str:
    return f"{var.attrs.get('long_name', var.name)} [{var.attrs.get('units', '')}]"


#: The first profile is left out when its peak is this many times every later one's (a point
#: injection at t = 0 would flatten every later profile to the floor).
SPIKE = 5.0


def default_plot(model: Model, ds: xr.Dataset, figure: Any) -> None:
    from medtransport.display import DisplayUnits, pretty

    display = DisplayUnits(model)
    species = model.conserved[0]
    time_unit, scale = _time_axis(ds["time"].values)
    ax1, ax2 = figure.subplots(1, 2)
    stored = ds.get(f"{species.name}_stored")
    if stored is not None:
        t = ds["time"].values / scale
        canonical = str(stored.attrs["units"])
        unit = display.unit(species.name, canonical, stored.values)

        # a population's ledger is drawn as the whole cohort's (one line per term, not one
        # per patient: a legend of thousands of entries leaves no room for the axes)
        others = [d for d in stored.dims if d != "time"]
        count = int(np.prod([stored.sizes[d] for d in others]))
        cohort = f" (sum over {count} {'×'.join(others)}{'s' if count > 1 else ''})" \
            if others else ""

        def shown(var: xr.DataArray) -> np.ndarray:
            extra = [d for d in var.dims if d != "time"]
            values = var.sum(extra).transpose("time").values if extra else var.values
            return convert(values, canonical, unit)

        from medtransport.display import convert

        ax1.plot(t, shown(stored), label="stored (recomputed)")
        ax1.plot(t, shown(ds[f"{species.name}_expected"]), "--", label="ledger")
        for term in ("inflow", "outflow", "sink", "source"):
            if f"{species.name}_{term}" in ds:
                ax1.plot(t, shown(ds[f"{species.name}_{term}"]), label=term)
        ax1.set_xlabel(f"time [{time_unit}]")
        ax1.set_ylabel(f"{species.dimension} [{pretty(unit)}]")
        ax1.set_title(f"conservation ledger{cohort}", fontsize="medium")
        ax1.legend(fontsize="small")
    density = ds[species.variable]
    last = density.isel(time=-1)
    if last.ndim == 1:
        dim = last.dims[0]
        x = ds[dim].values
        length_unit, length_scale = _length_axis(x) if ds[dim].attrs.get("units") == "m" \
            else (ds[dim].attrs.get("units", ""), 1.0)
        canonical = str(density.attrs.get("units", ""))
        raw = np.asarray(density.values, dtype=float)
        times = profile_times(ds, species.name)
        peaks = np.nanmax(np.abs(raw.reshape(raw.shape[0], -1)), axis=1)[times]
        spike = len(times) > 2 and peaks[0] > SPIKE * np.nanmax(peaks[1:])
        if spike:
            times = times[1:]
        values, unit = display.show(species.variable, raw[times], canonical)
        left_out = ""
        if spike:
            from medtransport.display import convert

            first = convert(peaks[0], canonical, unit)
            left_out = f"\n(t = 0 not drawn: its peak, {float(first):.3g} {pretty(unit)}, " \
                "would flatten the rest)"
        for k, i in enumerate(times):
            ax2.plot(x / length_scale, values[k],
                     label=f"t = {ds['time'].values[i] / scale:.3g} {time_unit}")
        ax2.set_xlabel(f"{ds[dim].attrs.get('long_name', dim)} [{length_unit}]")
        ax2.set_ylabel(f"{density.attrs.get('long_name', density.name)} [{pretty(unit)}]")
        ax2.legend(fontsize="small")
        ax2.set_title(f"{density.attrs.get('long_name', species.variable)}{left_out}",
                      fontsize="medium")
    elif last.ndim in (2, 3):
        from medtransport.display import pretty

        mid = last if last.ndim == 2 else \
            last.isel({last.dims[2]: last.sizes[last.dims[2]] // 2})
        values, unit = display.show(species.variable, np.asarray(mid.values, dtype=float),
                                    str(density.attrs.get("units", "")))
        im = ax2.pcolormesh(mid[mid.dims[1]].values, mid[mid.dims[0]].values, values)
        for axis, d in ((ax2.set_xlabel, mid.dims[1]), (ax2.set_ylabel, mid.dims[0])):
            where = pretty(str(ds[d].attrs.get("units", ""))) if d in ds.coords else ""
            axis(f"{ds[d].attrs.get('long_name', d) if d in ds.coords else d}"
                 + (f" [{where}]" if where.strip() else ""))
        figure.colorbar(im, ax=ax2, label=f"{density.attrs.get('long_name', density.name)} "
                                          f"[{pretty(unit)}]")
        tlast = ds["time"].values[-1] / scale
        ax2.set_title(f"{density.attrs.get('long_name', species.variable)} at "
                      f"t = {tlast:.3g} {time_unit}", fontsize="medium")
    figure.suptitle(model.scenario.name)


#: Fractions of the run's change of the stored amount at which profiles are drawn.
RELEASE_FRACTIONS = (0.0, 0.25, 0.5, 0.75, 0.95)


def profile_times(ds: xr.Dataset, species: str, n: int = 5) -> np.ndarray:
    """The output indices the profile panel draws: where the stored amount of ``species`` has
    made 0, 25, 50, 75 and 95 % of its change over the run, when it changes by at least half
    its largest value (a release or an elimination: an implant that has given up most of its
    drug in the first day is not drawn as four flat lines over ten days); otherwise ``n``
    times evenly spread over the run (a spreading that conserves its amount)."""
    last = ds.sizes["time"] - 1
    even = np.unique(np.linspace(0, last, n).astype(int))
    stored = ds.get(f"{species}_stored")
    if stored is None or stored.dims != ("time",):
        return even
    values = np.asarray(stored.values, dtype=float)
    change = np.abs(values - values[0])
    total = float(np.nanmax(change)) if change.size else 0.0
    if not np.isfinite(total) or total < 0.5 * float(np.nanmax(np.abs(values))):
        return even
    picked = [int(np.argmax(change >= f * total)) for f in RELEASE_FRACTIONS]
    times = np.unique(picked)
    return times if times.size >= 3 else even


def _time_axis(t: np.ndarray) -> tuple[str, float]:
    from medtransport.display import time_unit

    unit = time_unit(t)  # one rule for plot axes and CSV columns
    return unit, {"h": 3600.0, "min": 60.0, "s": 1.0}[unit]


def _length_axis(x: np.ndarray) -> tuple[str, float]:
    span = float(np.max(np.abs(x))) if len(x) else 0.0
    for unit, scale in (("µm", 1e-6), ("mm", 1e-3), ("cm", 1e-2)):
        if span < 300 * scale:
            return unit, scale
    return "m", 1.0


def save_plot(model: Model, ds: xr.Dataset, path: str) -> None:
    """Draw the model's plot and write it atomically (format from the suffix)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from medtransport.results import write_atomically

    fig = Figure(figsize=(11, 4.5), layout="constrained")
    model.plot(ds, fig)
    from pathlib import Path

    suffix = Path(path).suffix or ".png"
    with write_atomically(path, suffix) as tmp:
        fig.savefig(tmp, dpi=110, format=suffix[1:])
