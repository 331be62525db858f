"""The YAML event vocabulary and data-set subjects, run end to end through the PK models."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from medtransport.errors import ScenarioError
from medtransport.runner import prepare, run
from medtransport.testing import build_model, failed_audits
from medtransport_pk import engine
from medtransport_pk.model import OneCompartment
from medtransport_pk.records import RecordTable

CL, V, KA = 2.8, 32.0, 1.1
K = CL / V
ONE = {"clearance": f"{CL} L/h", "central_volume": f"{V} L"}


def scenario(events: list[dict[str, Any]], parameters: dict[str, Any] | None = None,
             time: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {"name": "events", "model": "pk.one_compartment",
            "parameters": {**ONE, **(parameters or {})}, "events": events,
            "time": time or {"stop": "48 h", "step": "30 min"}, **extra}


def central(ds: Any) -> tuple[np.ndarray, np.ndarray]:
    return ds["time"].values / 3600.0, ds["concentration"].sel(tissue="central").values


def assert_rel(got: np.ndarray, want: np.ndarray, tol: float = 1e-10) -> None:
    scale = np.maximum(np.abs(want), 1e-12 * np.max(np.abs(want)))
    err = np.max(np.abs(got - want) / scale)
    assert err <= tol, f"relative error {err:.3g} > {tol:g}"


def boluses(t: np.ndarray, doses: list[tuple[float, float]]) -> np.ndarray:
    return sum(np.where(t >= s, d * np.exp(-K * np.maximum(t - s, 0)), 0.0)
               for s, d in doses) / V


# ----------------------------------------------------------------------------- output times

@pytest.mark.parametrize("stop, step", [("142.2 h", "0.1 h"), ("142.2 h", "6 min"),
                                        ("8532 min", "360 s"), ("5.925 day", "0.1 h")])
def test_an_output_at_a_dose_time_is_after_the_dose(stop: str, step: str) -> None:
    ds = run(scenario([{"type": "bolus", "amount": "100 mg", "every": "12 h", "count": 12}],
                      time={"stop": stop, "step": step}))
    t, c = central(ds)
    doses = [(12.0 * j, 100.0) for j in range(12)]
    for s, _ in doses:
        i = int(np.argmin(np.abs(t - s)))
        assert t[i] == s  # the dose time itself, not a hair before or after
    assert_rel(c, boluses(t, doses))


def test_explicit_output_times() -> None:
    at = ["0.5 h", "1 h", "2 h", "7.3 h", "12 h"]
    ds = run(scenario([{"type": "bolus", "amount": "100 mg", "at": "2 h"}],
                      time={"stop": "24 h", "step": "6 h", "at": at}))
    t, c = central(ds)
    assert set([0.5, 1.0, 2.0, 7.3, 12.0, 0.0, 6.0, 18.0, 24.0]) == set(np.round(t, 12))
    assert_rel(c, boluses(t, [(2.0, 100.0)]))


# ----------------------------------------------------------------------------- vocabulary

def test_per_compartment_bioavailability_and_lag() -> None:
    ds = run(scenario([{"type": "bolus", "amount": "100 mg", "at": "1 h"}],
                      {"bioavailability": {"central": 0.61}, "lag_time": {"central": "2 h"}}))
    t, c = central(ds)
    assert_rel(c, boluses(t, [(3.0, 61.0)]))
    assert float(ds["unabsorbed"][-1]) == pytest.approx(39.0, rel=1e-14)


def test_infusion_into_the_depot_and_a_scalar_f_keeps_its_depot_meaning() -> None:
    ds = run(scenario([{"type": "infusion", "compartment": "depot", "amount": "100 mg",
                        "duration": "2 h"}], {"absorption_rate": f"{KA} 1/h",
                                              "bioavailability": 0.5}))
    t, c = central(ds)
    # F·AMT at the given rate 50 mg/h lasts 1 h; central = R·(H(t) − H(t − 1)), H = ∫ Bateman
    h = lambda s: np.where(s > 0, KA / (KA - K) * ((1 - np.exp(-K * s)) / K  # noqa: E731
                                                   - (1 - np.exp(-KA * s)) / KA), 0.0)
    assert_rel(c, 50.0 * (h(t) - h(t - 1.0)) / V)


def test_modelled_rate_and_duration() -> None:
    events = [{"type": "infusion", "amount": "100 mg", "rate": "modelled"},
              {"type": "infusion", "amount": "100 mg", "duration": "modelled", "at": "24 h"}]
    ds = run(scenario(events, {"infusion_rate": {"central": "25 mg/h"},
                               "infusion_duration": {"central": "2 h"}}))
    t, c = central(ds)

    def inf(start: float, rate: float, dur: float) -> np.ndarray:
        on = np.clip(t - start, 0, dur)
        return np.where(t > start, rate / K * (1 - np.exp(-K * on))
                        * np.exp(-K * (t - start - on)), 0.0) / V

    assert_rel(c, inf(0.0, 25.0, 4.0) + inf(24.0, 50.0, 2.0))


def test_reset_reset_and_dose_and_steady_state_2() -> None:
    events = [{"type": "bolus", "amount": "100 mg", "every": "6 h", "count": 8},
              {"type": "reset", "at": "13 h"},
              {"type": "bolus", "amount": "40 mg", "at": "20 h", "reset": True},
              {"type": "bolus", "amount": "10 mg", "at": "30 h", "every": "12 h",
               "steady_state": 2}]
    ds = run(scenario(events))
    t, c = central(ds)
    tau = 12.0
    want = boluses(t, [(0.0, 100.0), (6.0, 100.0), (12.0, 100.0)]) * (t < 13.0) + \
        boluses(t, [(20.0, 40.0), (30.0, 10.0 / (1 - np.exp(-K * tau)))])
    assert_rel(c, want)
    assert float(ds["removed"][-1]) > 0  # the resets are booked


def test_constant_infusion_at_steady_state() -> None:
    ds = run(scenario([{"type": "infusion", "rate": "14 mg/h", "steady_state": True}]))
    assert_rel(central(ds)[1], np.full(ds.sizes["time"], 14.0 / CL))


@pytest.mark.parametrize("events, parameters, path", [
    ([{"type": "bolus", "amount": "1 mg", "compartment": "gut"}], {}, "events.0.compartment"),
    ([{"type": "bolus", "amount": "1 mg", "every": "12 h", "steady_state": 3}], {},
     "events.0.steady_state"),
    ([{"type": "bolus", "amount": "1 mg", "reset": "yes"}], {}, "events.0.reset"),
    ([{"type": "reset", "every": "2 h", "count": 2}], {}, "events.0.every"),
    ([{"type": "infusion", "amount": "1 mg", "rate": "modelled"}], {}, "events.0"),
    ([{"type": "bolus", "amount": "1 mg"}], {"bioavailability": {"gut": 0.5}},
     "parameters.bioavailability.gut"),
    ([{"type": "bolus", "amount": "1 mg"}], {"infusion_rate": {"central": "1 L/h"}},
     "parameters.infusion_rate.central"),
    ([{"type": "bolus", "amount": "1 mg"}], {"covariate_effects": [
        {"parameter": "clearance", "covariate": "weight", "type": "power"}]},
     "parameters.covariate_effects.0"),
], ids=["compartment", "ss_value", "reset_value", "reset_repeated", "modelled_rate_missing",
        "f_compartment", "rate_unit", "effect_incomplete"])
def test_bad_events_name_the_field(events: list[dict[str, Any]], parameters: dict[str, Any],
                                   path: str) -> None:
    with pytest.raises(ScenarioError) as info:
        prepare(scenario(events, parameters))
    assert path in [p for p, _ in info.value.problems], info.value.problems


# ----------------------------------------------------------------------------- covariates

def test_declarative_effects_scale_the_parameters() -> None:
    effects = [{"parameter": "clearance", "covariate": "weight", "type": "power",
                "reference": "70 kg", "exponent": 0.75},
               {"parameter": "central_volume", "covariate": "weight", "type": "proportional",
                "reference": "70 kg"},
               {"parameter": "clearance", "covariate": "sex", "type": "categorical",
                "levels": {"female": 0.8}},
               {"parameter": "clearance", "covariate": "age", "type": "threshold",
                "above": "65 year", "factor": 0.5},
               {"parameter": "clearance", "covariate": "serum_creatinine", "type": "linear",
                "reference": "1 mg/dL", "slope": "-0.2 dL/mg"},
               {"parameter": "central_volume", "covariate": "height", "type": "exponential",
                "reference": "170 cm", "slope": "0.01 1/cm"}]
    patient = {"weight": "50 kg", "sex": "female", "age": "70 year",
               "serum_creatinine": "1.5 mg/dL", "height": "160 cm"}
    ds = run(scenario([{"type": "bolus", "amount": "100 mg"}], {"covariate_effects": effects},
                      patient=patient))
    cl = CL * (50 / 70) ** 0.75 * 0.8 * 0.5 * (1 - 0.2 * 0.5)
    v = V * 50 / 70 * np.exp(0.01 * -10)
    t, c = central(ds)
    assert_rel(c, 100 / v * np.exp(-cl / v * t))


# ----------------------------------------------------------------------------- mutants

class DropsResetsUnbooked(OneCompartment):
    """A reset empties the body, but what it removes is not booked anywhere."""

    def _ledger_terms(self, led: Any, nonzero: Any) -> Any:
        inflow, outflow = super()._ledger_terms(led, nonzero)
        outflow.pop("reset", None)
        return inflow, outflow


RESET = scenario([{"type": "bolus", "amount": "100 mg"}, {"type": "reset", "at": "6 h"}])


def test_an_unbooked_reset_is_caught() -> None:
    assert run(build_model(OneCompartment, RESET)).attrs["audit_status"] == "passed"
    assert "mass_balance[drug]" in failed_audits(DropsResetsUnbooked, RESET)


def test_a_steady_state_counting_its_dose_twice_is_caught(monkeypatch: Any) -> None:
    real = engine._steady_states

    def double(recs: Any, t: Any, kmat: Any, c: Any, amount: Any, *rest: Any) -> Any:
        out = real(recs, t, kmat, c, amount, *rest)
        out.table[np.arange(recs.size), c] += amount
        return out

    sc = scenario([{"type": "bolus", "amount": "100 mg", "every": "12 h", "count": 3,
                    "steady_state": True}])
    assert run(sc).attrs["audit_status"] == "passed"
    monkeypatch.setattr(engine, "_steady_states", double)
    assert "steady_state[drug]" in failed_audits(OneCompartment, sc)


# ----------------------------------------------------------------------------- data subjects

def records(rows: list[tuple[Any, ...]], covariates: dict[str, list[float]] | None = None,
            units: dict[str, str] | None = None) -> RecordTable:
    """(ID, TIME, EVID, AMT, CMT, RATE, II, ADDL, SS, DV) rows."""
    col = list(zip(*rows, strict=True))
    n = len(rows)
    return RecordTable(
        id=np.array(col[0], np.int64), time=np.array(col[1], float),
        evid=np.array(col[2], np.int64), amt=np.array(col[3], float),
        cmt=np.array(col[4], np.int64), rate=np.array(col[5], float),
        ii=np.array(col[6], float), addl=np.array(col[7], np.int64),
        ss=np.array(col[8], np.int64), mdv=(np.array(col[2]) != 0).astype(np.int64),
        dv=np.array(col[9], float), row=np.arange(2, n + 2), amount_unit="mg",
        dv_unit="mg/L", covariates={k: np.array(v, float) for k, v in (covariates or {}).items()},
        covariate_units=units or {}, source="subjects.csv")


def with_data(table: RecordTable) -> type[OneCompartment]:
    class FromData(OneCompartment):
        def _dataset(self) -> RecordTable:
            return table

    return FromData


SUBJECTS = [
    (1, 0.0, 1, 100.0, 1, 0.0, 12.0, 1, 0, np.nan),
    (1, 1.0, 0, 0.0, 0, 0.0, 0.0, 0, 0, 2.1),
    (1, 12.0, 0, 0.0, 0, 0.0, 0.0, 0, 0, 1.0),
    (1, 13.0, 0, 0.0, 0, 0.0, 0.0, 0, 0, 3.0),
    (2, 0.0, 1, 300.0, 1, 100.0, 0.0, 0, 0, np.nan),
    (2, 2.0, 0, 0.0, 0, 0.0, 0.0, 0, 0, 5.0),
    (2, 10.0, 0, 0.0, 0, 0.0, 0.0, 0, 0, 4.0),
]
WEIGHT = [70.0, 70.0, 70.0, 70.0, 35.0, 35.0, 35.0]
POWER = [{"parameter": "clearance", "covariate": "weight", "type": "power",
          "reference": "70 kg", "exponent": 1.0}]


def test_data_subjects_run_together_with_a_prediction_at_every_record() -> None:
    table = records(SUBJECTS, {"weight": WEIGHT}, {"weight": "kg"})
    sc = scenario([], {"covariate_effects": POWER}, {"stop": "24 h", "step": "1 h"})
    ds = run(build_model(with_data(table), sc))
    pred = ds["concentration"].values
    k1, k2 = K, K / 2
    t = table.time
    want = np.array([
        *(boluses(t[:4], [(0.0, 100.0), (12.0, 100.0)])),
        *(np.where(t[4:] <= 3, 100 / (V * k2) * (1 - np.exp(-k2 * t[4:])),
                   100 / (V * k2) * (1 - np.exp(-k2 * 3)) * np.exp(-k2 * (t[4:] - 3))))])
    assert k1 == K
    assert_rel(pred, want)
    assert list(ds["ID"].values) == [1, 1, 1, 1, 2, 2, 2]
    assert ds["DV"].attrs["units"] == "mg/L"
    assert np.max(np.abs(ds["record_drug_residual"].values)) < 1e-10
    # the grid per subject agrees with the records at the same times
    grid = ds["grid_concentration"].sel(tissue="central")
    assert float(grid.sel(time=13 * 3600.0).isel(patient=0)) == pytest.approx(pred[3],
                                                                               rel=1e-13)


def test_a_time_varying_covariate_locf_and_nocb() -> None:
    rows = [(1, 0.0, 1, 100.0, 1, 0.0, 0.0, 0, 0, np.nan),
            (1, 4.0, 0, 0.0, 0, 0.0, 0.0, 0, 0, 1.0),
            (1, 8.0, 0, 0.0, 0, 0.0, 0.0, 0, 0, 1.0)]
    table = records(rows, {"weight": [70.0, 140.0, 140.0]}, {"weight": "kg"})
    sc = scenario([], {"covariate_effects": POWER, "covariate_interpolation": "locf"},
                  {"stop": "8 h", "step": "1 h"})
    locf = run(build_model(with_data(table), sc))["concentration"].values
    # LOCF: CL from 4 h on doubles; NOCB (NONMEM, the default): already over (0, 4] — the
    # value at 4 h carried back
    assert_rel(locf, 100 / V * np.exp(-K * np.minimum([0, 4, 8], 4.0)
                                      - 2 * K * np.maximum(np.array([0, 4, 8]) - 4, 0)))
    del sc["parameters"]["covariate_interpolation"]
    nocb = run(build_model(with_data(table), sc))["concentration"].values
    assert_rel(nocb, 100 / V * np.exp(-2 * K * np.array([0, 4, 8])))


def test_nocb_keeps_a_records_own_covariates_for_its_dose_and_prediction() -> None:
    """NONMEM evaluates F, ALAG and the volume of a record with that record's covariates; the
    next record's values apply only to the interval after it."""
    rows = [(1, 0.0, 0, 0.0, 0, 0.0, 0.0, 0, 0, 1.0),
            (1, 2.0, 1, 100.0, 1, 0.0, 0.0, 0, 0, np.nan),
            (1, 6.0, 0, 0.0, 0, 0.0, 0.0, 0, 0, 1.0)]
    table = records(rows, {"weight": [70.0, 70.0, 35.0]}, {"weight": "kg"})
    effects = [{"parameter": "central_volume", "covariate": "weight", "type": "proportional",
                "reference": "70 kg"}]
    ds = run(build_model(with_data(table), scenario([], {"covariate_effects": effects},
                                                   {"stop": "8 h", "step": "1 h"})))
    c = ds["concentration"].values
    # at the dose record V is still 32 L; over (2, 6] it is 16 L: the amount decays with
    # k = CL/16 and is read with V = 16 L at 6 h
    assert c[1] == pytest.approx(100 / V, rel=1e-14)
    assert_rel(c[2:], np.array([100 * np.exp(-CL / (V / 2) * 4) / (V / 2)]))


