"""The urea models end to end: the books, the mutants the audits catch, the sessions, bad
input."""

from __future__ import annotations

import copy
import re
from typing import Any

import numpy as np
import pytest

import medtransport as mt
from medtransport.errors import ScenarioError
from medtransport.plugins import get_registry
from medtransport.testing import failed_audits
from medtransport_dialysis.urea import urea_mmol_per_l

SINGLE = "dialysis.urea_single_pool"
TWO = "dialysis.urea_two_pool"


def _week(model: str = SINGLE, **params: Any) -> dict[str, Any]:
    return {"name": "a thrice-weekly week", "model": model,
            "parameters": {"pre_urea": "70 mg/dL", "water_volume": "40 L",
                           "generation": "8 mg/min", "fluid_intake": "1.2 L/day",
                           "residual_clearance": "2 mL/min", "urine_output": "0.3 L/day",
                           "dialyser": {"koa": "1000 mL/min", "blood_flow": "300 mL/min",
                                        "dialysate_flow": "500 mL/min"}, **params},
            "events": [{"type": "session", "days": ["Mon", "Wed", "Fri"], "at": "8 h",
                        "duration": "4 h", "ultrafiltration": "2.5 L"}],
            "time": {"stop": "168 h", "step": "30 min"}}


@pytest.fixture(scope="module")
def week() -> Any:
    return mt.run(_week())


def test_the_urea_and_water_books_close_every_output(week: Any) -> None:
    ds = week
    scale = float(ds["urea_amount"].sum("compartment").max())
    assert float(np.abs(ds["urea_residual"]).max()) < 1e-10 * scale
    assert float(np.abs(ds["water_residual"]).max()) < 1e-12 * 45
    # the books name the routes: what the dialyser took, the kidney took, the body made
    stored = ds["urea_amount"].sum("compartment")
    books = (ds["urea_amount"].sum("compartment")[0] + ds["urea_generated"]
             - ds["dialysate_removed"] - ds["renal_removed"])
    np.testing.assert_allclose(stored, books, rtol=1e-11)


def test_normalization_is_measured_urea_times_modelled_volume(week: Any) -> None:
    # 70 mg/dL urea nitrogen = 24.99 mmol/L urea, in 40 L
    c = urea_mmol_per_l(mt.units.Q_(70, "mg/dL"))
    assert c == pytest.approx(70 * 10 / 28.0134)
    assert float(week["urea_amount"].sum("compartment")[0]) == pytest.approx(c * 40.0)
    assert float(week["urea_nitrogen"][0]) == pytest.approx(70.0)


def test_each_session_is_reported_and_the_volume_saw_tooth_follows_the_fluid(week: Any) -> None:
    ds = week
    assert ds.sizes["session"] == 3
    assert np.all(ds["post_urea"] < ds["pre_urea"])
    np.testing.assert_allclose(ds["urr"], 1 - ds["post_urea"] / ds["pre_urea"])
    v = ds["water_volume"].sum("compartment")
    t = ds["time"].values / 3600
    # 4 h into Monday's session 2.5 L are off, less the 4 h of net intake
    at = int(np.searchsorted(t, 12.0))
    assert float(v[at]) == pytest.approx(40 + 0.9 / 24 * 12 - 2.5, rel=1e-12)
    assert set(np.unique(ds["kdoqi_adequate"])) <= {0, 1}


def test_two_pool_rebounds_and_equilibrated_ktv_is_lower() -> None:
    ds = mt.run(_week(TWO))
    assert np.all(ds["rebound"] > 0.05) and np.all(ds["rebound"] < 0.3)
    assert np.all(ds["e_ktv"] < ds["sp_ktv"])
    assert float(np.abs(ds["urea_residual"]).max()) < 1e-9 * float(
        ds["urea_amount"].sum("compartment").max())


