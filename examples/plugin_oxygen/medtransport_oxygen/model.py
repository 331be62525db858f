"""Oxygen diffusing from a capillary into the surrounding tissue (the Krogh cylinder), consumed
by the cells at a Michaelis–Menten rate:

    α · ∂P/∂t = (1/r) · ∂/∂r (r · D·α · ∂P/∂r) − M0 · P / (P + P50)

on the annulus ``r_c ≤ r ≤ R`` (a ``cylinder`` domain whose ``inner_radius`` is the capillary
radius), where ``P`` is the oxygen tension, ``α`` the solubility (so ``α·P`` is the dissolved
oxygen concentration), ``D`` the diffusivity, ``M0`` the maximal consumption rate and ``P50``
the tension at half-maximal consumption (Krogh 1919; Popel 1989, eq. 4 and 8). The capillary
wall is a boundary of the scenario (``r-``: ``dirichlet`` at the capillary tension, or
``permeable``); ``r+`` is usually ``no_flux`` (mirror-symmetric neighbours).

Solver ``backward_euler``: finite volumes from medtransport's shared numerics (transport
coefficient ``K = D·α``, capacity ``α``), implicit in time with the consumption linearised at the
previous step, ``M ≈ M0/(Pⁿ + P50) · Pⁿ⁺¹`` (Picard lag), so each step is one tridiagonal solve
and stays non-negative. The ledger integrates the capillary flux and the consumption at the same
states the scheme uses, so the books close to round-off; at steady state the lag vanishes and
the profile is the exact discrete steady state of the nonlinear problem.

The five answers: it counts dissolved oxygen (``oxygen_tension`` × ``solubility``), per metre
of capillary; in the tissue annulus; it enters or leaves through the capillary wall (and any
other face that lets flux through) and is removed by consumption; it starts from the uniform
``initial_tension``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import pint
import xarray as xr
from medtransport.boundary import BoundaryCondition, resolve_boundaries
from medtransport.domain import Grid
from medtransport.errors import ScenarioError
from medtransport.ledger import Ledger, Species
from medtransport.model import Model, Params, Tolerance, Trajectory
from medtransport.numerics.finite_volume import DiffusionProblem, assemble, face_flux_operators
from medtransport.units import Q_, Qty
from scipy.linalg import solve_banded

from medtransport_oxygen import __version__

TENSION = "mmHg"
SOLUBILITY = "mol/m^3/mmHg"
AMOUNT = "mol/m"  # per metre of capillary: the cylinder's cells are areas


class KroghParams(Params):
    """Parameters of ``oxygen.krogh``."""

    diffusivity: Qty("m^2/s", gt=0)
    solubility: Qty(SOLUBILITY, gt=0)
    max_consumption_rate: Qty("mol/m^3/s", ge=0)
    p50: Qty(TENSION, gt=0)
    initial_tension: Qty(TENSION, ge=0)


class KroghCylinder(Model):
    id = "oxygen.krogh"
    title = "Oxygen diffusion from a capillary into tissue (Krogh cylinder)"
    version = __version__
    description = ("Oxygen diffusing radially from a capillary into the tissue cylinder it "
                   "supplies, α·∂P/∂t = ∇·(Dα∇P) − M0·P/(P + P50), solved by implicit finite "
                   "volumes with the Michaelis–Menten consumption linearised per step; at "
                   "steady state and P50 → 0 it reproduces the Krogh–Erlang profile.")
    Params = KroghParams
    conserved = (Species("oxygen", "oxygen_tension", "amount of dissolved oxygen",
                         "dissolved oxygen per metre of capillary, α·P integrated over the "
                         "tissue annulus", capacity="solubility"),)
    tags = frozenset({"grid", "deterministic"})
    methods: ClassVar[dict[str, Tolerance]] = {"backward_euler": Tolerance(rtol=1e-9)}
    params: KroghParams

    # -- the five answers ------------------------------------------------------------------
    def build_domain(self) -> Grid:
        spec = self.scenario.domain
        grid = spec.build() if spec is not None else None
        if not (isinstance(grid, Grid) and grid.geometry == "cylinder" and grid.lower[0] > 0):
            raise ScenarioError([("domain", "oxygen.krogh needs a cylinder whose inner_radius "
                                            "is the capillary radius, e.g. {shape: cylinder, "
                                            "inner_radius: 5 um, radius: 50 um, cells: [60]}")])
        return grid

    @property
    def grid(self) -> Grid:
        assert isinstance(self.domain, Grid)
        return self.domain

    def build_boundaries(self) -> dict[str, BoundaryCondition]:
        return resolve_boundaries(
            self.scenario.boundaries, self.grid.faces, field_units=TENSION,
            flux_units="mol/m^2/s",
            allowed=frozenset({"no_flux", "dirichlet", "neumann", "robin", "permeable"}))

    def ledger_units(self) -> dict[str, str]:
        return {"oxygen": AMOUNT}

    def initial_amounts(self) -> dict[str, pint.Quantity]:
        lo, hi = self.grid.lower[0], self.grid.upper[0]
        area = Q_(math.pi * (hi ** 2 - lo ** 2), "m^2")
        return {"oxygen": (self.params.solubility * self.params.initial_tension * area).to(AMOUNT)}

    def routes(self) -> dict[str, list[str]]:
        out = super().routes()["oxygen"]
        if self.params.max_consumption_rate.magnitude > 0:
            out.append(f"consumption by the tissue (Michaelis–Menten, M0 = "
                       f"{self.params.max_consumption_rate:~P}, P50 = {self.params.p50:~P})")
        return {"oxygen": out}

    # -- the run ---------------------------------------------------------------------------
    def simulate(self, progress: Callable[[float], None] | None = None) -> Trajectory:
        p = self.params
        alpha = float(p.solubility.m_as(SOLUBILITY))
        m0 = float(p.max_consumption_rate.m_as("mol/m^3/s"))
        p50 = float(p.p50.m_as(TENSION))
        problem = DiffusionProblem(self.grid, float(p.diffusivity.m_as("m^2/s")) * alpha,
                                   self.boundaries, capacity=alpha)
        a, b = assemble(problem)
        faces = {f: op for f, op in face_flux_operators(problem).items()
                 if self.boundaries[f].lets_through}
        w = self.grid.weights
        mass = w * alpha
        # Tridiagonal storage of A for scipy's banded solver (one radial axis).
        upper, diag, lower = a.diagonal(1), a.diagonal(0), a.diagonal(-1)

        tg = self.scenario.time
        dt = tg.dt
        out_steps = tg.output_steps()
        n_out = len(out_steps)
        u = np.full(self.grid.cells[0], float(p.initial_tension.m_as(TENSION)))
        states = np.empty((n_out, u.size))
        states[0] = u
        outflow = {f: np.zeros(n_out) for f in faces}
        sink = np.zeros(n_out)
        flow = dict.fromkeys(faces, 0.0)
        consumed = 0.0
        band = np.zeros((3, u.size))
        band[0, 1:] = -dt * upper
        band[2, :-1] = -dt * lower
        k = 1
        for step in range(1, int(out_steps[-1]) + 1):
            rate = m0 / (u + p50)  # lagged Michaelis–Menten coefficient, mol/(m³·s·mmHg)
            band[1] = mass - dt * diag + dt * w * rate
            u = solve_banded((1, 1), band, mass * u + dt * b)
            consumed += dt * float(np.sum(w * rate * u))
            for f, op in faces.items():
                flow[f] += dt * op(u)
            if step == out_steps[k]:
                states[k] = u
                sink[k] = consumed
                for f in faces:
                    outflow[f][k] = flow[f]
                k += 1
                if progress is not None:
                    progress(step / out_steps[-1])
        times = tg.start.m_as("s") + np.asarray(out_steps, dtype=float) * dt
        coords: dict[str, Any] = {"time": ("time", times, {"units": "s", "long_name": "time"})}
        coords.update(self.grid.coords())
        ds = xr.Dataset(
            {
                "oxygen_tension": (("time", "r"), states,
                                   {"units": TENSION, "long_name": "oxygen tension"}),
                "solubility": (("r",), np.full(u.size, alpha),
                               {"units": SOLUBILITY, "long_name": "oxygen solubility"}),
                "consumption_rate": (("time", "r"), m0 * states / (states + p50),
                                     {"units": "mol/m^3/s",
                                      "long_name": "oxygen consumption rate"}),
            },
            coords=coords,
        )
        ledger = Ledger.of("oxygen", AMOUNT, n_out, outflow=outflow,
                           sink={"consumption": sink} if m0 > 0 else None)
        return Trajectory(ds, {"oxygen": ledger})

    # -- for the conformance suite ---------------------------------------------------------
    @classmethod
    def example_scenarios(cls) -> list[dict[str, Any]]:
        return [{
            "name": "Krogh cylinder, working skeletal muscle",
            "model": cls.id,
            "domain": {"shape": "cylinder", "inner_radius": "5 um", "radius": "50 um",
                       "cells": [30]},
            "parameters": {"diffusivity": "2e-9 m^2/s", "solubility": "1.34e-3 mol/m^3/mmHg",
                           "max_consumption_rate": "0.02 mol/m^3/s", "p50": "1 mmHg",
                           "initial_tension": "20 mmHg"},
            "boundaries": {"r-": {"kind": "dirichlet", "value": "40 mmHg"},
                           "r+": {"kind": "no_flux"}},
            "time": {"stop": "2 s", "step": "0.05 s", "output_every": "0.5 s"},
        }]

    @classmethod
    def invalid_parameters(cls) -> list[tuple[dict[str, Any], str]]:
        good = {"diffusivity": "2e-9 m^2/s", "solubility": "1.34e-3 mol/m^3/mmHg",
                "max_consumption_rate": "0.02 mol/m^3/s", "p50": "1 mmHg",
                "initial_tension": "20 mmHg"}
        return [
            ({**good, "diffusivity": "5 mL"}, "diffusivity"),
            ({**good, "solubility": "1 m"}, "solubility"),
            ({**good, "p50": "-1 mmHg"}, "p50"),
            ({**good, "max_consumption_rate": "0.02 mol/s"}, "max_consumption_rate"),
            ({k: v for k, v in good.items() if k != "initial_tension"}, "initial_tension"),
            ({**good, "colour": "red"}, "colour"),
        ]
