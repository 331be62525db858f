"""External heat sources Q_ext(x, t) = level(t) · shape(x), switched by ``power`` events.

Each source fixes where heat is deposited (its shape, per unit of its level); the scenario's
events ``{type: power, source: <name>, at, duration, every, count}`` give its level over time:

- ``laser`` — level ``power`` (absorbed optical power, W; per unit area W/m² on a 1-D slab).
  On a 1-D slab the beam enters through face ``entry`` and is absorbed by Beer–Lambert,
  ``q = P·μ·exp(−μ·d)`` at depth ``d`` (integrated exactly over each cell; what is not absorbed
  leaves through the far face and is not counted). In a 3-D box or a sphere (tip at the
  centre) a fibre tip at ``position`` is an isotropic point source in the diffusion
  approximation (Welch & van Gemert, *Optical-Thermal Response of Laser-Irradiated Tissue*,
  2nd ed., ch. 6): ``q = μ_a·φ = P·μ_eff²·exp(−μ_eff·r)/(4π·r)`` with
  ``μ_eff = √(3μ_a(μ_a + μ_s′))``, or ``μ_eff`` given as ``effective_attenuation``; a
  diffusing tip of ``diffuser_length`` along ``axis`` is a row of such points. On a sphere
  the shells are integrated exactly; in a box, cell centres are used (``r`` no smaller than
  half a cell) and the field is scaled so that the grid absorbs exactly ``P`` — light that
  would escape the box is neglected, so the box should reach several 1/μ_eff past the tip.
- ``rf`` — level ``sar`` (specific absorption rate, W/kg): ``q = SAR·ρ`` inside ``region``.
- ``focused_ultrasound`` — level ``intensity`` (peak focal intensity, W/m²): plane-wave
  absorption ``q = 2α·I`` (Nyborg 1981, Phys Med Biol 26:1) with a Gaussian focal intensity
  ``I = I_0·exp(−Σ (x_i − f_i)²/(2σ_i²))``, ``α`` the amplitude attenuation (Np/m).

Feedback: a power event with ``control: {probe: <name>, target: 42 degC, band: 0.5 K}`` treats
its level as the most the applicator gives and scales it, step by step, by the temperature
measured at that probe at the start of the step — proportional control with a band,

    level_applied = level · clip((T_target − T_probe)/band, 0, 1),

full power while the probe is a band or more below the target, none at or above it, as
hyperthermia systems regulate their power on a thermometry probe. The level applied is the
one the energy ledger books, so the books close whatever the controller does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
import pint
from pydantic import BaseModel, ConfigDict, Field, model_validator

from medtransport.domain import Grid
from medtransport.errors import ScenarioError
from medtransport.scenario import Event
from medtransport.units import Qty, parse_quantity, ureg

__all__ = ["Control", "FocusedUltrasound", "Laser", "RadioFrequency", "Schedule", "SourceSpec",
           "cell_centres", "region_mask", "schedules", "shape"]

Position = Qty("m")
Attenuation = Qty("1/m", gt=0)


class _Source(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)


class Laser(_Source):
    """A laser: Beer–Lambert on a slab, a diffusing point source in 3-D."""

    kind: Literal["laser"]
    position: list[Position] | None = None
    entry: Literal["x-", "x+"] = "x-"
    absorption: Attenuation | None = None
    reduced_scattering: Qty("1/m", ge=0) | None = None
    effective_attenuation: Attenuation | None = None
    #: a cylindrical diffusing tip of this length along ``axis``, centred on ``position``
    diffuser_length: Qty("m", gt=0) | None = None
    axis: Literal["x", "y", "z"] = "z"

    @model_validator(mode="after")
    def _attenuation(self) -> Laser:
        if self.effective_attenuation is None and self.absorption is None:
            raise ValueError("a laser needs 'effective_attenuation', or 'absorption' (with "
                             "'reduced_scattering')")
        return self

    @property
    def mu_eff(self) -> float:
        if self.effective_attenuation is not None:
            return float(self.effective_attenuation.m_as("1/m"))
        assert self.absorption is not None
        mua = float(self.absorption.m_as("1/m"))
        mus = 0.0 if self.reduced_scattering is None else \
            float(self.reduced_scattering.m_as("1/m"))
        return math.sqrt(3.0 * mua * (mua + mus))


class RadioFrequency(_Source):
    """RF heating: a given SAR inside a region (axis → [lower, upper]; default everywhere)."""

    kind: Literal["rf"]
    region: dict[str, list[Position]] | None = None


class FocusedUltrasound(_Source):
    """Focused ultrasound with a Gaussian focus."""

    kind: Literal["focused_ultrasound"]
    focus: list[Position] | None = None
    width: list[Qty("m", gt=0)] = Field(min_length=1, max_length=3)
    attenuation: Qty("1/m", gt=0)


SourceSpec = Annotated[Laser | RadioFrequency | FocusedUltrasound, Field(discriminator="kind")]

#: The event field that carries each kind's level, and its unit on a 3-D domain.
LEVEL = {"laser": ("power", "W"), "rf": ("sar", "W/kg"),
         "focused_ultrasound": ("intensity", "W/m^2")}


def level_units(kind: str, grid: Grid) -> pint.Unit:
    """The level's unit on ``grid``: a laser's power is per unit area on a slab, per unit
    length on a 2-D box; the others are densities."""
    unit = ureg.parse_units(LEVEL[kind][1])
    if kind == "laser":
        unit = unit / ureg.parse_units("m**3") * ureg.parse_units(grid.weights_units)
    return unit


def cell_centres(grid: Grid) -> list[np.ndarray]:
    """Cell-centre coordinates, each broadcast to the grid's shape."""
    axes = [grid.centers(i) for i in range(grid.ndim)]
    return list(np.meshgrid(*axes, indexing="ij"))