def test_the_two_single_pool_solvers_give_the_same_week() -> None:
    a = mt.run(_week())
    sc = _week()
    sc["solver"] = {"method": "matrix_exponential"}
    b = mt.run(sc)
    np.testing.assert_allclose(a["concentration"], b["concentration"], rtol=1e-10)
    np.testing.assert_allclose(a["sp_ktv"], b["sp_ktv"], rtol=1e-9)


def test_an_under_dialysed_patient_is_flagged() -> None:
    sc = _week(water_volume="48 L",
               dialyser={"koa": "600 mL/min", "blood_flow": "250 mL/min",
                         "dialysate_flow": "500 mL/min", "recirculation": 0.15})
    sc["events"][0]["duration"] = "3 h"
    ds = mt.run(sc)
    assert np.all(ds["sp_ktv"] < 1.2) and np.all(ds["kdoqi_adequate"] == 0)
    np.testing.assert_array_equal(ds["urr_adequate"], (ds["urr"] >= 0.65).astype(int))


# ----------------------------------------------------------------------------- mutants

def _cls(model_id: str = SINGLE) -> Any:
    return get_registry().model_class(model_id)


@pytest.mark.parametrize("model_id", [SINGLE, TWO])
def test_a_dialyser_that_removes_urea_without_booking_it_is_caught(model_id: str) -> None:
    """The states lose what the whole dialyser cleared; the books record only its diffusive
    part (the convective part of an HDF session is 'forgotten')."""
    base = _cls(model_id)

    class Unbooked(base):  # type: ignore[misc, valid-type]
        def _dialysate_booked(self, course: Any) -> np.ndarray:
            share = self.k_diffusive.mean() / self.k_total.mean()
            return super()._dialysate_booked(course) * share

    sc = _week(model_id)
    sc["events"][0]["substitution"] = "18 L"
    assert mt.run(sc).attrs["audit_status"] == "passed"
    assert "mass_balance[urea]" in failed_audits(Unbooked, sc)


@pytest.mark.parametrize("model_id", [SINGLE, TWO])
def test_a_volume_change_that_creates_urea_is_caught(model_id: str) -> None:
    """Concentrations followed at fixed volume, amounts rebuilt from the changing volume: the
    interdialytic weight gain then makes urea out of water."""
    base = _cls(model_id)

    class Diluting(base):  # type: ignore[misc, valid-type]
        def _amounts(self, course: Any) -> np.ndarray:
            v = course.part("volume")
            return super()._amounts(course) * (v / v[:1])[..., None]

    names = failed_audits(Diluting, _week(model_id))
    assert "mass_balance[urea]" in names and "mass_balance[water]" not in names


def test_bun_read_as_urea_is_caught_by_the_normalization() -> None:
    base = _cls()

    class Slip(base):  # type: ignore[misc, valid-type]
        def _initial_concentration(self) -> float:
            return urea_mmol_per_l(self.params.pre_urea, "urea")  # mg/dL BUN read as urea

    names = failed_audits(Slip, _week())
    assert "normalization[urea]" in names
    with pytest.raises(mt.AuditFailure) as failure:
        mt.run(mt.runner.prepare(_week(), model_class=Slip))
    # urea nitrogen 28.01 g/mol read as urea 60.06 g/mol: the body holds 0.466 of its content
    found = re.search(r"declared ([\d.]+) mmol, represented at t0 ([\d.]+) mmol",
                      str(failure.value))
    assert found is not None
    assert float(found[2]) / float(found[1]) == pytest.approx(28.0134 / 60.0553, rel=1e-3)


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize(("change", "field"), [
    (lambda s: s["events"][0].update(days=["Mon", "Funday"]), "events.0.days"),
    (lambda s: s["events"][0].pop("duration"), "events.0.duration"),
    (lambda s: s["events"][0].update(duration="2 L"), "events.0.duration"),
    (lambda s: s["events"][0].update(ultrafiltration="30 L"), "events.0.ultrafiltration"),
    (lambda s: s["events"][0].update(needle="15 G"), "events.0.needle"),
    (lambda s: s["events"].append({"type": "session", "at": "9 h", "duration": "4 h"}),
     "events.1"),
    (lambda s: s["parameters"].pop("water_volume"), "parameters.water_volume"),
    # 5 L in 6 min is a filtration flow above the blood flow
    (lambda s: s["events"][0].update(ultrafiltration="5 L", duration="0.1 h"), "events.0"),
])
def test_bad_sessions_name_the_field(change: Any, field: str) -> None:
    sc = copy.deepcopy(_week())
    change(sc)
    with pytest.raises(ScenarioError) as err:
        mt.run(sc)
    paths = [p for p, _ in err.value.problems]
    assert any(p == field or p.startswith(field + ".") for p in paths), paths


