"""The pk models against hand formulas, and the audits against deliberately broken models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medtransport.errors import ScenarioError
from medtransport.runner import prepare, run
from medtransport.testing import build_model as build
from medtransport.testing import failed_audits
from medtransport_pk.model import OneCompartment, PKModel, TwoCompartment

ONE = {"clearance": "2.8 L/h", "central_volume": "32 L"}
TWO = {"clearance": "4.6 L/h", "central_volume": "30 L", "intercompartmental_clearance": "6.9 L/h",
       "peripheral_volume": "40 L"}


def scenario(model: str, parameters: dict[str, Any], events: list[dict[str, Any]],
             stop: str = "24 h", step: str = "15 min", **extra: Any) -> dict[str, Any]:
    return {"name": "test", "model": model, "parameters": parameters, "events": events,
            "time": {"stop": stop, "step": step}, **extra}


def central(ds: Any) -> tuple[np.ndarray, np.ndarray]:
    return ds["time"].values / 3600.0, ds["concentration"].sel(tissue="central").values


def assert_rel(got: np.ndarray, want: np.ndarray, tol: float = 1e-10) -> None:
    err = np.max(np.abs(got - want)) / np.max(np.abs(want))
    assert err <= tol, f"relative error {err:.3g} > {tol:g}"


# ----------------------------------------------------------------------------- hand formulas

def test_one_compartment_bolus() -> None:
    ds = run(scenario("pk.one_compartment", ONE, [{"type": "bolus", "amount": "500 mg"}]))
    t, c = central(ds)
    k, vol = 2.8 / 32, 32.0
    assert_rel(c, 500 / vol * np.exp(-k * t))
    assert c[0] == pytest.approx(500 / vol, rel=1e-15)  # the state at t0 is just after the dose


def test_oral_bateman_with_lag_and_bioavailability() -> None:
    p = {**ONE, "absorption_rate": "1.5 1/h", "lag_time": "0.75 h", "bioavailability": 0.7}
    ds = run(scenario("pk.one_compartment", p, [{"type": "oral", "amount": "320 mg"}]))
    t, c = central(ds)
    ka, k, vol, f_bio, dose, lag = 1.5, 2.8 / 32, 32.0, 0.7, 320.0, 0.75
    s = np.clip(t - lag, 0.0, None)
    bateman = f_bio * dose * ka / (vol * (ka - k)) * (np.exp(-k * s) - np.exp(-ka * s))
    assert_rel(c, bateman)
    assert ds["unabsorbed"].values[-1] == pytest.approx((1 - f_bio) * dose, rel=1e-14)
    assert np.all(ds["unabsorbed"].values[t < lag] == 0.0)


def test_zero_order_infusion() -> None:
    ds = run(scenario("pk.one_compartment", ONE,
                      [{"type": "infusion", "amount": "600 mg", "duration": "2 h"}]))
    t, c = central(ds)
    rate, t_inf, k, vol = 300.0, 2.0, 2.8 / 32, 32.0
    expected = rate / (k * vol) * (1 - np.exp(-k * np.minimum(t, t_inf))) * \
        np.exp(-k * np.clip(t - t_inf, 0.0, None))
    assert_rel(c, expected)


def test_infusion_by_rate_equals_infusion_by_duration() -> None:
    a = run(scenario("pk.one_compartment", ONE,
                     [{"type": "infusion", "amount": "600 mg", "duration": "2 h"}]))
    b = run(scenario("pk.one_compartment", ONE,
                     [{"type": "infusion", "amount": "600 mg", "rate": "5 mg/min"}]))
    assert_rel(b["concentration"].values, a["concentration"].values, 1e-13)


def test_two_compartment_bolus_is_biexponential() -> None:
    ds = run(scenario("pk.two_compartment", TWO, [{"type": "bolus", "amount": "1 g"}],
                      stop="48 h"))
    t, c = central(ds)
    v1 = 30.0
    k10, k12, k21 = 4.6 / v1, 6.9 / v1, 6.9 / 40.0
    total = k10 + k12 + k21
    disc = np.sqrt(total ** 2 - 4 * k10 * k21)
    alpha, beta = (total + disc) / 2, (total - disc) / 2
    expected = 1000.0 / v1 * ((alpha - k21) / (alpha - beta) * np.exp(-alpha * t)
                              + (k21 - beta) / (alpha - beta) * np.exp(-beta * t))
    assert_rel(c, expected)


def test_repeated_oral_doses_with_lag_are_superposed() -> None:
    p = {**ONE, "absorption_rate": "1.1 1/h", "lag_time": "0.4 h", "bioavailability": 0.85}
    ds = run(scenario("pk.one_compartment", p,
                      [{"type": "oral", "amount": "250 mg", "at": "1 h", "every": "8 h",
                        "count": 5}], stop="48 h", step="10 min"))
    t, c = central(ds)
    ka, k, vol, f_bio, dose, lag = 1.1, 2.8 / 32, 32.0, 0.85, 250.0, 0.4
    expected = np.zeros_like(t)
    for dose_time in 1.0 + 8.0 * np.arange(5):
        s = np.clip(t - dose_time - lag, 0.0, None)
        expected += f_bio * dose * ka / (vol * (ka - k)) * (np.exp(-k * s) - np.exp(-ka * s))
    assert_rel(c, expected)


@pytest.mark.parametrize("model, parameters, event", [
    ("pk.one_compartment", {**ONE, "absorption_rate": "1.5 1/h", "lag_time": "0.5 h",
                            "bioavailability": 0.8}, {"type": "oral", "amount": "200 mg"}),
    ("pk.two_compartment", TWO, {"type": "infusion", "amount": "1 g", "duration": "1 h"}),
], ids=["oral_lag", "two_compartment_infusion"])
def test_steady_state_equals_the_fiftieth_interval(model: str, parameters: dict[str, Any],
                                                   event: dict[str, Any]) -> None:
    ss = run(scenario(model, parameters, [{**event, "every": "12 h", "steady_state": True}],
                      stop="12 h", step="15 min"))
    long = run(scenario(model, parameters, [{**event, "every": "12 h", "count": 60}],
                        stop="600 h", step="15 min"))
    fiftieth = long["concentration"].values[-49:]  # [588 h, 600 h]
    assert_rel(ss["concentration"].values, fiftieth, 1e-9)
    # The steady-state body content is the declared initial amount.
    assert float(ss["drug_stored"].values[0]) > 0
    assert ss["drug_residual"].values[0] == pytest.approx(0.0, abs=1e-9)


def test_allometric_scaling_of_clearance_and_volume() -> None:
    p = {**TWO, "allometric": {}}
    sc = scenario("pk.two_compartment", p, [{"type": "bolus", "amount": "1 g"}],
                  patient={"weight": "100 kg"})
    kin = prepare(sc)._kinetics()  # type: ignore[attr-defined]
    w = 100 / 70
    assert kin["clearance"] == pytest.approx(4.6 * w ** 0.75, rel=1e-14)
    assert kin["intercompartmental_clearance"] == pytest.approx(6.9 * w ** 0.75, rel=1e-14)
    assert kin["central_volume"] == pytest.approx(30 * w, rel=1e-14)
    assert kin["peripheral_volume"] == pytest.approx(40 * w, rel=1e-14)
    assert central(run(sc))[1][0] == pytest.approx(1000 / (30 * w), rel=1e-14)


def test_cockcroft_gault_scales_clearance() -> None:
    patient = {"weight": "80 kg", "age": "60 year", "sex": "female",
               "serum_creatinine": "1.2 mg/dL"}
    p = {**ONE, "renal_function": {"fraction": 0.6}}
    sc = scenario("pk.one_compartment", p, [{"type": "bolus", "amount": "500 mg"}],
                  patient=patient)
    crcl = (140 - 60) * 80 / (72 * 1.2) * 0.85  # mL/min
    cl = 2.8 * ((1 - 0.6) + 0.6 * crcl / 100)
    assert prepare(sc)._kinetics()["clearance"] == pytest.approx(cl, rel=1e-13)  # type: ignore
    t, c = central(run(sc))
    assert_rel(c, 500 / 32 * np.exp(-cl / 32 * t))


def test_dose_in_micrograms_equals_dose_in_milligrams() -> None:
    p = {**ONE, "absorption_rate": "1.5 1/h"}
    a = run(scenario("pk.one_compartment", p, [{"type": "oral", "amount": "320 mg"}]))
    b = run(scenario("pk.one_compartment", p, [{"type": "oral", "amount": "320000 ug"}]))
    assert b["concentration"].attrs["units"] == a["concentration"].attrs["units"]
    assert_rel(b["concentration"].values, a["concentration"].values, 1e-14)


def test_substance_dose_converted_with_molar_mass() -> None:
    p = {**ONE, "molar_mass": "200 g/mol"}
    a = run(scenario("pk.one_compartment", p, [{"type": "bolus", "amount": "100 mg"},
                                               {"type": "bolus", "amount": "0.5 mmol"}]))
    b = run(scenario("pk.one_compartment", ONE, [{"type": "bolus", "amount": "200 mg"}]))
    assert_rel(a["concentration"].values, b["concentration"].values, 1e-14)
    with pytest.raises(ScenarioError, match="molar_mass"):
        prepare(scenario("pk.one_compartment", ONE, [{"type": "bolus", "amount": "100 mg"},
                                                     {"type": "bolus", "amount": "0.5 mmol"}]))


def test_everything_given_is_accounted_for() -> None:
    p = {**TWO, "absorption_rate": "0.9 1/h", "bioavailability": 0.6, "lag_time": "0.3 h"}
    ds = run(scenario("pk.two_compartment", p,
                      [{"type": "oral", "amount": "400 mg", "every": "6 h", "count": 4},
                       {"type": "infusion", "amount": "300 mg", "duration": "30 min",
                        "at": "3 h"},
                       {"type": "bolus", "amount": "100 mg", "at": "10 h"}]))
    total = ds["amount"].sum("compartment") + ds["eliminated"] + ds["unabsorbed"]
    given = ds["drug_stored"].values[0] + ds["drug_inflow"].values
    assert np.max(np.abs(total.values - given)) <= 1e-12 * given.max()
    assert given[-1] == pytest.approx(4 * 400 + 300 + 100, rel=1e-14)


def test_plot_draws(tmp_path: Path) -> None:
    from medtransport.plotting import save_plot

    sc = scenario("pk.one_compartment", {**ONE, "absorption_rate": "1.5 1/h"},
                  [{"type": "oral", "amount": "320 mg", "every": "12 h", "count": 2}])
    model = prepare(sc)
    save_plot(model, run(model), str(tmp_path / "pk.png"))
    assert (tmp_path / "pk.png").stat().st_size > 1000


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("parameters, events, extra, path", [
    (ONE, [{"type": "oral", "amount": "1 mg"}], {}, "parameters.absorption_rate"),
    (ONE, [{"type": "infusion", "amount": "1 mg", "rate": "1 mg/h", "duration": "1 h"}], {},
     "events.0.rate"),
    (ONE, [{"type": "infusion", "amount": "1 mg"}], {}, "events.0.rate"),
    (ONE, [{"type": "bolus", "amount": "1 mg", "duration": "1 h"}], {}, "events.0.duration"),
    (ONE, [{"type": "bolus", "amount": "5 mL"}], {}, "events.0.amount"),
    (ONE, [{"type": "bolus", "amount": "1 mg", "steady_state": True}], {},
     "events.0.steady_state"),
    (ONE, [{"type": "bolus", "amount": "1 mg"}],
     {"domain": {"shape": "compartments", "compartments": ["a"]}}, "domain"),
    ({**ONE, "allometric": {}}, [{"type": "bolus", "amount": "1 mg"}], {}, "patient.weight"),
    ({**ONE, "renal_function": {}}, [{"type": "bolus", "amount": "1 mg"}],
     {"patient": {"weight": "70 kg"}}, "patient.age"),
], ids=["oral_needs_ka", "rate_and_duration", "neither", "bolus_duration", "volume_dose",
        "ss_needs_every", "domain", "allometric_needs_patient", "renal_needs_age"])
def test_bad_input_names_the_field(parameters: dict[str, Any], events: list[dict[str, Any]],
                                   extra: dict[str, Any], path: str) -> None:
    with pytest.raises(ScenarioError) as info:
        prepare(scenario("pk.one_compartment", parameters, events, **extra))
    assert path in [p for p, _ in info.value.problems], info.value.problems


# ----------------------------------------------------------------------------- mutants

class LeakyRateMatrix(TwoCompartment):
    """Elimination leaves the central compartment but never reaches ``eliminated``."""

    def rate_matrix(self) -> np.ndarray:
        kmat = super().rate_matrix()
        kmat[self.states.index("eliminated"), self.states.index("central")] = 0.0
        return kmat


class MicrogramsReadAsMilligrams(OneCompartment):
    """The solver is handed the dose in µg where it expects mg (a factor 1000)."""

    def _solver_records(self) -> Any:
        import dataclasses

        table = super()._solver_records()
        return dataclasses.replace(table, amt=table.amt * 1000.0)


class ForgetsUnabsorbed(OneCompartment):
    """The fraction 1 − f_bio of an oral dose is dropped instead of booked as unabsorbed."""

    def _ledger_terms(self, led: Any, nonzero: Any) -> Any:
        inflow, outflow = super()._ledger_terms(led, nonzero)
        outflow.pop("unabsorbed")
        return inflow, outflow


BOLUS_2CMT = scenario("pk.two_compartment", TWO, [{"type": "bolus", "amount": "1 g",
                                                   "every": "12 h", "count": 2}])
ORAL = scenario("pk.one_compartment", {**ONE, "absorption_rate": "1.5 1/h",
                                       "bioavailability": 0.7},
                [{"type": "oral", "amount": "320 mg", "every": "12 h", "count": 2}])


@pytest.mark.parametrize("sc, cls", [(BOLUS_2CMT, TwoCompartment), (ORAL, OneCompartment)],
                         ids=["bolus_2cmt", "oral"])
def test_the_unbroken_model_passes(sc: dict[str, Any], cls: type[PKModel]) -> None:
    assert run(build(cls, sc)).attrs["audit_status"] == "passed"


def test_a_leaky_rate_matrix_is_caught() -> None:
    assert "mass_balance[drug]" in failed_audits(LeakyRateMatrix, BOLUS_2CMT)


def test_a_dose_in_the_wrong_unit_is_caught() -> None:
    failures = failed_audits(MicrogramsReadAsMilligrams, ORAL)
    assert "normalization[drug]" in failures and "mass_balance[drug]" in failures


def test_a_missing_unabsorbed_fraction_is_caught() -> None:
    assert "mass_balance[drug]" in failed_audits(ForgetsUnabsorbed, ORAL)


def test_three_compartment_bolus_is_triexponential() -> None:
    p = {**TWO, "intercompartmental_clearance_2": "1.2 L/h", "peripheral_volume_2": "80 L"}
    ds = run(scenario("pk.three_compartment", p, [{"type": "bolus", "amount": "1 g"}],
                      stop="72 h"))
    t, c = central(ds)
    v1, v2, v3 = 30.0, 40.0, 80.0
    k10, k12, k21, k13, k31 = 4.6 / v1, 6.9 / v1, 6.9 / v2, 1.2 / v1, 1.2 / v3
    body = np.array([[-(k10 + k12 + k13), k21, k31], [k12, -k21, 0.0], [k13, 0.0, -k31]])
    lam, vec = np.linalg.eig(body)  # three real negative eigenvalues
    coef = np.linalg.solve(vec, [1000.0, 0.0, 0.0])
    expected = (vec[0] * coef * np.exp(np.outer(t, lam))).sum(axis=1).real / v1
    assert np.all(lam.real < 0)
    assert_rel(c, expected)


def test_absorption_equal_to_elimination_is_the_bateman_limit() -> None:
    k = 2.8 / 32
    p = {**ONE, "absorption_rate": f"{k!r} 1/h"}
    ds = run(scenario("pk.one_compartment", p, [{"type": "oral", "amount": "320 mg"}]))
    t, c = central(ds)
    assert_rel(c, 320.0 * k * t * np.exp(-k * t) / 32.0)


# ----------------------------------------------------------------------------- Michaelis–Menten

def test_michaelis_menten_bolus_matches_the_lambert_w_solution() -> None:
    from scipy.special import lambertw

    p = {"clearance": "0 L/h", "central_volume": "45 L",
         "michaelis_menten": {"vmax": "25 mg/h", "km": "4 mg/L"}}
    ds = run(scenario("pk.one_compartment", p, [{"type": "bolus", "amount": "900 mg"}],
                      stop="72 h", step="30 min"))
    assert ds.attrs["solver_method"] == "ode"
    t, c = central(ds)
    c0, km, vmax, vol = 900 / 45, 4.0, 25.0, 45.0
    expected = km * lambertw(c0 / km * np.exp((c0 - vmax * t / vol) / km)).real
    assert_rel(c, expected, 1e-8)


def test_the_ode_solver_agrees_with_the_exact_one_on_a_linear_model() -> None:
    p = {**TWO, "absorption_rate": "1.2 1/h", "bioavailability": 0.8, "lag_time": "0.25 h"}
    events = [{"type": "oral", "amount": "300 mg", "every": "8 h", "count": 3},
              {"type": "infusion", "amount": "500 mg", "duration": "1 h", "at": "2 h"}]
    exact = run(scenario("pk.two_compartment", p, events))
    ode = run(scenario("pk.two_compartment", p, events, solver={"method": "ode"}))
    assert_rel(ode["amount"].values, exact["amount"].values, 1e-8)


def test_saturable_elimination_with_a_large_km_is_linear() -> None:
    # Vmax·C/(Km + C) → (Vmax/Km)·C when C ≪ Km: a clearance of Vmax/Km.
    events = [{"type": "bolus", "amount": "100 mg"}]
    mm = run(scenario("pk.one_compartment",
                      {"clearance": "0 L/h", "central_volume": "32 L",
                       "michaelis_menten": {"vmax": "2.8e6 mg/h", "km": "1e6 mg/L"}}, events))
    linear = run(scenario("pk.one_compartment", ONE, events))
    assert_rel(mm["concentration"].values, linear["concentration"].values, 1e-5)


def test_michaelis_menten_refuses_the_exact_solver_and_ss_2() -> None:
    p = {**ONE, "michaelis_menten": {"vmax": "20 mg/h", "km": "4 mg/L"}}
    with pytest.raises(ScenarioError) as info:
        prepare(scenario("pk.one_compartment", p, [{"type": "bolus", "amount": "1 mg"}],
                         solver={"method": "exact"}))
    assert "parameters.michaelis_menten" in [q for q, _ in info.value.problems]
    # SS 1 is reached by repeated dosing (test_saturable); SS 2 presumes superposition
    with pytest.raises(ScenarioError, match=r"events\.0: SS 2") as info:
        run(scenario("pk.one_compartment", p, [{"type": "bolus", "amount": "1 mg",
                                                "every": "12 h", "steady_state": 2}]))


def test_micro_constants_give_the_same_model_as_clearances_and_volumes() -> None:
    """k10 = CL/V1, k12 = Q/V1, k21 = Q/V2 (Gibaldi & Perrier ch. 2): the same 2-compartment
    model written both ways gives the same concentrations to 1e-13."""
    import medtransport as mt

    cl, v1, q, v2 = 4.6, 30.0, 6.9, 40.0
    common = {"name": "micro", "model": "pk.two_compartment",
              "events": [{"type": "bolus", "amount": "500 mg"}],
              "time": {"stop": "24 h", "step": "30 min"}}
    by_clearance = mt.run({**common, "parameters": {
        "clearance": f"{cl} L/h", "central_volume": f"{v1} L",
        "intercompartmental_clearance": f"{q} L/h", "peripheral_volume": f"{v2} L"}})
    by_micro = mt.run({**common, "parameters": {
        "central_volume": f"{v1} L", "k10": f"{cl / v1!r} 1/h", "k12": f"{q / v1!r} 1/h",
        "k21": f"{q / v2!r} 1/h"}})
    np.testing.assert_allclose(by_micro["concentration"].values,
                               by_clearance["concentration"].values, rtol=1e-13, atol=1e-15)
    from medtransport.runner import prepare

    with pytest.raises(mt.ScenarioError, match=r"give clearance or k10, not both"):
        prepare({**common, "parameters": {"clearance": "1 L/h", "k10": "1 1/h",
                                          "central_volume": "1 L"}})
    with pytest.raises(mt.ScenarioError, match=r"k12 needs k21"):
        prepare({**common, "parameters": {"k10": "1 1/h", "k12": "1 1/h",
                                          "central_volume": "1 L"}})


def test_a_minute_grid_infusion_matches_the_closed_form_and_books_no_unabsorbed_route() -> None:
    """1 g over 1 h on a 1-min grid for 24 h (1441 steps whose lengths in hours differ in
    their last bits, so the loop shares e^{λΔ} across steps equal within 1e-12): against the
    biexponential closed form of a 2-compartment infusion, and an intravenous regimen declares
    no `unabsorbed` route (nothing is put on it) while its books still balance."""
    sc = scenario("pk.two_compartment", TWO, [{"type": "infusion", "amount": "1 g",
                                               "duration": "1 h"}], step="1 min")
    ds = run(sc)
    t, c = central(ds)
    v1, v2, cl, q = 30.0, 40.0, 4.6, 6.9
    k10, k12, k21 = cl / v1, q / v1, q / v2
    body = np.array([[-(k10 + k12), k21], [k12, -k21]])
    lam, vec = np.linalg.eig(body)
    w = np.linalg.inv(vec)
    rate = np.array([1000.0, 0.0])

    def amounts(s: float, a0: np.ndarray, r: np.ndarray) -> np.ndarray:
        z0, wr = w @ a0, w @ r
        e = np.exp(lam * s)
        return vec @ (e * z0 + (e - 1.0) / lam * wr)

    end = amounts(1.0, np.zeros(2), rate)
    want = np.array([amounts(x, np.zeros(2), rate)[0] if x <= 1.0 else
                     amounts(x - 1.0, end, np.zeros(2))[0] for x in t]) / v1
    assert_rel(c, want, 1e-12)
    assert ds.attrs["audit_status"] == "passed"
    assert ds["drug_outflow"].attrs["routes"] == "eliminated"