def region_mask(grid: Grid, region: dict[str, list[pint.Quantity]] | None,
                path: str) -> np.ndarray:
    """Cells whose centre lies inside ``region`` (axis → [lower, upper])."""
    region = region or {}
    problems = [(f"{path}.{a}", f"no such axis; this grid has {', '.join(grid.dims)}")
                for a in region if a not in grid.dims]
    problems += [(f"{path}.{a}", "needs [lower, upper] with lower < upper")
                 for a, b in region.items() if len(b) != 2 or not b[0] < b[1]]
    if problems:
        raise ScenarioError(problems)
    mask = np.ones(grid.cells, dtype=bool)
    for dim, x in zip(grid.dims, cell_centres(grid), strict=True):
        if dim in region:
            lo, hi = (float(q.m_as("m")) for q in region[dim])
            mask &= (x >= lo) & (x <= hi)
    if not mask.any():
        raise ScenarioError([(path, "the region holds no cell centre of the grid")])
    return mask


def _point(grid: Grid, position: list[pint.Quantity] | None, path: str) -> np.ndarray:
    if grid.radial:
        if position is not None:
            raise ScenarioError([(f"{path}", "on a cylinder or sphere the source sits on the "
                                             "axis/centre; leave the position out")])
        return np.zeros(1)
    if position is None or len(position) != grid.ndim:
        raise ScenarioError([(path, f"expected {grid.ndim} coordinates (one per axis "
                                    f"{', '.join(grid.dims)})")])
    return np.array([float(p.m_as("m")) for p in position])


def shape(spec: Laser | RadioFrequency | FocusedUltrasound, grid: Grid, density: np.ndarray,
          path: str) -> np.ndarray:
    """Heating rate density (W/m³) per unit level, on the grid's cells."""
    if isinstance(spec, RadioFrequency):
        return np.where(region_mask(grid, spec.region, f"{path}.region"), density, 0.0)
    if isinstance(spec, FocusedUltrasound):
        focus = _point(grid, spec.focus, f"{path}.focus")
        sigma = [float(w.m_as("m")) for w in spec.width]
        if len(sigma) == 1:
            sigma *= grid.ndim
        if len(sigma) != grid.ndim:
            raise ScenarioError([(f"{path}.width", f"one width, or one per axis "
                                                   f"({grid.ndim})")])
        arg = sum((x - f) ** 2 / (2.0 * s ** 2)
                  for x, f, s in zip(cell_centres(grid), focus, sigma, strict=True))
        return 2.0 * float(spec.attenuation.m_as("1/m")) * np.exp(-arg)
    return _laser(spec, grid, path)


