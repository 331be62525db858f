"""Every audit catches a deliberately broken model.

Each mutant below is ``diffusion.fick`` with one defect a real implementation could have; each
test names the audit that must catch it. A good model passes the same scenario (the control).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from medtransport.boundary import BoundaryCondition
from medtransport.errors import AuditFailure
from medtransport.numerics import series
from medtransport.numerics.finite_volume import UnstableStepError
from medtransport.runner import run
from medtransport.testing import build_model, failed_audits
from medtransport_diffusion.model import FickDiffusion

SLAB: dict[str, Any] = {
    "name": "mutant slab",
    "model": "diffusion.fick",
    "domain": {"shape": "box", "size": ["1 mm"], "cells": [50]},
    "parameters": {"diffusivity": "1e-9 m^2/s",
                   "initial": {"kind": "uniform", "amount": "1 umol/cm^2",
                               "region": {"x": ["0 mm", "0.3 mm"]}}},
    "boundaries": {"x-": {"kind": "no_flux"},
                   "x+": {"kind": "robin", "transfer_coefficient": "1e-6 m/s",
                          "ambient": "0 mol/m^3"}},
    "time": {"stop": "120 s", "step": "1 s", "output_every": "10 s"},
}
SPHERE_SERIES: dict[str, Any] = {
    "name": "mutant sphere",
    "model": "diffusion.fick",
    "domain": {"shape": "sphere", "radius": "1 mm", "cells": [30]},
    "parameters": {"diffusivity": "1e-9 m^2/s",
                   "initial": {"kind": "uniform", "amount": "1 nmol"}},
    "boundaries": {"r+": {"kind": "absorbing"}},
    "solver": {"method": "series"},
    "time": {"stop": "600 s", "step": "10 s", "output_every": "60 s"},
}


build = build_model


@pytest.mark.parametrize("scenario", [SLAB, SPHERE_SERIES], ids=["slab", "sphere"])
def test_the_unbroken_model_passes(scenario: dict[str, Any]) -> None:
    ds = run(build(FickDiffusion, scenario))
    assert ds.attrs["audit_status"] == "passed"


class LeakyStencil(FickDiffusion):
    """The wall at x- is closed in the ledger but the stencil lets the solute out there (a
    ghost cell held at zero instead of mirrored)."""

    def _problem(self) -> Any:
        problem = super()._problem()
        boundaries = dict(problem.boundaries)
        boundaries["x-"] = BoundaryCondition("x-", "absorbing")
        return dataclasses.replace(problem, boundaries=boundaries)

    def _finite_volume(self, progress: Any) -> Any:
        times, states, ledger = super()._finite_volume(progress)
        ledger.outflow.pop("x-", None)  # the model believes x- is closed
        return times, states, ledger


def test_a_leaky_boundary_stencil_is_caught_by_mass_balance() -> None:
    assert failed_audits(LeakyStencil, SLAB) == ["mass_balance[solute]"]


class UnderReportedOutflow(FickDiffusion):
    """Books only half of what leaves through the Robin face."""

    def _finite_volume(self, progress: Any) -> Any:
        times, states, ledger = super()._finite_volume(progress)
        ledger.outflow["x+"] = 0.5 * ledger.outflow["x+"]
        return times, states, ledger


def test_under_reported_outflow_is_caught_by_mass_balance() -> None:
    assert failed_audits(UnderReportedOutflow, SLAB) == ["mass_balance[solute]"]


class MicromolesAsMoles(FickDiffusion):
    """Places the initial amount as if µmol/cm² were mol/m² (a factor 100 off: 1 µmol/cm² is
    0.01 mol/m²) — the classic unit-conversion slip."""

    def _finite_volume(self, progress: Any) -> Any:
        from medtransport_diffusion import initial as ic

        original = ic.place

        def slipped(initial: Any, grid: Any, field_units: str, path: str = "") -> Any:
            return original(initial, grid, field_units) * 100.0

        ic_place, ic.place = ic.place, slipped
        import medtransport_diffusion.model as m

        m_place, m.place = m.place, slipped
        try:
            return super()._finite_volume(progress)
        finally:
            ic.place, m.place = ic_place, m_place


def test_an_initial_amount_off_by_a_unit_conversion_is_caught_by_normalization() -> None:
    failed = failed_audits(MicromolesAsMoles, SLAB)
    assert "normalization[solute]" in failed
    with pytest.raises(AuditFailure, match=r"ratio 100"):
        run(build(MicromolesAsMoles, SLAB))


def test_an_unstable_step_is_refused_before_running() -> None:
    scenario = {**SLAB, "solver": {"method": "ftcs"},
                "time": {"stop": "120 s", "step": "1 s"}}
    with pytest.raises(AuditFailure) as info:
        run(build(FickDiffusion, scenario))
    report = info.value.report
    assert [r.name for r in report.failures] == ["stability[ftcs]"]
    assert all(r.stage == "pre" for r in report.results)  # nothing ran
    # r = D·Δt/Δx² = 1e-9·1/(2e-5)² = 2.5; the largest stable step is Δx²/(2D·(1 + …)).
    assert report.failures[0].measured > 0.5
    assert "time step of at most" in str(info.value)


class SilentlyUnstable(FickDiffusion):
    """Declares no stability margin, as a careless plugin might: the numerics still refuse."""

    def stability(self) -> list[Any]:
        return []


def test_an_undeclared_unstable_step_is_still_refused_by_the_numerics() -> None:
    scenario = {**SLAB, "solver": {"method": "ftcs"}}
    with pytest.raises(UnstableStepError, match="largest stable"):
        run(build(SilentlyUnstable, scenario))


class OscillatingStates(FickDiffusion):
    """Returns the sawtooth an unstable explicit scheme produces, with a ledger that still
    balances (the oscillation adds and removes equal amounts)."""

    def _finite_volume(self, progress: Any) -> Any:
        times, states, ledger = super()._finite_volume(progress)
        saw = np.where(np.arange(states.shape[-1]) % 2 == 0, 1.0, -1.0)
        states = states + 5.0 * states.max() * saw * (np.arange(len(times)) > 0)[:, None]
        return times, states, ledger


def test_an_oscillating_unstable_solution_is_caught_by_nonnegativity() -> None:
    assert failed_audits(OscillatingStates, SLAB) == ["nonnegativity[concentration]"]


class BlowsUp(FickDiffusion):
    def _finite_volume(self, progress: Any) -> Any:
        times, states, ledger = super()._finite_volume(progress)
        states = states.copy()
        states[-1, 3] = np.inf
        return times, states, ledger


def test_a_non_finite_state_is_caught_by_finiteness() -> None:
    failed = failed_audits(BlowsUp, SLAB)
    assert "finiteness" in failed
    with pytest.raises(AuditFailure) as info:
        run(build(BlowsUp, SLAB))
    where = next(r.where for r in info.value.report.failures if r.name == "finiteness")
    assert where == {"variable": "concentration", "time_s": 120.0}


class NoUnits(FickDiffusion):
    def simulate(self, progress: Any = None) -> Any:
        traj = super().simulate(progress)
        del traj.states["concentration"].attrs["units"]
        return traj


def test_a_state_without_units_is_caught() -> None:
    failed = failed_audits(NoUnits, SLAB)
    assert "units" in failed


class TruncatedSeries(FickDiffusion):
    """Keeps only the first two terms of Crank's sphere series, and says so."""

    def truncations(self) -> list[Any]:
        times = self.scenario.time.output_times()
        return [series.sphere_truncation(times, 1e-9, 1e-3, self.tolerance.rtol, n_terms=2)]

    def _series(self) -> Any:
        from medtransport_diffusion import series_solution

        return series_solution.simulate(self, n_terms=2)


