"""The bioheat plot: temperature maps at chosen times (with the ablation zone, CEM43 ≥ 240 min,
outlined), the temperature history at the probe points and the energy ledger."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

if TYPE_CHECKING:
    from medtransport_bioheat.model import PennesBioheat

ZERO_CELSIUS_K = 273.15


def _map_indices(model: PennesBioheat, ds: xr.Dataset) -> list[int]:
    t = ds["time"].values
    wanted = [float(q.m_as("s")) for q in model.params.map_times]
    if not wanted:  # the hottest moment and the end
        wanted = [float(t[int(np.argmax(ds["max_temperature"].values))]), float(t[-1])]
    return sorted({int(np.argmin(np.abs(t - x))) for x in wanted})[:3]


def _section(field: xr.DataArray) -> xr.DataArray:
    """A 1-D profile or 2-D map: the middle x–z plane of a 3-D field (it holds a fibre along
    z)."""
    if field.ndim == 3:
        return field.isel({field.dims[1]: field.sizes[field.dims[1]] // 2})
    return field


def plot(model: PennesBioheat, ds: xr.Dataset, figure: Any) -> None:
    picks = _map_indices(model, ds)
    t = ds["time"].values
    tscale, tunit = (60.0, "min") if t[-1] - t[0] >= 180 else (1.0, "s")
    temp = ds["temperature"]
    ncol = 2 + (len(picks) if temp.ndim > 2 else 1)
    axes = figure.subplots(1, ncol)
    if temp.ndim == 2:  # a profile: all chosen times on one axis
        ax = axes[0]
        dim = temp.dims[1]
        x = ds[dim].values * 1e3
        for i in picks:
            ax.plot(x, temp.isel(time=i).values - ZERO_CELSIUS_K,
                    label=f"t = {t[i] / tscale:.3g} {tunit}")
            zone = ds["thermal_dose"].isel(time=i).values >= 240.0
            if zone.any():
                ax.axvspan(x[zone].min(), x[zone].max(), alpha=0.15, color="red")
        ax.set_xlabel(f"{ds[dim].attrs.get('long_name', dim)} [mm]")
        ax.set_ylabel("temperature [°C]")
        ax.set_title("temperature (shaded: CEM43 ≥ 240 min)", fontsize="small")
        ax.legend(fontsize="x-small")
        map_axes: list[Any] = []
    else:
        map_axes = list(axes[: len(picks)])
    for ax, i in zip(map_axes, picks, strict=False):
        sec = _section(temp.isel(time=i)) - ZERO_CELSIUS_K
        dose = _section(ds["thermal_dose"].isel(time=i))
        yd, xd = sec.dims
        im = ax.pcolormesh(ds[xd].values * 1e3, ds[yd].values * 1e3, sec.values,
                           shading="auto", cmap="inferno")
        if np.any(dose.values >= 240.0) and np.any(dose.values < 240.0):
            ax.contour(ds[xd].values * 1e3, ds[yd].values * 1e3, dose.values, [240.0],
                       colors="cyan", linewidths=1.0)
        figure.colorbar(im, ax=ax, label="°C", shrink=0.6)
        ax.set_title(f"T at t = {t[i] / tscale:.3g} {tunit}", fontsize="small")
        ax.set_xlabel(f"{xd} [mm]")
        ax.set_ylabel(f"{yd} [mm]")
        ax.set_aspect("equal")
    ax = axes[-2]
    if "probe_temperature" in ds:
        for j, name in enumerate(ds["probe"].values):
            ax.plot(t / tscale, ds["probe_temperature"].isel(probe=j).values, label=str(name))
    ax.plot(t / tscale, ds["max_temperature"].values, "k--", label="maximum")
    ax.set_xlabel(f"time [{tunit}]")
    ax.set_ylabel("temperature [°C]")
    ax.set_title("probe histories", fontsize="small")
    ax.legend(fontsize="x-small")
    ax = axes[-1]
    if "energy_stored" in ds:
        change = ds["energy_stored"].values - ds["energy_stored"].values[0]
        unit = ds["energy_stored"].attrs.get("units", "J")
        ax.plot(t / tscale, change, "k", lw=2, label="Δ stored (recomputed)")
        for term, sign in (("inflow", 1), ("source", 1), ("sink", -1), ("outflow", -1)):
            name = f"energy_{term}"
            if name in ds:
                ax.plot(t / tscale, sign * ds[name].values,
                        label=f"{'+' if sign > 0 else '−'} {term}")
        ax.set_xlabel(f"time [{tunit}]")
        ax.set_ylabel(f"energy [{unit}]")
        ax.set_title("energy ledger", fontsize="small")
        ax.legend(fontsize="xx-small", loc="upper left")
    zone = " — cyan: ablation zone, CEM43 = 240 min" if map_axes else ""
    figure.suptitle(model.scenario.name + zone, fontsize="medium")