def test_generation_and_npcr_are_exclusive() -> None:
    with pytest.raises(ScenarioError, match="exactly one of 'generation' and 'npcr'"):
        mt.run(_week(npcr="1.1 g/kg/day"))


def test_watson_volume_from_the_patient() -> None:
    sc = _week()
    del sc["parameters"]["water_volume"]
    sc["patient"] = {"weight": "70 kg", "height": "175 cm", "age": "40 year", "sex": "male"}
    ds = mt.run(sc)
    assert float(ds["water_volume"].sum("compartment")[0]) == pytest.approx(
        2.447 - 0.09516 * 40 + 0.1074 * 175 + 0.3362 * 70)


def test_a_population_is_batched_and_each_patient_is_the_single_patient_run() -> None:
    sc = _week()
    sc["population"] = {"size": 40, "variability": {"water_volume": 0.15, "generation": 0.25,
                                                    "residual_clearance": 0.5, "koa": 0.2}}
    sc["seed"] = 7
    pop = mt.run(sc)
    assert pop.sizes["patient"] == 40 and pop["urea_residual"].dims == ("time", "patient")
    assert float(np.abs(pop["urea_residual"]).max()) < 1e-9 * float(
        pop["urea_amount"].max() * 2)
    for j in (0, 17, 39):
        p = pop.isel(patient=j)
        one = _week(water_volume=f"{float(p['water_volume'][0].sum())!r} L",
                    generation=f"{float(p['generation'])!r} mmol/h",
                    residual_clearance=f"{float(p['residual_clearance'])!r} mL/min")
        # the patient's own dialyser clearance, given as the measured session clearance
        assert np.ptp(p["dialyser_clearance"].values) == 0
        one["events"][0]["clearance"] = f"{float(p['dialyser_clearance'][0])!r} mL/min"
        single = mt.run(one)
        np.testing.assert_allclose(single["concentration"], p["concentration"], rtol=1e-10)
        np.testing.assert_allclose(single["sp_ktv"], p["sp_ktv"], rtol=1e-9)


def test_single_pool_sp_ktv_is_what_formal_ukm_returns_on_its_pre_and_post(week: Any) -> None:
    from medtransport_dialysis import adequacy as adq

    ds = week
    v_post = np.array([float(ds["water_volume"].sum("compartment").interp(time=s + d))
                       for s, d in zip(ds["session_start"].values,
                                       ds["session_duration"].values, strict=True)])
    hours = ds["session_duration"].values / 3600
    a = (1.2 - 0.3) / 24 - 2.5 / hours
    formal = adq.formal_ktv(ds["pre_urea"].values, ds["post_urea"].values, hours, v_post,
                            generation=float(ds["generation"]),
                            residual_clearance=float(ds["residual_clearance"]) * 0.06,
                            volume_rate=a)
    np.testing.assert_allclose(ds["sp_ktv"], formal, rtol=1e-9)


def test_daugirdas_outside_its_range_is_marked_undefined_not_a_refusal() -> None:
    sc = _week(water_volume="18 L", generation="3 mg/min",
               dialyser={"koa": "3000 mL/min", "blood_flow": "500 mL/min",
                         "dialysate_flow": "1000 mL/min"})
    sc["events"][0]["duration"] = "6 h"
    ds = mt.run(sc)
    undefined = ds["sp_ktv_daugirdas_defined"] == 0
    assert bool(undefined.all()) and float(ds["post_urea"][0] / ds["pre_urea"][0]) < 0.048
    assert np.all(ds["sp_ktv_daugirdas"].where(undefined, 0) == 0)
    assert np.all(ds["sp_ktv"] > 4)


