"""Every energy audit catches a deliberately broken bioheat model.

Each mutant is ``bioheat.pennes`` with one defect a real implementation could have; each test
names the audit that must catch it, and the unbroken model passes the same scenario (control).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pint
import pytest

from medtransport.errors import AuditFailure
from medtransport.model import Progress, Trajectory
from medtransport.runner import run
from medtransport.testing import build_model, failed_audits
from medtransport.units import Q_
from medtransport_bioheat.model import PennesBioheat

SKIN: dict[str, Any] = {
    "name": "mutant skin slab",
    "model": "bioheat.pennes",
    "domain": {"shape": "box", "size": ["2 cm"], "cells": [40]},
    "parameters": {"layers": [{"tissue": "skin", "thickness": "2 mm"},
                              {"tissue": "fat", "thickness": "3 mm"}],
                   "initial_temperature": "37 degC",
                   "sources": [{"name": "lamp", "kind": "laser",
                                "effective_attenuation": "2 1/mm"}]},
    "events": [{"type": "power", "source": "lamp", "power": "3000 W/m^2", "duration": "60 s"}],
    "boundaries": {"x-": {"kind": "robin", "transfer_coefficient": "20 W/(m^2*K)",
                          "ambient": "20 degC"},
                   "x+": {"kind": "dirichlet", "value": "37 degC"}},
    "time": {"stop": "120 s", "step": "1 s", "output_every": "10 s"},
}


class WrongSignBoundary(PennesBioheat):
    """Books the heat leaving through the faces as heat entering."""

    def simulate(self, progress: Progress | None = None) -> Trajectory:
        traj = super().simulate(progress)
        ledger = traj.ledgers["energy"]
        ledger.outflow = {face: -v for face, v in ledger.outflow.items()}
        return traj


class PerfusionLeftOut(PennesBioheat):
    """Solves with perfusion but forgets to book the heat blood carries away."""

    def simulate(self, progress: Progress | None = None) -> Trajectory:
        traj = super().simulate(progress)
        traj.ledgers["energy"].sink.pop("perfusion")
        return traj


class CelsiusStates(PennesBioheat):
    """Returns the temperature in degC: ∫ρc·T dV would multiply an offset unit."""

    def simulate(self, progress: Progress | None = None) -> Trajectory:
        traj = super().simulate(progress)
        t = traj.states["temperature"]
        traj.states["temperature"] = (t.dims, t.values - 273.15,
                                      {**t.attrs, "units": "degC"})
        return traj


class CelsiusMagnitude(PennesBioheat):
    """Declares the initial energy with the degC magnitude (37) stripped of its unit."""

    def initial_amounts(self) -> dict[str, pint.Quantity]:
        t0_celsius = self.params.initial_temperature.to("degC").magnitude
        energy = float(np.sum(self.grid.weights * self.rho_c * t0_celsius))
        return {"energy": Q_(energy, self.energy_units)}


def test_control_passes() -> None:
    ds = run(build_model(PennesBioheat, SKIN))
    assert ds.attrs["audit_status"] == "passed"
    # Each mutated ledger term is large against the tolerance, so its loss must show.
    scale = float(np.max(ds["energy_stored"].values))
    for term in ("energy_outflow", "energy_sink"):
        assert float(np.max(np.abs(ds[term].values))) > 1e-6 * scale


def test_wrong_sign_boundary_flux_is_caught_by_energy_balance() -> None:
    assert "mass_balance[energy]" in failed_audits(WrongSignBoundary, SKIN)


def test_perfusion_missing_from_the_ledger_is_caught_by_energy_balance() -> None:
    assert "mass_balance[energy]" in failed_audits(PerfusionLeftOut, SKIN)


def test_celsius_states_cannot_be_integrated() -> None:
    with pytest.raises(AuditFailure) as info:
        run(build_model(CelsiusStates, SKIN))
    failed = {r.name: r.detail for r in info.value.report.failures}
    assert "mass_balance[energy]" in failed and "normalization[energy]" in failed
    assert "OffsetUnitCalculusError" in failed["mass_balance[energy]"]


def test_celsius_magnitude_in_the_initial_energy_is_caught_by_normalization() -> None:
    assert "normalization[energy]" in failed_audits(CelsiusMagnitude, SKIN)


def test_the_registry_refuses_to_multiply_degc() -> None:
    with pytest.raises(pint.errors.OffsetUnitCalculusError):
        _ = Q_(37.0, "degC") * Q_(3.6e6, "J/(m^3*K)")
