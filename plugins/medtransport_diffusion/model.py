"""Fickian diffusion with first-order decay and a zero-order source (REFERENCES §0):

    ∂c/∂t = ∇·(D∇c) − k·c + s

on a 1–3-D box or a radially symmetric cylinder or sphere, with per-face boundaries, from a
declared initial amount. Solvers (``solver.method``):

- ``crank_nicolson`` (default) and ``backward_euler`` — implicit finite volumes, one sparse LU
  factorization per run;
- ``ftcs`` — explicit finite volumes, refused before it runs when D·Δt/Δx² > 1/(2d) unless
  ``solver.allow_substeps`` is set;
- ``lattice_walk`` — walkers jumping between cells with probability r = D·Δt/Δx² per
  neighbour (its mean is FTCS exactly);
- ``brownian`` — off-lattice walkers with N(0, 2DΔt) steps, exact reflection;
- ``series`` — Crank's eigenfunction series for a uniformly loaded slab or sphere with perfect
  sinks at the surface (Crank 4.17 and 6.18), with audited truncation;
- ``telegrapher`` — finite-speed (Cattaneo) diffusion τ·c_tt + c_t = D·c_xx on a closed 1-D
  slab, ``solver.relaxation_time`` τ (:mod:`medtransport_diffusion.telegrapher`).

Events of type ``injection`` add an amount at given times, placed like the initial condition
and booked as inflow (:mod:`medtransport_diffusion.injections`; finite-volume methods).

The five answers: it counts the solute (``concentration``); in the grid; it may leave through
every face that lets flux through and by decay; it is conserved up to those; it starts with the
declared ``initial.amount``.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

import numpy as np
import pint
import xarray as xr
from pydantic import Field

from medtransport.audit.stability import StabilityMargin
from medtransport.boundary import BoundaryCondition, resolve_boundaries
from medtransport.domain import Grid, NotBool, grid_of
from medtransport.errors import ScenarioError
from medtransport.ledger import Ledger, Species
from medtransport.model import Model, Params, Progress, Tolerance, Trajectory
from medtransport.units import Q_, Qty
from medtransport_diffusion import __version__
from medtransport_diffusion.initial import (
    InitialCondition,
    Source,
    amount_base,
    amount_units,
    place,
    region_fraction,
)

WALKER_METHODS = ("lattice_walk", "brownian")


class FickParams(Params):
    """Parameters of ``diffusion.fick``."""

    # at most 1 m^2/s (gases ~2e-5): beyond, D·Δt/Δx² overflows the implicit factor
    diffusivity: Qty("m^2/s", gt=0, le=1.0)
    decay_rate: Qty("1/s", ge=0) = Q_(0.0, "1/s")
    initial: InitialCondition
    source: Source | None = None


class FickDiffusion(Model):
    id = "diffusion.fick"
    title = "Fickian diffusion with first-order decay"
    version = __version__
    description = ("A solute spreading by Fick's law, ∂c/∂t = ∇·(D∇c) − k·c + s, in a 1–3-D box "
                   "or a radially symmetric cylinder or sphere, solved by finite volumes "
                   "(FTCS, Crank–Nicolson, backward Euler), random walkers (lattice and "
                   "off-lattice) or Crank's series for a slab or a sphere.")
    Params = FickParams
    conserved = (Species("solute", "concentration", "amount of solute",
                         "the diffusing solute, counted in every cell"),)
    tags = frozenset({"grid", "deterministic", "stochastic", "series"})
    methods: ClassVar[dict[str, Tolerance]] = {
        "crank_nicolson": Tolerance(rtol=1e-9),
        "backward_euler": Tolerance(rtol=1e-9),
        "ftcs": Tolerance(rtol=1e-9),
        # Walkers are counted, so their books balance exactly.
        "lattice_walk": Tolerance(rtol=1e-12),
        "brownian": Tolerance(rtol=1e-12),
        "series": Tolerance(rtol=1e-8),
        "telegrapher": Tolerance(rtol=1e-9),
    }
    stochastic_methods = frozenset(WALKER_METHODS)
    event_types = frozenset({"injection"})
    params: FickParams

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        from medtransport_diffusion.injections import injection_fields

        #: step → concentration field added at its end (``events`` of type ``injection``)
        self.injections = injection_fields(self)

    # -- the five answers ------------------------------------------------------------------
    def build_domain(self) -> Grid:
        grid = grid_of(self.scenario.domain, self.id)
        self.base = amount_base(self.params.initial.amount, grid, "parameters.initial.amount")
        self.field_units = f"{self.base}/m**3"
        return grid

    @property
    def grid(self) -> Grid:
        assert isinstance(self.domain, Grid)
        return self.domain

    @property
    def amount_units(self) -> str:
        return f"{amount_units(self.grid, self.base):~C}"

    def build_boundaries(self) -> dict[str, BoundaryCondition]:
        allowed = None
        if self.method in WALKER_METHODS:
            allowed = frozenset({"no_flux", "absorbing"})
        elif self.method == "series":
            allowed = frozenset({"absorbing", "dirichlet"})
        elif self.method == "telegrapher":
            allowed = frozenset({"no_flux", "absorbing", "dirichlet"})
        grid = self.domain
        assert isinstance(grid, Grid)
        flux_units = f"{self.base}/m**2/s"
        bcs = resolve_boundaries(self.scenario.boundaries, grid.faces,
                                 field_units=self.field_units, flux_units=flux_units,
                                 allowed=allowed)
        if self.method == "series":
            self._check_series(grid, bcs)
        return bcs

    def solver_options(self) -> dict[str, Any]:
        if self.method in WALKER_METHODS:
            return {"walkers": (Annotated[int, Field(ge=1, le=50_000_000), NotBool], 100_000)}
        if self.method == "telegrapher":
            return {"relaxation_time": (Qty("s", ge=0) | None, None)}
        return {}

    def ledger_units(self) -> dict[str, str]:
        return {"solute": self.amount_units}

    def initial_amounts(self) -> dict[str, pint.Quantity]:
        return {"solute": self.params.initial.amount}

    def routes(self) -> dict[str, list[str]]:
        out = super().routes()["solute"]
        if self.params.decay_rate.magnitude > 0:
            out.append(f"decay at {self.params.decay_rate:~P}")
        return {"solute": out}

    # -- before the run --------------------------------------------------------------------
    def _problem(self) -> Any:
        from medtransport.numerics.finite_volume import DiffusionProblem

        source = 0.0
        if self.params.source is not None:
            try:
                rate = float(self.params.source.rate.m_as(f"{self.field_units}/s"))
            except pint.DimensionalityError:
                raise ScenarioError([("parameters.source.rate",
                                      f"expected a rate of {self.field_units}/s, got "
                                      f"{self.params.source.rate:~C}")]) from None
            source = rate * region_fraction(self.grid, self.params.source.region,
                                            "parameters.source.region")
        return DiffusionProblem(self.grid, float(self.params.diffusivity.m_as("m^2/s")),
                                self.boundaries,
                                decay=float(self.params.decay_rate.m_as("1/s")), source=source)

    def stability(self) -> list[StabilityMargin]:
        dt = self.scenario.time.dt
        if self.method == "ftcs":
            from medtransport.numerics.finite_volume import ftcs_stability

            info = ftcs_stability(self._problem(), dt)
            name = "D·Δt/Δx²" if info.form == "textbook" else "max Δt·(outgoing rate)"
            # Beside a face held at a value the textbook bound 1/(2d) tightens to 1/(2d+1).
            if self.scenario.solver.allow_substeps:
                n = max(1, int(np.ceil(dt / info.max_stable_dt * (1 + 1e-12))))
                return [StabilityMargin("ftcs", info.r / n, info.limit,
                                        f"r = {name} = {info.r / n:.6g} with {n} sub-steps per "
                                        f"step (limit {info.limit:.6g})")]
            return [StabilityMargin("ftcs", info.r, info.limit,
                                    f"r = {name} = {info.r:.6g} (limit {info.limit:.6g})",
                                    f"use a time step of at most {info.max_stable_dt:.6g} s, "
                                    "or set solver.allow_substeps: true")]
        if self.method == "lattice_walk" and not self.grid.radial:
            from medtransport.numerics.random_walk import largest_lattice_step
            from medtransport_diffusion.walkers import walls

            d = float(self.params.diffusivity.m_as("m^2/s"))
            dt_max = largest_lattice_step(self.grid, d, walls(self))
            p = dt / dt_max
            return [StabilityMargin("lattice_walk", p, 1.0,
                                    f"largest probability of a move per step (2·Σ D·Δt/Δx², "
                                    f"+ D·Δt/Δx² per absorbing face of a cell) = {p:.6g} "
                                    "(limit 1)", f"use a time step of at most {dt_max:.6g} s")]
        return []

    def truncations(self) -> list[Any]:
        if self.method != "series":
            return []
        return [self._series_truncation()]

    # -- the run ---------------------------------------------------------------------------
    def simulate(self, progress: Progress | None = None) -> Trajectory:
        tg = self.scenario.time
        if self.method in ("crank_nicolson", "backward_euler", "ftcs"):
            times, states, ledger = self._finite_volume(progress)
            extra: dict[str, Any] = {}
        elif self.method in WALKER_METHODS:
            times, states, ledger, extra = self._walkers(progress)
        elif self.method == "telegrapher":
            from medtransport_diffusion import telegrapher

            times, states, ledger, extra = telegrapher.simulate(self, progress)
        else:
            times, states, ledger = self._series()
            extra = {}
        times = tg.start.m_as("s") + np.asarray(times, dtype=float) - float(times[0])
        grid = self.grid
        coords: dict[str, Any] = {"time": ("time", times, {"units": "s", "long_name": "time"})}
        coords.update(grid.coords())
        ds = xr.Dataset(
            {"concentration": (("time", *grid.dims), states,
                               {"units": self.field_units,
                                "long_name": "solute concentration"})},
            coords=coords,
        )
        for name, (values, attrs) in extra.items():
            ds[name] = ("time", values, attrs)
        return Trajectory(ds, {"solute": ledger})

    def plot(self, dataset: xr.Dataset, figure: Any) -> None:
        if self.method == "telegrapher":
            from medtransport_diffusion import telegrapher

            telegrapher.plot(self, dataset, figure)
            return
        super().plot(dataset, figure)

    def audits(self) -> list[Any]:
        if self.method == "telegrapher":
            from medtransport_diffusion import telegrapher

            return telegrapher.audits(self)
        return []

    def _ledger(self, n: int, outflow: dict[str, np.ndarray], sink: np.ndarray | None = None,
                source: np.ndarray | None = None) -> Ledger:
        return Ledger.of("solute", self.amount_units, n, outflow=outflow,
                         sink=None if sink is None else {"decay": sink},
                         source=None if source is None else {"source": source})

    def _finite_volume(self, progress: Progress | None) -> tuple[Any, Any, Ledger]:
        from medtransport.numerics.finite_volume import solve

        tg = self.scenario.time
        problem = self._problem()
        u0 = place(self.params.initial, self.grid, self.field_units)
        sol = solve(problem, u0, tg.dt, tg.n_steps, output_every=tg.steps_per_output,
                    method=self.method, substeps_allowed=self.scenario.solver.allow_substeps,
                    progress=progress, additions=self.injections)
        n = len(sol.times)
        outflow = {face: np.asarray(v) for face, v in sol.outflow.items()
                   if self.boundaries[face].lets_through}
        sink = np.asarray(sol.sink) if problem.decay else None
        source = np.asarray(sol.source) if self.params.source is not None else None
        ledger = self._ledger(n, outflow, sink, source)
        if sol.inflow is not None:
            ledger.inflow["injection"] = np.asarray(sol.inflow)
        return sol.times, sol.states, ledger

    def _walkers(self, progress: Progress | None) -> tuple[Any, Any, Ledger, dict[str, Any]]:
        from medtransport_diffusion import walkers as rw

        if self.params.decay_rate.magnitude > 0 or self.params.source is not None:
            raise ScenarioError([("solver.method", f"{self.method} supports pure diffusion; "
                                                   "decay and sources need a finite-volume "
                                                   "method")])
        return rw.simulate(self, self.options["walkers"], progress)

    def _check_series(self, grid: Grid, bcs: dict[str, BoundaryCondition]) -> None:
        ok_shape = (grid.geometry == "sphere" and grid.lower[0] == 0.0) or \
            (grid.geometry == "cartesian" and grid.ndim == 1)
        problems = []
        if not ok_shape:
            problems.append(("solver.method", "the series solution covers a 1-D slab or a full "
                                              "sphere"))
        if any(bc.value != 0.0 for bc in bcs.values()):
            problems.append(("boundaries", "the series solution needs perfect sinks (absorbing, "
                                           "or dirichlet 0) on every face"))
        ic = self.params.initial
        if ic.kind != "uniform" or ic.region:
            problems.append(("parameters.initial", "the series solution starts from a uniform "
                                                   "concentration over the whole domain"))
        if self.params.decay_rate.magnitude > 0 or self.params.source is not None:
            problems.append(("solver.method", "the series solution has no decay or source"))
        if problems:
            raise ScenarioError(problems)

    def _series_truncation(self) -> Any:
        from medtransport_diffusion import series_solution

        return series_solution.truncation(self)

    def _series(self) -> tuple[Any, Any, Ledger]:
        from medtransport_diffusion import series_solution

        return series_solution.simulate(self)

    @classmethod
    def example_scenarios(cls) -> list[dict[str, Any]]:
        base = {
            "model": cls.id,
            "domain": {"shape": "box", "size": ["1 mm"], "cells": [40]},
            "parameters": {"diffusivity": "1e-9 m^2/s",
                           "initial": {"kind": "uniform", "amount": "1 umol/cm^2",
                                       "region": {"x": ["0 mm", "0.25 mm"]}}},
            "boundaries": {"x+": {"kind": "robin", "transfer_coefficient": "1e-6 m/s",
                                  "ambient": "0 mol/m^3"}},
            "time": {"stop": "60 s", "step": "1 s", "output_every": "10 s"},
            "seed": 7,
        }
        out = []
        for method in ("crank_nicolson", "backward_euler"):
            out.append({**base, "name": f"slab, {method}", "solver": {"method": method}})
        out.append({**base, "name": "slab, ftcs sub-stepped",
                    "solver": {"method": "ftcs", "allow_substeps": True}})
        out.append({**base, "name": "slab, two injections",
                    "events": [{"type": "injection", "at": "20 s", "every": "20 s", "count": 2,
                                "kind": "point", "amount": "0.2 umol/cm^2",
                                "center": ["0.5 mm"]}],
                    "solver": {"method": "crank_nicolson"}})
        out.append({**base, "name": "slab, lattice walk",
                    "boundaries": {"x+": {"kind": "absorbing"}},
                    "time": {"stop": "60 s", "step": "0.2 s", "output_every": "10 s"},
                    "solver": {"method": "lattice_walk", "walkers": 2000}})
        out.append({**base, "name": "sphere, brownian walkers",
                    "domain": {"shape": "sphere", "radius": "0.5 mm", "cells": [20]},
                    "parameters": {"diffusivity": "1e-9 m^2/s",
                                   "initial": {"kind": "point", "amount": "1 nmol"}},
                    "boundaries": {"r+": {"kind": "absorbing"}},
                    "solver": {"method": "brownian", "walkers": 2000}})
        out.append({**base, "name": "slab, telegrapher (finite speed)",
                    "boundaries": {}, "solver": {"method": "telegrapher",
                                                 "relaxation_time": "5 s"}})
        out.append({**base, "name": "sphere, series",
                    "domain": {"shape": "sphere", "radius": "0.5 mm", "cells": [20]},
                    "parameters": {"diffusivity": "1e-9 m^2/s",
                                   "initial": {"kind": "uniform", "amount": "1 nmol"}},
                    "boundaries": {"r+": {"kind": "absorbing"}},
                    "solver": {"method": "series"}})
        return out

    @classmethod
    def invalid_parameters(cls) -> list[tuple[dict[str, Any], str]]:
        initial = {"kind": "uniform", "amount": "1 umol/cm^2"}
        return [
            ({"diffusivity": "5 mL", "initial": initial}, "diffusivity"),
            ({"diffusivity": "-1e-9 m^2/s", "initial": initial}, "diffusivity"),
            ({"diffusivity": "1e-9 m^2/s"}, "initial"),
            ({"diffusivity": "1e-9 m^2/s", "initial": initial, "decay_rate": "1 m"},
             "decay_rate"),
            ({"diffusivity": "1e-9 m^2/s", "initial": initial, "colour": "blue"}, "colour"),
        ]