def test_variability_for_the_data_subjects_is_seeded_per_subject() -> None:
    table = records(SUBJECTS, {"weight": WEIGHT}, {"weight": "kg"})
    sc = scenario([], {}, {"stop": "24 h", "step": "1 h"},
                  population={"size": 2, "variability": {"clearance": 0.3}}, seed=5)
    ds = run(build_model(with_data(table), sc))
    again = run(build_model(with_data(table), sc))
    np.testing.assert_array_equal(ds["concentration"].values, again["concentration"].values)
    cl = ds["clearance"].values
    assert cl.shape == (2,) and cl[0] != cl[1]
    k2 = cl[1] / V
    t = table.time[4:]
    want = np.where(t <= 3, 100 / (V * k2) * (1 - np.exp(-k2 * t)),
                    100 / (V * k2) * (1 - np.exp(-k2 * 3)) * np.exp(-k2 * (t - 3)))
    assert_rel(ds["concentration"].values[4:], want)
    # the size follows from the data: left out, the same two subjects with the same draws
    del sc["population"]["size"]
    derived = run(build_model(with_data(table), sc))
    np.testing.assert_array_equal(derived["concentration"].values, ds["concentration"].values)
    # only a contradicting size is refused, naming both numbers
    sc["population"]["size"] = 3
    with pytest.raises(ScenarioError, match=r"population\.size: .*subjects\.csv has 2 "
                                            r"subjects, but population\.size is 3"):
        prepare(sc, model_class=with_data(table))
    # without a data set the size is required
    with pytest.raises(ScenarioError, match=r"population\.size: required"):
        prepare(scenario([{"type": "bolus", "amount": "100 mg"}],
                         population={"variability": {"clearance": 0.3}}, seed=5))


