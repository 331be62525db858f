"""Every SDE audit catches a deliberately broken model (a mutant), and passes the sound one.

- mean-square stability: a step beyond h* is refused before the first step, with h* in the
  message — and forcing that step through shows the blow-up the refusal prevents;
- state space: Euler–Maruyama on CIR with no fix returns negative concentrations; ``bounds:
  refuse`` refuses before running;
- probability ledger: a model that loses track of absorbed paths, and one whose density does
  not integrate to the survivors; paths beyond the histogram booked as an outflow (it goes
  down: caught as an irreversible flow running backwards) or left out of the store;
- moments: a model whose simulation uses twice the declared reversion rate;
- Fokker–Planck: a particle simulated with noise √D instead of √(2D) (a factor-2 slip);
- path conservation (PK): eliminated amounts booked from the deterministic flux only.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sde_mutants import half_noise

import medtransport
from medtransport.errors import AuditFailure, ScenarioError
from medtransport.numerics import sde as engine
from medtransport.plugins import get_registry
from medtransport.testing import build_model, failed_audits


def cls_of(model_id: str) -> Any:
    return get_registry().model_class(model_id)


def example(model_id: str, i: int = 0, **changes: Any) -> dict[str, Any]:
    sc = copy.deepcopy(cls_of(model_id).example_scenarios()[i])
    for key, value in changes.items():
        sc[key] = {**sc.get(key, {}), **value} if isinstance(value, dict) else value
    return sc


def report(ds: Any) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in json.loads(ds.attrs["audit_report"])["results"]}


# ----------------------------------------------------------------------------- MS stability

def gbm_scenario(step: str) -> dict[str, Any]:
    return {"name": "unstable EM", "model": "sde.geometric_brownian",
            "parameters": {"initial": "1 mg/L", "growth_rate": "-3 1/h",
                           "volatility": "2 1/h**0.5"},
            "solver": {"method": "euler_maruyama", "paths": 2000},
            "time": {"stop": "10 h", "step": step, "output_every": "1 h"}, "seed": 1}


def test_a_step_beyond_the_mean_square_limit_is_refused_before_the_first_step() -> None:
    # λ = −3/h, μ² = 4/h: the SDE is stable (2λ + μ² < 0), EM only for h < 2/9 h = 800 s
    with pytest.raises(AuditFailure, match="refused before running") as refused:
        medtransport.run(gbm_scenario("0.25 h"))
    (margin,) = refused.value.report.failures
    assert margin.name == "stability[mean_square[euler_maruyama]]"
    assert "800 s" in margin.detail and margin.measured == pytest.approx(
        (1 - 0.75) ** 2 + 0.25 * 4, rel=1e-9)
    # (at 0.2 h EM is stable but its weak error fails the moments audit: a finer step)
    ok = medtransport.run(gbm_scenario("0.01 h"))
    margin_ok = report(ok)["stability[mean_square[euler_maruyama]]"]
    assert margin_ok["passed"] and "margin" in margin_ok["detail"]


def test_the_refused_step_really_blows_up_in_mean_square() -> None:
    """What the refusal prevents: at h = 0.25 h (R = 1.0625) the sample second moment grows
    (R¹⁰ = 1.8 over ten steps), while at 0.2 h (R = 0.96) it decays — though the process itself
    decays. (Over many steps the growth hides in ever rarer paths: ten is what a sample shows.)"""
    sde = engine.AffineSDE.scalar(0.0, -3.0, c2=4.0)
    for h, grows in ((0.25, True), (0.2, False)):
        x = engine.simulate(sde, [1.0], h, 10, [10], n_paths=200_000, seed=2).values[0, :, 0]
        assert (np.mean(x * x) > 1.0) == grows


# ----------------------------------------------------------------------------- state space

def cir_hard() -> dict[str, Any]:
    """CIR with Feller violated (2κθ/σ² = 0.4): zero is hit often."""
    return {"name": "CIR near zero", "model": "sde.cox_ingersoll_ross",
            "parameters": {"initial": "0.05 mg/L", "reversion_rate": "1 1/h",
                           "long_term_mean": "0.05 mg/L", "volatility": "0.5 (mg/L)**0.5/h**0.5"},
            "solver": {"method": "euler_maruyama", "paths": 2000},
            "time": {"stop": "2 h", "step": "0.01 h", "output_every": "0.5 h"}, "seed": 4}


def test_euler_on_cir_without_a_fix_is_caught_by_the_state_space_audit() -> None:
    cls = cls_of("sde.cox_ingersoll_ross")

    class NoFix(cls):  # type: ignore[misc, valid-type]
        @property
        def bounds_fix(self) -> str:
            return "none"

    names = failed_audits(NoFix, cir_hard())
    assert "state_space" in names
    ds = medtransport.run(cir_hard())  # the sound model truncates and reports the count
    r = report(ds)
    assert r["state_space"]["passed"] and "full truncation" in r["state_space"]["detail"]
    assert int(r["state_space"]["detail"].split(" of ")[0].split()[-1]) > 0
    assert r["feller"]["passed"] and "does not hold" in r["feller"]["detail"]
    assert r["feller"]["measured"] == pytest.approx(0.4)


def test_bounds_refuse_refuses_a_scheme_that_can_leave_the_state_space() -> None:
    sc = cir_hard()
    sc["solver"]["bounds"] = "refuse"
    with pytest.raises(AuditFailure, match=r"refused before running.*state_space"):
        medtransport.run(sc)
    sc["solver"] = {"method": "exact", "paths": 2000, "bounds": "refuse"}
    assert medtransport.run(sc).attrs["audit_status"] == "passed"


def test_jacobi_has_no_exact_transition_and_says_so_naming_the_field() -> None:
    sc = example("sde.jacobi_mixing", solver={"method": "exact"})
    with pytest.raises(ScenarioError, match=r"solver\.method"):
        medtransport.run(sc)


# ----------------------------------------------------------------------------- ledger

def test_a_model_that_loses_absorbed_paths_is_caught_by_the_probability_ledger() -> None:
    cls = cls_of("sde.drifted_brownian")

    class Forgetful(cls):  # type: ignore[misc, valid-type]
        def simulate(self, progress: Any = None) -> Any:
            traj = super().simulate(progress)
            res = traj.notes["result"]
            face = res.absorbed_face.copy()
            face[np.flatnonzero(face >= 0)[:5]] = -1  # five absorbed paths forgotten
            traj.notes["result"] = engine.SDEResult(**{**res.__dict__, "absorbed_face": face})
            return traj

    sc = example("sde.drifted_brownian", 1)
    assert "probability_ledger" in failed_audits(Forgetful, sc)
    assert report(medtransport.run(sc))["probability_ledger"]["passed"]


def test_a_density_that_does_not_integrate_to_the_survivors_is_caught() -> None:
    cls = cls_of("sde.ornstein_uhlenbeck")

    class Unnormalised(cls):  # type: ignore[misc, valid-type]
        def simulate(self, progress: Any = None) -> Any:
            traj = super().simulate(progress)
            ds = traj.states
            # the density doubled, the paths beyond the histogram left as they were
            ds["density"] = ds["density"] * 2.0
            ds["density"].attrs.update(traj.states["density"].attrs)
            return traj

    names = failed_audits(Unnormalised, example("sde.ornstein_uhlenbeck"))
    assert "density_normalization" in names


GBM_EXAMPLE = Path(__file__).parents[3] / "examples" / "scenarios" / "sde_gbm_tumour_cells.yaml"


def old_booking(model_id: str) -> Any:
    """The model as it was: paths beyond the histogram booked as an outflow, not stored."""
    cls = cls_of(model_id)

    class OldBooking(cls):  # type: ignore[misc, valid-type]
        conserved = tuple(dataclasses.replace(sp, outside=None) for sp in cls.conserved)

        def simulate(self, progress: Any = None) -> Any:
            traj = super().simulate(progress)
            traj.ledgers["probability"].outflow["beyond the histogram's cells"] = \
                traj.states["beyond_histogram"].values.copy()
            return traj

    return OldBooking


def test_paths_beyond_the_histogram_are_stored_and_every_outflow_only_grows() -> None:
    # GBM's log-normal tail crosses the histogram's upper edge and comes back: a current
    # fraction, so booked as an outflow its "cumulative" curve went down
    ds = medtransport.run(str(GBM_EXAMPLE))
    beyond = ds["beyond_histogram"].values
    assert np.any(np.diff(beyond) < 0), "the example no longer shows paths coming back"
    # no walls: every path survives, so the stored probability (∫ density + beyond) is 1 at
    # every time, the density alone less where paths are beyond its cells
    np.testing.assert_allclose(ds["probability_stored"].values, 1.0, rtol=1e-12)
    assert np.max(beyond) > 0
    assert report(ds)["irreversible_flows"]["passed"]
    assert "irreversible_flows" in failed_audits(old_booking("sde.geometric_brownian"),
                                                 str(GBM_EXAMPLE))


def test_paths_beyond_the_histogram_left_out_of_the_store_break_the_mass_balance() -> None:
    cls = cls_of("sde.geometric_brownian")

    class Forgets(cls):  # type: ignore[misc, valid-type]
        conserved = tuple(dataclasses.replace(sp, outside=None) for sp in cls.conserved)

    assert "mass_balance[probability]" in failed_audits(Forgets, str(GBM_EXAMPLE))


def test_absorbed_fractions_only_grow_at_walls() -> None:
    ds = medtransport.run(example("sde.drifted_brownian", 1))
    absorbed = [v for v in ds.data_vars if str(v).startswith("absorbed_")]
    assert absorbed and all(np.all(np.diff(ds[v].values) >= 0) for v in absorbed)
    assert report(ds)["irreversible_flows"]["passed"]


# ----------------------------------------------------------------------------- moments

def test_a_simulation_with_the_wrong_reversion_rate_is_caught_by_the_moments_audit() -> None:
    cls = cls_of("sde.ornstein_uhlenbeck")

    class TwiceAsFast(cls):  # type: ignore[misc, valid-type]
        def simulate(self, progress: Any = None) -> Any:
            declared = self.sde
            fast = declared()
            self.sde = lambda: engine.AffineSDE.scalar(  # type: ignore[method-assign]
                2 * float(fast.drift_constant[0]), 2 * float(fast.drift_matrix[0, 0]),
                c0=float(fast.noise[0, 0]))
            try:
                return super().simulate(progress)
            finally:
                self.sde = declared  # type: ignore[method-assign]

    names = failed_audits(TwiceAsFast, example("sde.ornstein_uhlenbeck"))
    assert "moments[mean]" in names


# ----------------------------------------------------------------------------- Fokker–Planck

def test_a_particle_with_half_the_noise_variance_is_caught_by_the_fokker_planck_test() -> None:
    cls = cls_of("sde.drifted_brownian")

    narrow = half_noise(cls)

    for i in (0, 1):  # free, and between a reflecting wall and a sink
        sc = example("sde.drifted_brownian", i)
        assert "fokker_planck" in failed_audits(narrow, sc)
        fp = report(medtransport.run(sc))["fokker_planck"]
        assert fp["passed"] and "level 0.001" in fp["detail"]


# ----------------------------------------------------------------------------- PK books

def test_pk_books_balance_per_path_and_a_deterministic_elimination_booking_is_caught() -> None:
    cls = cls_of("sde.one_compartment_pk")

    class DeterministicBooking(cls):  # type: ignore[misc, valid-type]
        """Books E from the mean flux k·A·dt only, ignoring the noise on the flux."""

        def simulate(self, progress: Any = None) -> Any:
            traj = super().simulate(progress)
            res = traj.notes["result"]
            dose = float(self.params.dose.m_as("mg"))
            k = -float(self.sde().drift_matrix[0, 0])
            e = dose * -np.expm1(-k * res.times)[:, None, None] * np.ones_like(res.decrease)
            traj.notes["result"] = engine.SDEResult(**{**res.__dict__, "decrease": e})
            return traj

    for i in (0, 1):
        sc = example("sde.one_compartment_pk", i)
        assert "path_conservation" in failed_audits(DeterministicBooking, sc)
        r = report(medtransport.run(sc))
        assert r["path_conservation"]["passed"] and r["path_conservation"]["measured"] < 1e-9


def test_pk_euler_maruyama_step_beyond_the_limit_is_refused() -> None:
    sc = example("sde.one_compartment_pk", 1)
    # k = CL/V = 0.125/h, σ² = 0.2/h: the SDE is stable (2λ + μ² = −0.05/h), EM only below
    # h* = 0.05/0.125² = 3.2 h
    sc["parameters"] = {**sc["parameters"], "system_noise": "0.4472136 1/h**0.5"}
    sc["time"] = {"stop": "24 h", "step": "4 h", "output_every": "4 h"}
    with pytest.raises(AuditFailure, match="mean_square"):
        medtransport.run(sc)


def test_histogram_and_wall_inputs_are_checked_naming_the_field() -> None:
    cls = cls_of("sde.drifted_brownian")
    with pytest.raises(ScenarioError, match=r"parameters\.histogram"):
        cls.validate_params({"initial": "0 um", "velocity": "1 um/s", "diffusivity": "1 um^2/s",
                             "histogram": {"lower": "0 s", "upper": "1 s"}})
    sc = example("sde.ornstein_uhlenbeck", solver={"paths": 1})
    with pytest.raises(ScenarioError, match=r"solver\.paths"):
        build_model(cls_of("sde.ornstein_uhlenbeck"), sc)


def test_paths_that_would_not_fit_in_memory_are_refused_before_allocating() -> None:
    for model_id in ("sde.ornstein_uhlenbeck", "sde.one_compartment_pk"):
        sc = example(model_id, solver={"paths": 20_000_000})
        if model_id != "sde.one_compartment_pk":  # stored paths asked for (auto: in the kernel)
            sc["solver"]["statistics"] = "paths"
        sc["time"] = {**sc["time"], "output_every": sc["time"]["step"]}
        with pytest.raises(ScenarioError, match=r"solver\.paths.*GiB"):
            build_model(cls_of(model_id), sc)
