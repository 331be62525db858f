"""Formal UKM through a scenario: ``next_pre_urea`` with ``pre_urea`` and ``post_urea`` makes
the urea model solve its urea space and generation, run the week they imply, and audit that
the run gives the measurements back."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

import medtransport as mt
from medtransport.errors import ScenarioError
from medtransport.plugins import get_registry
from medtransport.testing import failed_audits

SINGLE = "dialysis.urea_single_pool"


def _known(**params: Any) -> dict[str, Any]:
    """A patient with a known urea space and generation, from Monday 8 h."""
    return {"name": "known patient", "model": SINGLE,
            "parameters": {"pre_urea": "70 mg/dL", "water_volume": "41 L",
                           "generation": "7.5 mg/min", "fluid_intake": "1.4 L/day",
                           "residual_clearance": "1.5 mL/min", "urine_output": "0.4 L/day",
                           "dialyser": {"koa": "1000 mL/min", "blood_flow": "300 mL/min",
                                        "dialysate_flow": "500 mL/min"}, **params},
            "events": [{"type": "session", "days": ["Mon", "Wed", "Fri"], "at": "8 h",
                        "duration": "4 h", "ultrafiltration": "2.5 L"}],
            "time": {"start": "8 h", "stop": "168 h", "step": "30 min"}}


def _measured_from(ds: Any, unit: str = "mmol/L") -> dict[str, Any]:
    sc = _known()
    p = sc["parameters"]
    for name in ("water_volume", "generation"):
        del p[name]
    factor = 1.0 if unit == "mmol/L" else 2.80134  # mmol/L urea → mg/dL urea nitrogen
    p["pre_urea"] = f"{float(ds['pre_urea'][0]) * factor!r} {unit}"
    p["post_urea"] = f"{float(ds['post_urea'][0]) * factor!r} {unit}"
    p["next_pre_urea"] = f"{float(ds['pre_urea'][1]) * factor!r} {unit}"
    return sc


@pytest.fixture(scope="module")
def known() -> Any:
    return mt.run(_known())


@pytest.mark.parametrize("unit", ["mmol/L", "mg/dL"])
def test_the_measurements_of_a_known_patient_give_back_its_volume_and_generation(
        known: Any, unit: str) -> None:
    solved = mt.run(_measured_from(known, unit))
    assert solved.attrs["audit_status"] == "passed"
    v0 = float(solved["water_volume"].sum("compartment")[0])
    assert v0 == pytest.approx(41.0, rel=1e-6)
    g_mg_min = float(solved["ukm_generation"]) * 28.0134 / 60.0
    assert g_mg_min == pytest.approx(7.5, rel=1e-6)
    # the whole week follows: the same saw-tooth as the patient's own
    np.testing.assert_allclose(solved["concentration"], known["concentration"], rtol=1e-6)
    assert float(solved["ukm_sp_ktv"]) == pytest.approx(float(known["sp_ktv"][0]), rel=1e-6)


def test_a_population_solves_each_patient_with_its_own_dialyser_clearance(known: Any) -> None:
    sc = _measured_from(known)
    sc["population"] = {"size": 12, "variability": {"koa": 0.3, "blood_flow": 0.1}}
    sc["seed"] = 3
    pop = mt.run(sc)
    assert pop.attrs["audit_status"] == "passed"
    k = pop["dialyser_clearance"].isel(session=0).values
    v = pop["ukm_volume"].values
    # a more efficient dialyser reaching the same measured fall means a larger urea space
    assert np.all(np.diff(v[np.argsort(k)]) > 0)
    np.testing.assert_allclose(pop["predicted_over_measured_next_pre"], 1.0, atol=1e-9)


def test_a_solver_that_forgets_the_intake_during_the_session_is_caught(known: Any) -> None:
    """The mutant solves V and G with the gross ultrafiltration (the session's net fluid
    removal taken as the ultrafiltration itself): the run then misses the measured urea."""
    base = get_registry().model_class(SINGLE)

    class GrossFluid(base):  # type: ignore[misc, valid-type]
        def _solve_measured(self) -> None:
            saved = self.intake
            self.intake = self.urine.copy()
            try:
                super()._solve_measured()
            finally:
                self.intake = saved

    names = failed_audits(GrossFluid, _measured_from(known))
    assert "measured_urea[post-dialysis]" in names or \
        "measured_urea[next pre-dialysis]" in names


@pytest.mark.parametrize(("change", "field"), [
    (lambda p: p.update(post_urea="80 mg/dL"), "parameters.post_urea"),
    (lambda p: p.update(next_pre_urea="5 mg/dL"), "parameters.next_pre_urea"),
    (lambda p: p.pop("post_urea"), "parameters.post_urea"),
    (lambda p: p.update(water_volume="40 L"), "parameters.water_volume"),
    (lambda p: p.update(npcr="1 g/kg/day"), "parameters.npcr"),
    # a fall of 70 → 20 mg/dL is beyond 0.2 mL/min of clearance for any urea space ≥ 1 L
    (lambda p: p.update(dialyser={"koa": "1000 mL/min", "blood_flow": "300 mL/min",
                                  "dialysate_flow": "500 mL/min"}, post_urea="0.5 mg/dL"),
     "parameters.post_urea"),
])
def test_impossible_measurements_are_refused_naming_the_field(known: Any, change: Any,
                                                              field: str) -> None:
    sc = copy.deepcopy(_measured_from(known, "mg/dL"))
    sc["parameters"]["pre_urea"] = "70 mg/dL"
    sc["parameters"]["post_urea"] = "20 mg/dL"
    sc["parameters"]["next_pre_urea"] = "58 mg/dL"
    change(sc["parameters"])
    with pytest.raises(ScenarioError) as err:
        mt.run(sc)
    paths = [p for p, _ in err.value.problems]
    assert any(p == field or p.startswith(field + ".") for p in paths), paths


def test_the_next_pre_dialysis_sample_needs_a_second_session(known: Any) -> None:
    sc = _measured_from(known)
    sc["time"]["stop"] = "40 h"
    with pytest.raises(ScenarioError) as err:
        mt.run(sc)
    assert err.value.problems[0][0] == "parameters.next_pre_urea"


def test_two_pools_and_varying_volumes_are_refused(known: Any) -> None:
    sc = _measured_from(known)
    sc["model"] = "dialysis.urea_two_pool"
    with pytest.raises(ScenarioError) as err:
        mt.run(sc)
    assert err.value.problems[0][0] == "parameters.next_pre_urea"
    sc = _measured_from(known)
    sc["population"] = {"size": 4, "variability": {"water_volume": 0.1}}
    sc["seed"] = 1
    with pytest.raises(ScenarioError) as err:
        mt.run(sc)
    assert err.value.problems[0][0] == "population.variability.water_volume"


def test_the_cli_refuses_with_exit_2_naming_the_field(tmp_path: Any, known: Any) -> None:
    from click.testing import CliRunner

    from medtransport.cli import main

    sc = _measured_from(known, "mg/dL")
    sc["parameters"]["next_pre_urea"] = "5 mg/dL"
    path = tmp_path / "s.yaml"
    import yaml

    path.write_text(yaml.safe_dump(sc))
    res = CliRunner().invoke(main, ["run", str(path), "-o", str(tmp_path / "o.nc")])
    assert res.exit_code == 2, res.output
    assert "next_pre_urea" in res.output and "Traceback" not in res.output
