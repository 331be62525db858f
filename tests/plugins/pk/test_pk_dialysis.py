"""Drug removal by a dialysis session or CRRT in the linear PK models: the closed form of a
one-compartment bolus with one session, books that close with the dialysate term, a broken
model caught by them, and field-named errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from medtransport.errors import ScenarioError
from medtransport.runner import run
from medtransport.testing import build_model, failed_audits
from medtransport_dialysis.drug_clearance import drug_dialysis_clearance
from medtransport_pk.model import OneCompartment

CL, V, DOSE = 0.6, 40.0, 1000.0  # L/h, L, mg: an anuric patient's vancomycin, roughly
CLD = 120.0 * 60.0 / 1000.0  # 120 mL/min in L/h
T1, T2 = 24.0, 28.0


def scenario(events: list[dict[str, Any]], model: str = "pk.one_compartment",
             parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": "dialysis", "model": model,
            "parameters": {"clearance": f"{CL} L/h", "central_volume": f"{V} L",
                           **(parameters or {})},
            "events": [{"type": "bolus", "amount": f"{DOSE} mg"}, *events],
            "time": {"stop": "72 h", "step": "15 min"}}


SESSION = {"type": "dialysis", "at": f"{T1} h", "duration": f"{T2 - T1} h",
           "clearance": "120 mL/min"}


def closed_form(t: np.ndarray) -> tuple[np.ndarray, float]:
    """Central amount (mg) and the drug removed by the session: piecewise exponential with
    k = CL/V outside and (CL + CL_D)/V inside the session."""
    k, k2 = CL / V, (CL + CLD) / V
    a1 = DOSE * np.exp(-k * T1)
    a2 = a1 * np.exp(-k2 * (T2 - T1))
    a = np.where(t < T1, DOSE * np.exp(-k * t),
                 np.where(t < T2, a1 * np.exp(-k2 * (t - T1)), a2 * np.exp(-k * (t - T2))))
    return a, CLD / (CL + CLD) * (a1 - a2)


def test_one_session_matches_the_closed_form_and_the_books_close() -> None:
    ds = run(scenario([SESSION]))
    t = ds["time"].values / 3600.0
    amount = ds["amount"].sel(compartment="central").values
    want, removed = closed_form(t)
    np.testing.assert_allclose(amount, want, rtol=1e-10, atol=1e-12 * DOSE)
    assert ds.attrs["audit_status"] == "passed"
    np.testing.assert_allclose(float(ds["dialysis_removed"].values[0]), removed, rtol=1e-10)
    # the books at every output: body = given − eliminated − dialysate
    body = ds["amount"].sum("compartment").values
    books = DOSE - ds["eliminated"].values - ds["dialysate"].values
    np.testing.assert_allclose(body, books, rtol=0, atol=1e-10 * DOSE)
    # dialysate grows only during the session
    d = ds["dialysate"].values
    assert np.all(d[t <= T1] == 0.0)
    np.testing.assert_allclose(d[t >= T2], removed, rtol=1e-10)
    # eliminated keeps its meaning: CL·∫C dt alone (the session's removal is not in it)
    k, k2 = CL / V, (CL + CLD) / V
    a1 = DOSE * np.exp(-k * T1)
    a2 = a1 * np.exp(-k2 * (T2 - T1))
    elim_end = (DOSE - a1) + CL / (CL + CLD) * (a1 - a2) + a2 * (1 - np.exp(-k * (72 - T2)))
    np.testing.assert_allclose(ds["eliminated"].values[-1], elim_end, rtol=1e-10)


def test_repeated_sessions_report_the_removal_of_each() -> None:
    ds = run(scenario([{**SESSION, "every": "24 h", "count": 2}]))
    removed = ds["dialysis_removed"].values
    assert removed.shape == (2,)
    # each session removes the fraction CL_D/(CL + CL_D)·(1 − e^{−k₂·4 h}) of what is there
    k, k2 = CL / V, (CL + CLD) / V
    a1 = DOSE * np.exp(-k * T1)
    a2 = a1 * np.exp(-k2 * 4.0)
    a3 = a2 * np.exp(-k * 20.0)
    frac = CLD / (CL + CLD) * (1 - np.exp(-k2 * 4.0))
    np.testing.assert_allclose(removed, [frac * a1, frac * a3], rtol=1e-10)
    np.testing.assert_allclose(ds["dialysate"].values[-1], removed.sum(), rtol=1e-12)


def test_the_dialyser_form_uses_the_drug_clearance_of_the_dialysis_plugin() -> None:
    form = {"koa": "300 mL/min", "free_fraction": 0.7, "blood_flow": "300 mL/min",
            "dialysate_flow": "500 mL/min"}
    event = {k: v for k, v in {**SESSION, **form}.items() if k != "clearance"}
    ds = run(scenario([event]))
    from medtransport.units import Q_

    cld = drug_dialysis_clearance(koa=Q_(300, "mL/min"), free_fraction=0.7,
                                  blood_flow=Q_(300, "mL/min"),
                                  dialysate_flow=Q_(500, "mL/min")).m_as("L/h")
    np.testing.assert_allclose(float(ds["session_clearance"].values[0]), cld, rtol=1e-12)
    assert 0 < cld < 0.7 * 18.0  # below f_u·Q_b


def test_crrt_is_continuous_and_two_compartments_close_their_books() -> None:
    sc = scenario([{"type": "crrt", "at": "0 h", "effluent_flow": "2 L/h",
                    "free_fraction": 0.5}], model="pk.two_compartment",
                  parameters={"intercompartmental_clearance": "3 L/h",
                              "peripheral_volume": "30 L"})
    ds = run(sc)
    assert ds.attrs["audit_status"] == "passed"
    body = ds["amount"].sum("compartment").values
    np.testing.assert_allclose(body, DOSE - ds["eliminated"].values - ds["dialysate"].values,
                               rtol=0, atol=1e-10 * DOSE)
    # CL_CRRT = f_u·Q_eff = 1 L/h against CL = 0.6 L/h: dialysate/eliminated = 1/0.6
    np.testing.assert_allclose(ds["dialysate"].values[-1] / ds["eliminated"].values[-1],
                               1.0 / CL, rtol=1e-10)


class DialysisUnbooked(OneCompartment):
    """Broken: the session clears the drug, but its removal is booked nowhere."""

    def _engine_kinetics(self) -> Any:
        kin = super()._engine_kinetics()
        kin.dialysis = None
        return kin


def test_removal_not_booked_as_dialysate_is_caught() -> None:
    assert run(build_model(OneCompartment, scenario([SESSION]))).attrs["audit_status"] \
        == "passed"
    failed = failed_audits(DialysisUnbooked, scenario([SESSION]))
    assert "mass_balance[drug]" in failed or "record_books[drug]" in failed


@pytest.mark.parametrize("event, field", [
    ({"type": "dialysis", "at": "24 h", "clearance": "120 mL/min"}, "events.1.duration"),
    ({"type": "dialysis", "at": "24 h", "duration": "4 h"}, "events.1.clearance"),
    ({**SESSION, "clearance": "120 mg/min"}, "events.1.clearance"),
    ({**SESSION, "amount": "1 mg"}, "events.1.amount"),
    ({**SESSION, "free_fraction": 1.5}, "events.1.free_fraction"),
    ({**SESSION, "every": "2 h", "count": 3}, "events.1.duration"),
    ({"type": "crrt", "at": "0 h", "effluent_flow": "-2 L/h"}, "events.1.effluent_flow"),
    ({"type": "crrt", "at": "0 h", "clearance": "1 L/h", "every": "24 h", "count": 2},
     "events.1.every"),
])
def test_bad_dialysis_events_name_the_field(event: dict[str, Any], field: str) -> None:
    with pytest.raises(ScenarioError) as err:
        build_model(OneCompartment, scenario([event])).build_domain()
    assert any(where == field for where, _ in err.value.problems), err.value.problems


def test_a_session_on_the_matrix_exponential_path_closes_its_books() -> None:
    """ka = (CL + CL_D)/V makes the session's rate matrix defective, so the engine integrates
    the dialysate there by the augmented matrix exponential, not the eigen-decomposition; the
    amount removed must still match the closed form and the books still close."""
    k, k2 = CL / V, (CL + CLD) / V
    sc = scenario([SESSION], parameters={"absorption_rate": f"{k2!r} 1/h"})
    sc["events"][0] = {"type": "oral", "amount": f"{DOSE} mg"}
    ds = run(sc)
    assert ds.attrs["audit_status"] == "passed"
    body = ds["amount"].sum("compartment").values
    np.testing.assert_allclose(body, DOSE - ds["eliminated"].values - ds["dialysate"].values,
                               rtol=0, atol=1e-9 * DOSE)
    # before the session: depot D·e^{−ka·t}, central D·ka/(ka − k)·(e^{−kt} − e^{−ka·t});
    # during it (ka = k₂): A_c(s) = c₁·e^{−k₂s} + k₂·d₁·s·e^{−k₂s}
    d1 = DOSE * np.exp(-k2 * T1)
    c1 = DOSE * k2 / (k2 - k) * (np.exp(-k * T1) - np.exp(-k2 * T1))
    span = T2 - T1
    integral = c1 * (1 - np.exp(-k2 * span)) / k2 + k2 * d1 * (
        1 - np.exp(-k2 * span) * (1 + k2 * span)) / k2 ** 2
    np.testing.assert_allclose(float(ds["dialysis_removed"].values[0]), CLD / V * integral,
                               rtol=1e-9)


# ----------------------------------------------------------------------------- calendar

def _weekly(event: dict[str, Any], stop: str = "336 h", start: str = "0 h"
            ) -> dict[str, Any]:
    sc = scenario([{"type": "dialysis", "duration": "4 h", "clearance": "120 mL/min",
                    **event}])
    sc["time"] = {"start": start, "stop": stop, "step": "1 h"}
    sc["events"][0]["at"] = start  # the dose at the start
    return sc


def test_a_weekly_calendar_expands_to_its_sessions() -> None:
    ds = run(_weekly({"days": ["Mon", "Wed", "Fri"], "at": "8 h", "weeks": 2}))
    np.testing.assert_allclose(ds["session_start"].values, [8, 56, 104, 176, 224, 272])
    np.testing.assert_allclose(ds["session_end"].values - ds["session_start"].values, 4.0)
    assert ds.attrs["audit_status"] == "passed"
    # the same sessions written one by one remove the same drug
    one_by_one = run(scenario([{**SESSION, "at": f"{t} h", "duration": "4 h"}
                               for t in (8, 56, 104, 176, 224, 272)]
                              ) | {"time": {"stop": "336 h", "step": "1 h"}})
    np.testing.assert_allclose(ds["dialysis_removed"], one_by_one["dialysis_removed"],
                               rtol=1e-12)


def test_a_weekly_calendar_skips_days_before_the_start_and_fills_the_run() -> None:
    ds = run(_weekly({"days": ["Tue", "Sat"], "at": "13 h"}, start="40 h", stop="400 h"))
    # weeks default to the run's span (3); Tue 13 h of week 0 (37 h) precedes the start
    np.testing.assert_allclose(ds["session_start"].values, [133, 205, 301, 373])


@pytest.mark.parametrize("event, field", [
    ({"days": ["Mon", "Funday"], "at": "8 h"}, "events.1.days"),
    ({"days": ["Mon"], "at": "30 h"}, "events.1.at"),
    ({"days": ["Mon"], "at": "8 h", "weeks": 0}, "events.1.weeks"),
    ({"days": ["Mon"], "at": "8 h", "every": "48 h"}, "events.1.days"),
    ({"at": "8 h", "weeks": 2}, "events.1.weeks"),
    ({"days": ["Mon", "Tue"], "at": "8 h", "duration": "30 h"}, "events.1.duration"),
])
def test_bad_weekly_calendars_name_the_field(event: dict[str, Any], field: str) -> None:
    with pytest.raises(ScenarioError) as err:
        build_model(OneCompartment, _weekly(event)).build_domain()
    assert any(where == field for where, _ in err.value.problems), err.value.problems


def test_crrt_takes_no_calendar() -> None:
    sc = scenario([{"type": "crrt", "at": "8 h", "clearance": "1 L/h", "days": ["Mon"]}])
    with pytest.raises(ScenarioError) as err:
        build_model(OneCompartment, sc).build_domain()
    assert any(where == "events.1.days" for where, _ in err.value.problems)


def test_the_plot_shades_each_session_with_the_drug_it_removed() -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from medtransport_pk.plots import plot_one

    sc = scenario([{**SESSION, "every": "24 h", "count": 2}])
    model = build_model(OneCompartment, sc)
    ds = run(model)
    fig = Figure()
    plot_one(model, ds, fig)
    ax = fig.axes[0]
    assert len(ax.patches) == 2  # the two sessions' spans
    texts = [t.get_text() for t in ax.texts]
    for removed in ds["dialysis_removed"].values:
        assert f"−{removed:.3g} mg" in texts