def _laser(spec: Laser, grid: Grid, path: str) -> np.ndarray:
    mu = spec.mu_eff
    if grid.geometry == "cartesian" and grid.ndim == 1:
        e = grid.edges(0)
        depth = e - e[0] if spec.entry == "x-" else e[-1] - e
        absorbed = np.abs(np.exp(-mu * depth[:-1]) - np.exp(-mu * depth[1:]))
        return absorbed / grid.weights  # per unit incident irradiance
    if grid.geometry == "sphere":
        _point(grid, spec.position, f"{path}.position")
        e = grid.edges(0)
        # ∫ μ²·exp(−μr)/(4πr)·4πr² dr over a shell, exactly
        inner = (1.0 + mu * e[:-1]) * np.exp(-mu * e[:-1])
        outer = (1.0 + mu * e[1:]) * np.exp(-mu * e[1:])
        return (inner - outer) / grid.weights
    if grid.geometry == "cartesian" and grid.ndim == 3:
        tip = _point(grid, spec.position, f"{path}.position")
        # A diffuser is a row of point sources half a cell apart along its axis.
        offsets = [0.0]
        if spec.diffuser_length is not None:
            length = float(spec.diffuser_length.m_as("m"))
            n = max(2, math.ceil(length / (0.5 * min(grid.spacing))) + 1)
            offsets = list(np.linspace(-0.5 * length, 0.5 * length, n))
        along = "xyz".index(spec.axis)
        centres = cell_centres(grid)
        q = np.zeros(grid.cells)
        for off in offsets:
            point = tip.copy()
            point[along] += off
            r = np.sqrt(sum((x - p) ** 2 for x, p in zip(centres, point, strict=True)))
            r = np.maximum(r, 0.5 * min(grid.spacing))
            q += mu ** 2 * np.exp(-mu * r) / (4.0 * math.pi * r)
        return q / float(np.sum(q * grid.weights))  # the grid absorbs the whole power
    raise ScenarioError([(f"{path}.kind", "a laser source works on a 1-D slab (Beer–Lambert), "
                                          "a 3-D box or a sphere (point fibre tip)")])


@dataclass(frozen=True)
class Control:
    """Proportional control of a pulse's level on a probe's temperature (kelvin)."""

    probe: str
    target: float
    band: float

    def fraction(self, temperature: float) -> float:
        """clip((target − T)/band, 0, 1)."""
        return min(1.0, max(0.0, (self.target - temperature) / self.band))


class Schedule:
    """A source's level over time: a sum of boxcars ``level`` on ``[start, stop)``, each
    fixed or under a :class:`Control`."""

    def __init__(self) -> None:
        self.pulses: list[tuple[float, float, float]] = []
        self.controlled: list[tuple[float, float, float, Control]] = []

    def add(self, start: float, stop: float, level: float,
            control: Control | None = None) -> None:
        if control is None:
            self.pulses.append((start, stop, level))
        else:
            self.controlled.append((start, stop, level, control))

    def integral(self, t0: float, t1: float,
                 probes: Callable[[str], float] | None = None) -> float:
        """∫ level dt over [t0, t1], exactly; a controlled pulse counts with the fraction its
        controller gives for the probe temperatures ``probes(name)`` (K) at t0."""
        total = sum(level * max(0.0, min(t1, b) - max(t0, a)) for a, b, level in self.pulses)
        for a, b, level, control in self.controlled:
            overlap = max(0.0, min(t1, b) - max(t0, a))
            if overlap > 0.0:
                if probes is None:
                    raise ValueError("a controlled source needs the probe temperatures")
                total += level * overlap * control.fraction(probes(control.probe))
        return total

    def at(self, t: float) -> float:
        return sum(level for a, b, level in self.pulses if a <= t < b)


