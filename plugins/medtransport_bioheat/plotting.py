"""The bioheat plot: temperature maps (or profiles) at the scenario's ``map_times`` with the
ablation zone (CEM43 ≥ 240 min) outlined, the temperature history at the probe points with
the applied power and a regulation target, and the energy ledger as changes since t0.

Maps share one colour scale (so that two times can be compared by colour), outline each
inclusion (the tumour) and flag tissue above 100 °C, where water boils and tissue chars — a
range a conduction model does not describe.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

if TYPE_CHECKING:
    from medtransport_bioheat.model import PennesBioheat

ZERO_CELSIUS_K = 273.15
BOILING_C = 100.0
#: Maps drawn at most (a 1-D run draws every requested time on one axis).
MAX_MAPS = 4


def _map_indices(model: PennesBioheat, ds: xr.Dataset, limit: int | None) -> list[int]:
    t = ds["time"].values
    wanted = [float(q.m_as("s")) for q in model.params.map_times]
    if not wanted:  # the hottest moment and the end
        wanted = [float(t[int(np.argmax(ds["max_temperature"].values))]), float(t[-1])]
    picks = sorted({int(np.argmin(np.abs(t - x))) for x in wanted})
    return picks if limit is None else picks[:limit]


def _target_celsius(model: PennesBioheat) -> float | None:
    """The regulation target of a controlled power event, in °C (None without one)."""
    from medtransport.units import parse_quantity

    for event in model.scenario.events:
        control = (event.model_extra or {}).get("control") if hasattr(event, "model_extra") \
            else None
        if isinstance(control, dict) and "target" in control:
            try:
                return float(parse_quantity(control["target"]).to("degC").magnitude)
            except Exception:
                return None
    return None


def _applied_power(ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray, str] | None:
    """The power the sources applied, from the ledger's cumulative inflow: (t mid-points
    of the output intervals, power, unit) — what a regulated applicator actually gave."""
    if "energy_inflow" not in ds or ds.sizes["time"] < 2:
        return None
    t = np.asarray(ds["time"].values, dtype=float)
    energy = np.asarray(ds["energy_inflow"].values, dtype=float)
    unit = str(ds["energy_inflow"].attrs.get("units", "J"))
    power_unit = {"J": "W", "J/m": "W/m", "J/m**2": "W/m²"}.get(unit, f"({unit})/s")
    return t, np.concatenate([[0.0], np.diff(energy) / np.diff(t)]), power_unit

def _section(field: xr.DataArray) -> xr.DataArray:
    """A 1-D profile or 2-D map: the middle x–z plane of a 3-D field (it holds a fibre along
    z)."""
    if field.ndim == 3:
        return field.isel({field.dims[1]: field.sizes[field.dims[1]] // 2})
    return field


def plot(model: PennesBioheat, ds: xr.Dataset, figure: Any) -> None:
    t = ds["time"].values
    tscale, tunit = (60.0, "min") if t[-1] - t[0] >= 180 else (1.0, "s")
    temp = ds["temperature"]
    picks = _map_indices(model, ds, None if temp.ndim == 2 else MAX_MAPS)
    if temp.ndim > 2:
        figure.set_size_inches(11.0, 8.5)
        top, bottom = figure.subfigures(2, 1, height_ratios=(1.1, 1.0))
        map_axes = list(np.atleast_1d(top.subplots(1, len(picks))))
        history_ax, ledger_ax = bottom.subplots(1, 2)
        _maps(ds, picks, map_axes, top, tscale, tunit)
    else:
        profile_ax, history_ax, ledger_ax = figure.subplots(1, 3)
        _profiles(ds, picks, profile_ax, tscale, tunit)
    _histories(model, ds, history_ax, tscale, tunit)
    _ledger(ds, ledger_ax, tscale, tunit)
    figure.suptitle(model.scenario.name, fontsize="medium")


def _profiles(ds: xr.Dataset, picks: list[int], ax: Any, tscale: float, tunit: str) -> None:
    t = ds["time"].values
    temp = ds["temperature"]
    dim = temp.dims[1]
    x = ds[dim].values * 1e3
    shaded = False
    for i in picks:
        line, = ax.plot(x, temp.isel(time=i).values - ZERO_CELSIUS_K,
                        label=f"t = {t[i] / tscale:.3g} {tunit}")
        zone = ds["thermal_dose"].isel(time=i).values >= 240.0
        if zone.any():
            shaded = True
            ax.axvspan(x[zone].min(), x[zone].max(), alpha=0.12, color=line.get_color())
    ax.set_xlabel(f"{ds[dim].attrs.get('long_name', dim)} [mm]")
    ax.set_ylabel("temperature [°C]")
    ax.set_title("temperature" + (" (shaded: CEM43 ≥ 240 min)" if shaded else
                                  "\n(no tissue reaches CEM43 240 min)"), fontsize="small")
    ax.legend(fontsize="x-small")


def _maps(ds: xr.Dataset, picks: list[int], axes: list[Any], figure: Any, tscale: float,
          tunit: str) -> None:
    t = ds["time"].values
    sections = [_section(ds["temperature"].isel(time=i)) - ZERO_CELSIUS_K for i in picks]
    low = min(float(np.nanmin(s.values)) for s in sections)
    high = max(float(np.nanmax(s.values)) for s in sections)
    tissue = _section(ds["tissue"]) if "tissue" in ds and ds["tissue"].ndim == 3 else None
    names = str(ds["tissue"].attrs.get("flag_meanings", "")).split() if tissue is not None \
        else []
    image = None
    for ax, i, sec in zip(axes, picks, sections, strict=True):
        dose = _section(ds["thermal_dose"].isel(time=i))
        yd, xd = sec.dims
        x, y = ds[xd].values * 1e3, ds[yd].values * 1e3
        image = ax.pcolormesh(x, y, sec.values, shading="auto", cmap="inferno", vmin=low,
                              vmax=high)
        if np.any(dose.values >= 240.0) and np.any(dose.values < 240.0):
            ax.contour(x, y, dose.values, [240.0], colors="cyan", linewidths=1.2)
        if np.any(sec.values >= BOILING_C):
            ax.contour(x, y, sec.values, [BOILING_C], colors="white", linewidths=1.2,
                       linestyles="--")
        if tissue is not None:
            labels = tissue.transpose(yd, xd).values
            for k in np.unique(labels)[1:]:  # every tissue but the background one
                ax.contour(x, y, (labels == k).astype(float), [0.5], colors="lime",
                           linewidths=1.0, linestyles=":")
        peak = float(np.nanmax(sec.values))
        ax.set_title(f"t = {t[i] / tscale:.3g} {tunit}: peak {peak:.0f} °C", fontsize="small",
                     color="red" if peak >= BOILING_C else "black")
        ax.set_xlabel(f"{xd} [mm]")
        ax.set_ylabel(f"{yd} [mm]")
        ax.set_aspect("equal")
    if image is not None:
        figure.colorbar(image, ax=axes, label="temperature [°C] (one scale for all maps)",
                        shrink=0.8)
    outlined = ", ".join(names[1:]) if len(names) > 1 else ""
    boiled = high >= BOILING_C
    key = ("cyan: ablation zone (CEM43 ≥ 240 min)"
           + ("; white dashed: 100 °C — above it (red titles) tissue water boils and chars, "
              "which this model does not describe" if boiled else "")
           + (f"; lime dotted: {outlined}" if outlined else ""))
    figure.suptitle(key, fontsize="small", color="darkred" if boiled else "black")


def _histories(model: PennesBioheat, ds: xr.Dataset, ax: Any, tscale: float,
               tunit: str) -> None:
    t = ds["time"].values
    if "probe_temperature" in ds:
        for j, name in enumerate(ds["probe"].values):
            ax.plot(t / tscale, ds["probe_temperature"].isel(probe=j).values, label=str(name))
    ax.plot(t / tscale, ds["max_temperature"].values, "k--", label="maximum")
    target = _target_celsius(model)
    if target is not None:
        ax.axhline(target, color="0.3", linestyle=":", linewidth=1,
                   label=f"regulation target {target:.4g} °C")
    ax.set_xlabel(f"time [{tunit}]")
    ax.set_ylabel("temperature [°C]")
    ax.set_title("probe histories", fontsize="small")
    power = _applied_power(ds)
    handles, labels = ax.get_legend_handles_labels()
    if power is None or not np.any(power[1] > 0):
        ax.legend(fontsize="x-small", loc="best")
        return
    ax.set_title("probe histories and applied power", fontsize="small")
    twin = ax.twinx()
    tp, watts, unit = power
    line, = twin.step(tp / tscale, watts, where="pre", color="0.55", linewidth=1.0,
                      label=f"applied power [{unit}]")
    twin.set_ylabel(f"applied power [{unit}]", color="0.4")
    twin.set_ylim(0, 1.15 * float(np.max(watts)))
    handles.append(line)
    labels.append(line.get_label())
    ax.legend(handles, labels, fontsize="x-small", loc="upper center", ncols=3,
              bbox_to_anchor=(0.5, -0.14))  # below: inside, it covered the probe curves


def _ledger(ds: xr.Dataset, ax: Any, tscale: float, tunit: str) -> None:
    t = ds["time"].values
    if "energy_stored" not in ds:
        ax.set_axis_off()
        return
    change = ds["energy_stored"].values - ds["energy_stored"].values[0]
    unit = ds["energy_stored"].attrs.get("units", "J")
    scale, prefix = (1e3, "k") if np.nanmax(np.abs(change)) >= 1e4 else (1.0, "")
    ax.plot(t / tscale, change / scale, "k", lw=2, label="Δ stored (recomputed)")
    for term, sign in (("inflow", 1), ("source", 1), ("sink", -1), ("outflow", -1)):
        name = f"energy_{term}"
        if name in ds:
            ax.plot(t / tscale, sign * ds[name].values / scale,
                    label=f"{'+' if sign > 0 else '−'} cumulative {term}")
    ax.axhline(0.0, color="0.6", linewidth=0.6)
    ax.set_xlabel(f"time [{tunit}]")
    ax.set_ylabel(f"energy since t0 [{prefix}{unit.replace('**2', '²')}]")
    ax.set_title("energy ledger: changes since t0", fontsize="small")
    ax.legend(fontsize="x-small", loc="best")