def test_a_bad_data_row_is_named() -> None:
    rows = [(1, 0.0, 1, 100.0, 1, 0.0, 0.0, 2, 0, np.nan)]  # ADDL without II
    with pytest.raises(ScenarioError, match=r"data row 2 \(ID 1, TIME 0 h\): ADDL needs II"):
        prepare(scenario([]), model_class=with_data(records(rows)))


def test_simulated_observations_are_seeded_and_scatter_as_the_residual_error() -> None:
    n = 2000
    rows = [(1, 0.0, 1, 100.0, 1, 0.0, 0.0, 0, 0, np.nan)] + [
        (1, 0.01 * (i + 1), 0, 0.0, 0, 0.0, 0.0, 0, 0, 1.0) for i in range(n)]
    sc = scenario([], {}, {"stop": "24 h", "step": "12 h"},
                  residual_error={"proportional": 0.1}, seed=3)
    ds = run(build_model(with_data(records(rows)), sc))
    again = run(build_model(with_data(records(rows)), sc))
    np.testing.assert_array_equal(ds["DV_sim"].values, again["DV_sim"].values)
    assert ds["DV_sim"].attrs["units"] == "mg/L" and ds["DV_sim"].values[0] == 0.0  # dose
    eps = ds["DV_sim"].values[1:] / ds["concentration"].values[1:] - 1
    # the SD of 2000 draws is within 5 standard errors (SE ≈ 0.1/√(2·2000)) of 0.1
    assert abs(np.std(eps) - 0.1) < 5 * 0.1 / np.sqrt(2 * n)
    assert abs(np.mean(eps)) < 5 * 0.1 / np.sqrt(n)
    sc["seed"] = 4
    other = run(build_model(with_data(records(rows)), sc))
    assert not np.array_equal(ds["DV_sim"].values, other["DV_sim"].values)


def test_a_subject_alone_equals_the_subject_among_the_others() -> None:
    sc = scenario([], {"covariate_effects": POWER}, {"stop": "24 h", "step": "1 h"})
    both = run(build_model(with_data(records(SUBJECTS, {"weight": WEIGHT},
                                             {"weight": "kg"})), sc))
    for rows in (slice(0, 4), slice(4, 7)):
        alone = run(build_model(with_data(records(SUBJECTS[rows], {"weight": WEIGHT[rows]},
                                                  {"weight": "kg"})), sc))
        np.testing.assert_array_equal(alone["concentration"].values,
                                      both["concentration"].values[rows])
        np.testing.assert_array_equal(alone["record_amount"].values,
                                      both["record_amount"].values[rows])