def test_a_weekly_schedule_skips_the_days_before_the_start() -> None:
    sc = _week()
    sc["time"] = {"start": "48 h", "stop": "168 h", "step": "1 h"}
    ds = mt.run(sc)
    np.testing.assert_allclose(ds["session_start"].values / 3600, [56.0, 104.0])


def _from_monday_8h(**params: Any) -> dict[str, Any]:
    sc = _week(**params)
    sc["time"] = {"start": "8 h", "stop": "168 h", "step": "30 min"}
    return sc


def test_a_measured_post_urea_gives_the_measured_session_its_formal_ukm() -> None:
    """pre_urea and post_urea bracket the first session (here starting at time.start)."""
    week = mt.run(_from_monday_8h())
    predicted = float(week["post_urea"][0])
    # the model's own prediction, given as the measurement, in mmol/L and as BUN in mg/dL
    as_mmol = mt.run(_from_monday_8h(post_urea=f"{predicted!r} mmol/L"))
    as_bun = mt.run(_from_monday_8h(post_urea=f"{predicted * 2.80134!r} mg/dL"))
    for ds in (as_mmol, as_bun):
        assert float(ds["measured_sp_ktv"]) == pytest.approx(float(week["sp_ktv"][0]), rel=1e-6)
        assert float(ds["predicted_over_measured_post"]) == pytest.approx(1.0, rel=1e-6)
    # a lower measured post-dialysis urea is a larger delivered dose
    lower = mt.run(_from_monday_8h(post_urea=f"{0.8 * predicted!r} mmol/L"))
    assert float(lower["measured_sp_ktv"]) > float(week["sp_ktv"][0]) + 0.1
    assert float(lower["measured_urr"]) == pytest.approx(
        1 - 0.8 * predicted / float(week["pre_urea"][0]), rel=1e-9)
    with pytest.raises(ScenarioError, match="below the pre-dialysis"):
        mt.run(_week(post_urea="80 mg/dL"))
    short = _week(post_urea="20 mg/dL")
    short["time"] = {"stop": "10 h", "step": "1 h"}
    with pytest.raises(ScenarioError, match="ends within the run"):
        mt.run(short)
    with pytest.raises(ScenarioError, match=r"must start at time\.start"):
        mt.run(_week(post_urea="20 mg/dL"))


def test_the_cli_refuses_a_bad_session_with_exit_2_naming_the_field(tmp_path: Any) -> None:
    import yaml
    from click.testing import CliRunner

    from medtransport.cli import main

    sc = _week()
    sc["events"][0]["days"] = ["Mon", "Someday"]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(sc), encoding="utf-8")
    result = CliRunner().invoke(main, ["run", str(path), "-o", str(tmp_path / "x.nc")])
    assert result.exit_code == 2
    assert "events.0.days" in result.output + result.stderr
    assert "Traceback" not in result.output + result.stderr
    assert not (tmp_path / "x.nc").exists()


def test_urea_is_shown_in_mmol_and_water_in_litres_whatever_the_scenario_wrote() -> None:
    # the week's scenario writes urea as mg/dL (a mass) and no amount of substance: without
    # the model's declaration a week's 2531 mmol of urea would be shown as "2.53 mol" and
    # 0.5 mmol/L as 500 µM
    from medtransport.display import DisplayUnits
    from medtransport.runner import prepare

    model = prepare(_week())
    display = DisplayUnits(model)
    assert display.unit("urea", "mmol", [2531.0]) == "mmol"
    assert display.unit("urea_amount", "mmol", [2531.0]) == "mmol"
    assert display.unit("concentration", "mmol/L", [0.5]) == "mmol/L"  # not 500 µM