def test_a_truncated_series_is_refused_by_the_truncation_audit() -> None:
    scenario = {**SPHERE_SERIES, "time": {"stop": "600 s", "step": "1 s",
                                          "output_every": "1 s"}}
    assert failed_audits(TruncatedSeries, scenario) == ["truncation[0]"]


class WrongNormalizationSeries(FickDiffusion):
    """A slab series summed over every n (the sphere's 1/n²) instead of the odd ones: its t = 0
    normalization sum overshoots π²/8."""

    def truncations(self) -> list[Any]:
        good = super().truncations()[0]
        wrong = float(np.sum(1.0 / np.arange(1, good.n_terms + 1) ** 2))
        return [dataclasses.replace(good, sum_at_t0=wrong)]


def test_a_series_with_the_wrong_normalization_sum_is_caught() -> None:
    scenario = {**SPHERE_SERIES, "domain": {"shape": "box", "size": ["1 mm"], "cells": [20]},
                "boundaries": {"x-": {"kind": "absorbing"}, "x+": {"kind": "absorbing"}},
                "parameters": {"diffusivity": "1e-9 m^2/s",
                               "initial": {"kind": "uniform", "amount": "1 nmol/cm^2"}}}
    assert run(build(FickDiffusion, scenario)).attrs["audit_status"] == "passed"
    with pytest.raises(AuditFailure, match=r"exceeds its closed form"):
        run(build(WrongNormalizationSeries, scenario))


class CountingWalkerLoss(FickDiffusion):
    """Loses walkers that hit a reflecting wall instead of reflecting them, without booking
    them (the silent walker loss peers are known for)."""

    def _walkers(self, progress: Any) -> Any:
        times, states, ledger, extra = super()._walkers(progress)
        states = states.copy()
        states[1:, 0] = 0.0  # walkers in the wall cell vanish
        return times, states, ledger, extra


def test_silently_lost_walkers_are_caught_by_mass_balance() -> None:
    scenario = {**SLAB, "boundaries": {}, "solver": {"method": "lattice_walk", "walkers": 5000},
                "time": {"stop": "60 s", "step": "0.1 s", "output_every": "10 s"}, "seed": 3}
    assert run(build(FickDiffusion, scenario)).attrs["audit_status"] == "passed"
    assert failed_audits(CountingWalkerLoss, scenario) == ["mass_balance[solute]"]


class WrongLedgerUnit(FickDiffusion):
    """Keeps its books in mol while a 1-D slab's states integrate to mol/m² — a dimension
    slip the framework must refuse rather than convert."""

    def _finite_volume(self, progress: Any) -> Any:
        times, states, ledger = super()._finite_volume(progress)
        ledger.units = "mol"
        return times, states, ledger


def test_books_in_the_wrong_dimension_are_refused() -> None:
    with pytest.raises(AuditFailure) as info:
        run(build(WrongLedgerUnit, SLAB))
    failed = {r.name: r.detail for r in info.value.report.failures}
    assert set(failed) == {"normalization[solute]", "mass_balance[solute]"}
    assert "cannot recompute the stored amount" in failed["mass_balance[solute]"]
