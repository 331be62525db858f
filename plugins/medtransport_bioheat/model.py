"""Pennes bioheat with an energy ledger, thermal dose and thermal damage (REFERENCES §3):

    ρc·∂T/∂t = ∇·(k∇T) + ω_b·ρ_b·c_b·(T_a − T) + Q_m + Q_ext          (Pennes 1948)

on a 1–3-D box or a radially symmetric cylinder or sphere, in layered tissues (skin, fat,
muscle, liver, tumour; :mod:`~medtransport_bioheat.tissues`), with external sources switched
by ``power`` events (:mod:`~medtransport_bioheat.sources`) and per-face boundaries: convective
skin (``robin``: h, ambient), fixed core temperature or a cooling applicator (``dirichlet``),
insulated (``no_flux``), a given heat flux (``neumann``).

Temperatures are kelvin inside; the scenario may give them in degC (converted once, never
multiplied) and the probe and maximum temperatures are reported in degC as well.

Solver (``solver.method``): Crank–Nicolson (default) or backward Euler on the core's finite
volumes (:class:`~medtransport.numerics.finite_volume.ThetaStepper`: harmonic-mean
conductivities across tissue interfaces; one LU factorization per run in 1-D and 2-D, again
only where perfusion shuts down; on large 3-D grids a direct fast-transform solve when the
tissue is uniform and every face is held or closed, else conjugate gradients), or FTCS,
refused before it runs when its step is unstable (the refusal names the largest stable step).

The five answers: it counts thermal energy ∫ρcT dV (J relative to 0 K; per unit area on a slab,
per unit length on a cylinder or 2-D box); in the grid; it enters by the external sources and
metabolism, is exchanged with blood (sink ``perfusion``: heat carried away by blood, negative
when blood warms the tissue) and crosses every face that is not insulated; it is conserved up
to those; it starts as ∫ρc·T_0 dV.

**Thermal relaxation** (``thermal_relaxation_time`` τ > 0, the thermal-wave or
Cattaneo–Vernotte model): the conducted heat flux obeys τ·∂q/∂t + q = −k∇T instead of Fourier's
law, so heat travels at a finite speed √(k/(ρc·τ)) and a cooling tissue can overshoot below the
arterial temperature. It runs on the core's asymptotic-preserving relaxed-flux stepper
(:mod:`medtransport.numerics.cattaneo`, backward Euler: ``solver.method: backward_euler``),
whose step does not shrink with τ and which is Pennes' backward Euler at τ = 0; the ledger is the
same (interior fluxes telescope; boundary faces follow their law at once).

Thermal dose CEM43 and Arrhenius damage Ω are accumulated per cell (:mod:`~.dose`); the
ablation zone is where CEM43 ≥ 240 min, the damaged zone where Ω ≥ 1.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pint
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field

from medtransport.audit.stability import StabilityMargin
from medtransport.boundary import BoundaryCondition, resolve_boundaries
from medtransport.domain import Grid, grid_of
from medtransport.errors import ScenarioError
from medtransport.ledger import Ledger, Species
from medtransport.model import Model, Params, Progress, Tolerance, Trajectory
from medtransport.units import Q_, Qty, ureg
from medtransport_bioheat import __version__
from medtransport_bioheat.dose import arrhenius_rate, cem43_rate
from medtransport_bioheat.sources import SourceSpec, cell_centres, region_mask, schedules, shape
from medtransport_bioheat.tissues import BLOOD, Tissue, TissueOverride, resolve_tissues

Temperature = Qty("K", gt=0)
Position = Qty("m")
ABLATION_CEM43_MIN = 240.0
ZERO_CELSIUS_K = 273.15


class Layer(BaseModel):
    """A tissue layer of ``thickness``, stacked from the lower edge of ``axis`` (in order)."""

    model_config = ConfigDict(extra="forbid")

    tissue: str
    thickness: Qty("m", gt=0)
    axis: str | None = None


class Inclusion(BaseModel):
    """A ball of ``tissue`` (a tumour) of ``radius`` around ``center`` (radial grids: around
    the axis or centre, ``center`` left out)."""

    model_config = ConfigDict(extra="forbid")

    tissue: str
    radius: Qty("m", gt=0)
    center: list[Position] | None = None


class InitialRegion(BaseModel):
    """Cells whose centres lie in ``region`` start at ``temperature``."""

    model_config = ConfigDict(extra="forbid")

    region: dict[str, list[Position]]
    temperature: Temperature


class Arrhenius(BaseModel):
    """Arrhenius damage parameters (defaults: liver, Jacques et al. as cited in REFERENCES §3;
    Henriques' skin is A = 3.1e98 1/s, E_a = 6.28e5 J/mol)."""

    model_config = ConfigDict(extra="forbid")

    frequency_factor: Qty("1/s", gt=0) = Q_(7.39e39, "1/s")
    activation_energy: Qty("J/mol", gt=0) = Q_(2.577e5, "J/mol")


class PennesParams(Params):
    """Parameters of ``bioheat.pennes``."""

    tissue: str = "muscle"
    layers: list[Layer] = Field(default_factory=list)
    inclusions: list[Inclusion] = Field(default_factory=list)
    tissues: dict[str, TissueOverride] = Field(default_factory=dict)
    initial_temperature: Temperature = Q_(310.15, "K")
    initial_regions: list[InitialRegion] = Field(default_factory=list)
    arterial_temperature: Temperature = Q_(310.15, "K")
    metabolism: bool = True
    sources: list[SourceSpec] = Field(default_factory=list)
    arrhenius: Arrhenius = Field(default_factory=Arrhenius)
    perfusion_shutdown: float | None = Field(default=None, gt=0)
    probes: dict[str, list[Position]] = Field(default_factory=dict)
    map_times: list[Qty("s", ge=0)] = Field(default_factory=list)
    #: Cattaneo–Vernotte thermal relaxation time τ: τ·∂q/∂t + q = −k∇T (0: Pennes' Fourier law)
    thermal_relaxation_time: Qty("s", ge=0) = Q_(0.0, "s")


class PennesBioheat(Model):
    #: what a person reads (medtransport.display): °C, mL for volumes
    display_units: ClassVar[dict[str, str]] = {"temperature": "degC", "ablation_volume": "mL",
                                               "lesion_volume": "mL"}
    id = "bioheat.pennes"
    title = "Pennes bioheat with thermal dose"
    version = __version__
    description = ("Tissue temperature by the Pennes bioheat equation ρc∂T/∂t = ∇·(k∇T) + "
                   "ω_bρ_bc_b(T_a − T) + Q_m + Q_ext in layered tissues (1–3-D box, cylinder, "
                   "sphere) with laser, RF and focused-ultrasound sources switched by power "
                   "events, convective/fixed/insulated boundaries, an energy ledger in joules, "
                   "CEM43 thermal dose and Arrhenius damage.")
    Params = PennesParams
    conserved = (Species("energy", "temperature", "thermal energy",
                         "thermal energy ∫ρcT dV relative to 0 K", capacity="heat_capacity"),)
    tags = frozenset({"grid", "deterministic"})
    methods: ClassVar[dict[str, Tolerance]] = {
        "crank_nicolson": Tolerance(rtol=1e-9),
        "backward_euler": Tolerance(rtol=1e-9),
        "ftcs": Tolerance(rtol=1e-9),
    }
    event_types = frozenset({"power"})
    params: PennesParams

    # -- the five answers ------------------------------------------------------------------
    def build_domain(self) -> Grid:
        grid = grid_of(self.scenario.domain, self.id)
        if self.relaxation_time > 0 and self.method != "backward_euler":
            raise ScenarioError([("parameters.thermal_relaxation_time",
                                  "a thermal relaxation time runs on the relaxed-flux "
                                  "(asymptotic-preserving backward-Euler) scheme: set "
                                  f"solver.method to backward_euler (got {self.method})")])
        self._setup(grid)
        return grid

    @property
    def relaxation_time(self) -> float:
        """Cattaneo–Vernotte τ in seconds (0: Fourier's law, Pennes)."""
        return float(self.params.thermal_relaxation_time.m_as("s"))

    @property
    def grid(self) -> Grid:
        assert isinstance(self.domain, Grid)
        return self.domain

    @property
    def energy_units(self) -> str:
        unit = ureg.parse_units("J/m**3") * ureg.parse_units(self.grid_weights_units)
        return f"{unit:~C}"

    def build_boundaries(self) -> dict[str, BoundaryCondition]:
        return resolve_boundaries(self.scenario.boundaries, self.grid.faces, field_units="K",
                                  flux_units="W/m**2",
                                  allowed=frozenset({"no_flux", "dirichlet", "neumann",
                                                     "robin"}))

    def ledger_units(self) -> dict[str, str]:
        return {"energy": self.energy_units}

    def initial_amounts(self) -> dict[str, pint.Quantity]:
        energy = float(np.sum(self.grid.weights * self.rho_c * self.t0))
        return {"energy": Q_(energy, self.energy_units)}

    def routes(self) -> dict[str, list[str]]:
        out = super().routes()["energy"]
        out.append("perfusion: heat carried away by blood at the arterial temperature "
                   f"{self.params.arterial_temperature.m_as('K') - ZERO_CELSIUS_K:.4g} °C")
        if self.params.metabolism:
            out.append("metabolic heat (source)")
        out += [f"{s.kind} source {s.name!r} (inflow)" for s in self.params.sources]
        return {"energy": out}

    # -- set-up ----------------------------------------------------------------------------
    def _setup(self, grid: Grid) -> None:
        """Per-cell properties, the initial field and the sources (in SI magnitudes)."""
        p = self.params
        self.grid_weights_units = grid.weights_units
        # Tissues as integer codes (an object array of names is slow on large grids).
        names_in_order: list[str] = [p.tissue]

        def code(name: str) -> int:
            if name not in names_in_order:
                names_in_order.append(name)
            return names_in_order.index(name)

        label = np.zeros(grid.cells, dtype=np.int16)
        centres = cell_centres(grid)
        problems: list[tuple[str, str]] = []
        starts: dict[str, float] = {}
        for i, layer in enumerate(p.layers):
            axis = layer.axis or grid.dims[0]
            if axis not in grid.dims:
                problems.append((f"parameters.layers.{i}.axis",
                                 f"no such axis; this grid has {', '.join(grid.dims)}"))
                continue
            k = grid.dims.index(axis)
            lo = starts.get(axis, grid.lower[k])
            hi = lo + float(layer.thickness.m_as("m"))
            starts[axis] = hi
            label[(centres[k] >= lo) & (centres[k] < hi)] = code(layer.tissue)
        for i, inc in enumerate(p.inclusions):
            if grid.radial:
                if inc.center is not None:
                    problems.append((f"parameters.inclusions.{i}.center",
                                     "on a cylinder or sphere an inclusion is centred on the "
                                     "axis; leave the centre out"))
                    continue
                dist = centres[0]
            else:
                if inc.center is None or len(inc.center) != grid.ndim:
                    problems.append((f"parameters.inclusions.{i}.center",
                                     f"expected {grid.ndim} coordinates"))
                    continue
                dist = np.sqrt(sum((x - float(c.m_as("m"))) ** 2
                                   for x, c in zip(centres, inc.center, strict=True)))
            label[dist <= float(inc.radius.m_as("m"))] = code(inc.tissue)
        if problems:
            raise ScenarioError(problems)
        present = np.unique(label)
        names = {names_in_order[int(i)] for i in present}
        tissues, problems = resolve_tissues(names, p.tissues)
        unknown = sorted(names - set(tissues))
        for name in unknown:
            where = "parameters.tissue" if name == p.tissue else "parameters.layers"
            problems.append((where, f"unknown tissue {name!r}: the table has skin, fat, "
                                    "muscle, liver, tumour; define others in "
                                    "parameters.tissues"))
        if problems:
            raise ScenarioError(problems)
        self.tissues: dict[str, Tissue] = {n: tissues[n] for n in sorted(names)}
        # codes renumbered to the order of self.tissues
        remap = np.zeros(len(names_in_order), dtype=np.int16)
        for i, name in enumerate(self.tissues):
            remap[names_in_order.index(name)] = i
        self.labels = remap[label]

        def per_cell(fn: Any) -> np.ndarray:
            values = np.array([fn(t) for t in self.tissues.values()])
            return values[self.labels]

        rho_b, c_b = BLOOD
        self.rho_c = per_cell(lambda t: t.volumetric_heat_capacity)
        self.conductivity = per_cell(lambda t: float(t.conductivity.m_as("W/(m*K)")))
        self.density = per_cell(lambda t: float(t.density.m_as("kg/m^3")))
        self.perfusion = per_cell(lambda t: t.perfusion * rho_b * c_b)  # W/(m³·K)
        self.metabolic = per_cell(lambda t: t.metabolism) if p.metabolism \
            else np.zeros(grid.cells)
        self.t0 = np.full(grid.cells, float(p.initial_temperature.m_as("K")))
        for i, reg in enumerate(p.initial_regions):
            mask = region_mask(grid, reg.region, f"parameters.initial_regions.{i}.region")
            self.t0[mask] = float(reg.temperature.m_as("K"))
        names_seen: set[str] = set()
        self.source_shapes: dict[str, np.ndarray] = {}
        for i, src in enumerate(p.sources):
            if src.name in names_seen:
                raise ScenarioError([(f"parameters.sources.{i}.name",
                                      f"source name {src.name!r} is used twice")])
            names_seen.add(src.name)
            self.source_shapes[src.name] = shape(src, grid, self.density,
                                                 f"parameters.sources.{i}")
        self.schedules = schedules(self.scenario.events, p.sources, grid, p.probes)
        self.probe_cells: dict[str, tuple[int, ...]] = {}
        for name, pos in p.probes.items():
            if len(pos) != grid.ndim:
                raise ScenarioError([(f"parameters.probes.{name}",
                                      f"expected {grid.ndim} coordinates")])
            idx = []
            for k, q in enumerate(pos):
                x = float(q.m_as("m"))
                if not grid.lower[k] <= x <= grid.upper[k]:
                    raise ScenarioError([(f"parameters.probes.{name}",
                                          f"{q:~P} lies outside the domain along "
                                          f"{grid.dims[k]}")])
                idx.append(min(int((x - grid.lower[k]) / grid.spacing[k]), grid.cells[k] - 1))
            self.probe_cells[name] = tuple(idx)

    def problem(self, exchange: np.ndarray | None = None) -> Any:
        """The core's finite-volume problem (SI magnitudes: K, W, J, m, s)."""
        from medtransport.numerics.finite_volume import DiffusionProblem

        return DiffusionProblem(
            self.grid, self.conductivity, self.boundaries, source=self.metabolic,
            capacity=self.rho_c, exchange=self.perfusion if exchange is None else exchange,
            exchange_reference=float(self.params.arterial_temperature.m_as("K")))

    # -- before the run --------------------------------------------------------------------
    def stability(self) -> list[StabilityMargin]:
        if self.method != "ftcs":
            return []
        from medtransport.numerics.finite_volume import ftcs_stability

        info = ftcs_stability(self.problem(), self.scenario.time.dt)
        return [StabilityMargin("ftcs", info.r, info.limit,
                                f"max Δt·(outgoing rate)/ρc = {info.r:.6g} (limit "
                                f"{info.limit:.6g})",
                                f"use a time step of at most {info.max_stable_dt:.6g} s, or "
                                "choose crank_nicolson")]

    # -- the run ---------------------------------------------------------------------------
    def simulate(self, progress: Progress | None = None) -> Trajectory:
        from medtransport.numerics.finite_volume import ThetaStepper

        tg = self.scenario.time
        grid = self.grid
        dt, n_steps = tg.dt, tg.n_steps
        out_steps = tg.output_steps()
        n_out = len(out_steps)
        t_start = float(tg.start.m_as("s"))
        a = self.perfusion.copy()
        if self.relaxation_time > 0:
            from medtransport.numerics.cattaneo import RelaxedFluxStepper

            stepper: Any = RelaxedFluxStepper(self.problem(a), dt, self.relaxation_time)
        else:
            stepper = ThetaStepper(self.problem(a), dt, self.method)
        arr = self.params.arrhenius
        freq = float(arr.frequency_factor.m_as("1/s"))
        ea = float(arr.activation_energy.m_as("J/mol"))
        w = np.broadcast_to(grid.weights, grid.cells).ravel()
        shapes = {n: s.ravel() for n, s in self.source_shapes.items()}
        per_level = {n: float(np.sum(w * s)) for n, s in shapes.items()}

        u = self.t0.ravel().copy()
        cem = np.zeros_like(u)
        omega = np.zeros_like(u)
        cem_rate = cem43_rate(u)
        dmg_rate = arrhenius_rate(u, freq, ea)
        states = np.empty((n_out, *grid.cells))
        doses = np.empty((n_out, *grid.cells))
        damages = np.empty((n_out, *grid.cells))
        faces = [f for f in grid.faces if self.boundaries[f].lets_through]
        outflow = {f: np.zeros(n_out) for f in faces}
        inflow = {n: np.zeros(n_out) for n in shapes}
        metabolic = np.zeros(n_out)
        perfusion_sink = np.zeros(n_out)
        running = {"metabolic": 0.0, "perfusion": 0.0, **{f"face:{f}": 0.0 for f in faces},
                   **{f"src:{n}": 0.0 for n in shapes}}
        shutdowns = 0

        def record(k: int) -> None:
            states[k] = u.reshape(grid.cells)
            doses[k] = cem.reshape(grid.cells)
            damages[k] = omega.reshape(grid.cells)
            for f in faces:
                outflow[f][k] = running[f"face:{f}"]
            for n in shapes:
                inflow[n][k] = running[f"src:{n}"]
            metabolic[k] = running["metabolic"]
            perfusion_sink[k] = running["perfusion"]

        flat_probe = {name: int(np.ravel_multi_index(cell, grid.cells))
                      for name, cell in self.probe_cells.items()}

        def probe(name: str) -> float:
            return float(u[flat_probe[name]])  # the temperature at the start of the step

        record(0)
        k_out = 1
        for step in range(1, n_steps + 1):
            t0 = t_start + (step - 1) * dt
            t1 = t_start + step * dt
            extra = None
            for n, s in shapes.items():
                level = self.schedules[n].integral(t0, t1, probe)
                if level:
                    extra = s * level if extra is None else extra + s * level
                    running[f"src:{n}"] += level * per_level[n]
            new, flows = stepper.step(u, extra)
            for f in faces:
                running[f"face:{f}"] += flows.outflow[f]
            running["metabolic"] += flows.source
            running["perfusion"] -= flows.exchange
            new_cem_rate = cem43_rate(new)
            new_dmg_rate = arrhenius_rate(new, freq, ea)
            cem += 0.5 * (cem_rate + new_cem_rate) * (dt / 60.0)
            omega += 0.5 * (dmg_rate + new_dmg_rate) * dt
            u, cem_rate, dmg_rate = new, new_cem_rate, new_dmg_rate
            threshold = self.params.perfusion_shutdown
            if threshold is not None:
                dead = (omega >= threshold) & (a.ravel() > 0)
                if dead.any():
                    a = a.copy()
                    a.ravel()[dead] = 0.0
                    stepper.update(exchange=a)
                    shutdowns += 1
            if k_out < n_out and step == out_steps[k_out]:
                record(k_out)
                k_out += 1
                if progress is not None:
                    progress(step / n_steps)
        times = t_start + np.asarray(out_steps, dtype=float) * dt
        ds = self._dataset(times, states, doses, damages)
        ledger = Ledger.of("energy", self.energy_units, n_out, outflow=outflow,
                           inflow=inflow or None,
                           source={"metabolic": metabolic} if self.params.metabolism else None,
                           sink={"perfusion": perfusion_sink})
        notes = {"linear_solver": stepper.solver_name,
                 "thermal_relaxation_time_s": self.relaxation_time,
                 "factorizations": stepper.factorizations,
                 "cg_iterations": stepper.iterations, "perfusion_updates": shutdowns}
        ds.attrs.update({f"solver_{k}": v for k, v in notes.items()})
        return Trajectory(ds, {"energy": ledger}, notes=notes)

    def _dataset(self, times: np.ndarray, states: np.ndarray, doses: np.ndarray,
                 damages: np.ndarray) -> xr.Dataset:
        grid = self.grid
        dims = ("time", *grid.dims)
        coords: dict[str, Any] = {"time": ("time", times, {"units": "s", "long_name": "time"})}
        coords.update(grid.coords())
        w = grid.weights
        axes = tuple(range(1, states.ndim))
        data: dict[str, Any] = {
            "temperature": (dims, states, {"units": "K", "long_name": "tissue temperature"}),
            "heat_capacity": (grid.dims, self.rho_c, {
                "units": "J/(m**3*K)", "long_name": "volumetric heat capacity ρc"}),
            "thermal_dose": (dims, doses, {"units": "min",
                                           "long_name": "thermal dose CEM43"}),
            "damage": (dims, damages, {"units": "dimensionless",
                                       "long_name": "Arrhenius damage integral Ω"}),
            "max_temperature": ("time", states.max(axis=axes) - ZERO_CELSIUS_K, {
                "units": "degC", "long_name": "maximum tissue temperature"}),
            "ablation_volume": ("time", np.sum((doses >= ABLATION_CEM43_MIN) * w, axis=axes), {
                "units": grid.weights_units,
                "long_name": f"ablation zone (CEM43 ≥ {ABLATION_CEM43_MIN:g} min)"}),
            "damaged_volume": ("time", np.sum((damages >= 1.0) * w, axis=axes), {
                "units": grid.weights_units, "long_name": "damaged zone (Ω ≥ 1)"}),
        }
        if self.probe_cells:
            names = list(self.probe_cells)
            hist = np.stack([states[(slice(None), *self.probe_cells[n])] for n in names], 1)
            coords["probe"] = ("probe", np.array(names, dtype=object),
                               {"units": "dimensionless", "long_name": "probe point"})
            data["probe_temperature"] = (("time", "probe"), hist - ZERO_CELSIUS_K, {
                "units": "degC", "long_name": "temperature at the probe points"})
        data["tissue"] = (grid.dims, self.labels.astype(np.int32), {
            "units": "dimensionless", "long_name": "tissue index",
            "flag_meanings": " ".join(self.tissues)})
        return xr.Dataset(data, coords=coords)

    # -- presentation ----------------------------------------------------------------------
    def plot(self, dataset: xr.Dataset, figure: Any) -> None:
        from medtransport_bioheat.plotting import plot

        plot(self, dataset, figure)

    @classmethod
    def example_scenarios(cls) -> list[dict[str, Any]]:
        slab = {
            "model": cls.id,
            "domain": {"shape": "box", "size": ["2 cm"], "cells": [40]},
            "parameters": {"layers": [{"tissue": "skin", "thickness": "2 mm"},
                                      {"tissue": "fat", "thickness": "3 mm"}],
                           "initial_temperature": "37 degC",
                           "sources": [{"name": "lamp", "kind": "laser",
                                        "effective_attenuation": "2 1/mm"}]},
            "events": [{"type": "power", "source": "lamp", "power": "5000 W/m^2",
                        "at": "10 s", "duration": "30 s"}],
            "boundaries": {"x-": {"kind": "robin", "transfer_coefficient": "10 W/(m^2*K)",
                                  "ambient": "25 degC"},
                           "x+": {"kind": "dirichlet", "value": "37 degC"}},
            "time": {"stop": "60 s", "step": "1 s", "output_every": "10 s"},
        }
        out = [{**slab, "name": f"skin slab, {m}", "solver": {"method": m}}
               for m in ("crank_nicolson", "backward_euler")]
        out.append({**slab, "name": "skin slab, ftcs", "solver": {"method": "ftcs"},
                    "time": {"stop": "20 s", "step": "0.05 s", "output_every": "5 s"}})
        out.append({"model": cls.id, "name": "heated sphere",
                    "domain": {"shape": "sphere", "radius": "1 cm", "cells": [20]},
                    "parameters": {"tissue": "liver",
                                   "sources": [{"name": "rf", "kind": "rf",
                                                "region": {"r": ["0 mm", "3 mm"]}}]},
                    "events": [{"type": "power", "source": "rf", "sar": "200 W/kg",
                                "duration": "30 s"}],
                    "boundaries": {"r+": {"kind": "dirichlet", "value": "37 degC"}},
                    "time": {"stop": "60 s", "step": "2 s", "output_every": "10 s"}})
        return out

    @classmethod
    def invalid_parameters(cls) -> list[tuple[dict[str, Any], str]]:
        return [
            ({"initial_temperature": "37 kg"}, "initial_temperature"),
            ({"arterial_temperature": "-5 K"}, "arterial_temperature"),
            ({"tissues": {"liver": {"conductivity": "0.5 W/m"}}}, "tissues"),
            ({"sources": [{"name": "l", "kind": "laser"}]}, "sources"),
            ({"colour": "red"}, "colour"),
        ]