def schedules(events: list[Event], specs: list[Laser | RadioFrequency | FocusedUltrasound],
              grid: Grid, probes: Iterable[str] = ()) -> dict[str, Schedule]:
    """The schedule of every source from the scenario's ``power`` events; errors name
    ``events.<i>.<field>``. ``probes``: the declared probe names a control may read."""
    probes = set(probes)
    by_name = {s.name: s for s in specs}
    out = {s.name: Schedule() for s in specs}
    problems: list[tuple[str, str]] = []
    for i, ev in enumerate(events):
        path = f"events.{i}"
        name = ev.get("source")
        if not isinstance(name, str) or name not in by_name:
            problems.append((f"{path}.source", f"expected one of the sources "
                                               f"{', '.join(by_name) or '(none declared)'}, "
                                               f"got {name!r}"))
            continue
        spec = by_name[name]
        field, _ = LEVEL[spec.kind]
        unit = level_units(spec.kind, grid)
        value = ev.get(field)
        duration = ev.get("duration")
        extra = sorted(set(ev.model_extra or {}) - {"source", field, "duration", "control"})
        if extra:
            problems.append((f"{path}.{extra[0]}", f"a power event of a {spec.kind} source "
                                                   f"takes source, {field}, duration and "
                                                   "control"))
        control = None
        if ev.get("control") is not None:
            control, trouble = _control(ev.get("control"), probes, f"{path}.control")
            if trouble:
                problems += trouble
                continue
        if not isinstance(value, pint.Quantity) or value.dimensionality != unit.dimensionality:
            problems.append((f"{path}.{field}", f"expected a {field} in {unit:~C}, got "
                                                f"{value!r}"))
            continue
        if not isinstance(duration, pint.Quantity) or not duration.check("[time]") or \
                not float(duration.m_as("s")) > 0:
            problems.append((f"{path}.duration", f"expected a positive duration (e.g. 60 s), "
                                                 f"got {duration!r}"))
            continue
        level = float(value.m_as(unit))
        if level < 0:
            problems.append((f"{path}.{field}", "a heating level cannot be negative"))
            continue
        d = float(duration.m_as("s"))
        for t in ev.times():
            out[name].add(float(t), float(t) + d, level, control)
    if problems:
        raise ScenarioError(problems)
    return out


def _control(spec: Any, probes: set[str], path: str
             ) -> tuple[Control | None, list[tuple[str, str]]]:
    """A ``control`` mapping → :class:`Control`, or the problems naming its fields."""
    if not isinstance(spec, dict):
        return None, [(path, "expected {probe: <name>, target: <temperature>, band: "
                             "<temperature difference>}")]
    unknown = sorted(set(spec) - {"probe", "target", "band"})
    if unknown:
        return None, [(f"{path}.{unknown[0]}", "a control takes probe, target and band")]
    problems = []
    probe = spec.get("probe")
    if not isinstance(probe, str) or probe not in probes:
        problems.append((f"{path}.probe", f"expected one of the probes "
                                          f"{', '.join(sorted(probes)) or '(none declared)'}, "
                                          f"got {probe!r}"))
    target = band = float("nan")
    try:
        q = parse_quantity(spec.get("target"), field=f"{path}.target")
        target = float(q.to("K").magnitude)  # an absolute temperature: degC converts
    except Exception as exc:
        problems.append((f"{path}.target", f"expected a temperature (e.g. 42 degC): {exc}"))
    try:
        q = parse_quantity(spec.get("band", "0.5 K"), field=f"{path}.band")
        if q.units in (ureg.degC, ureg.degF):
            raise ValueError("a band is a temperature difference: give it in K or delta_degC")
        band = float(q.to("K").magnitude)
        if not band > 0:
            raise ValueError(f"expected a positive band, got {band:g} K")
    except Exception as exc:
        problems.append((f"{path}.band", str(exc)))
    if problems:
        return None, problems
    return Control(str(probe), target, band), []
