"""Whole-body agent kinetics: gadolinium mass balance over 24 h, half-lives, renal function."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import medtransport as mt
from medtransport.errors import ScenarioError
from medtransport.scenario import Patient
from medtransport.testing import build_model, failed_audits
from medtransport_contrast.renal import ckd_epi_2021, gfr
from medtransport_contrast.whole_body_model import WholeBody

NORMAL = {"weight": "70 kg", "height": "175 cm", "age": "45 year", "sex": "male",
          "serum_creatinine": "0.9 mg/dL"}
IMPAIRED = {**NORMAL, "age": "70 year", "serum_creatinine": "4.0 mg/dL"}


def _scenario(patient: dict[str, str], **parameters: Any) -> dict[str, Any]:
    return {"name": "gadobutrol 0.1 mmol/kg, 24 h", "model": "contrast.whole_body",
            "patient": patient, "parameters": {"agent": "gadobutrol", **parameters},
            "events": [{"type": "injection", "dose": "0.1 mmol/kg", "rate": "2 mL/s"}],
            "time": {"stop": "24 h", "step": "1 min"}}


def test_gadolinium_mass_balance_over_24_h_normal_and_impaired() -> None:
    """Both patients: every audit passes (the books close to 1e-9 of the 7 mmol dose) and
    injected = plasma + EES + excreted at every minute; the normal kidney clears the agent
    with t½ ≈ 1.5–2 h (label: 1.81 h), the impaired one (eGFR < 15) takes far longer."""
    out = {}
    for label, patient in (("normal", NORMAL), ("impaired", IMPAIRED)):
        ds = mt.run(_scenario(patient))
        assert ds.attrs["audit_status"] == "passed"
        dose = 0.1 * 70.0
        assert float(ds["injected"][-1]) == pytest.approx(dose, rel=1e-12)
        inside = ds["amount"].drop_sel(compartment="syringe").sum("compartment")
        total = inside + ds["excreted"].sum("route")
        np.testing.assert_allclose(total.values, ds["injected"].values, atol=1e-9 * dose)
        assert float(np.max(np.abs(ds["agent_residual"]))) <= 1e-9 * dose
        out[label] = ds
    normal, impaired = out["normal"], out["impaired"]
    assert 1.3 <= float(normal["elimination_half_life"]) <= 2.1
    assert float(impaired["elimination_half_life"]) > 5 * float(normal["elimination_half_life"])
    # Gadovist label: > 90 % excreted in the urine within 12 h at normal renal function
    at12 = normal["excreted"].sel(route="renal").sel(time=12 * 3600.0)
    assert float(at12) > 0.9 * 7.0
    # after 24 h the normal body holds < 0.1 % of the dose, the impaired one > 10 %
    def left(ds: Any) -> float:
        return float(ds["amount"].drop_sel(compartment="syringe").sum("compartment")[-1])

    assert left(normal) < 1e-3 * 7.0 and left(impaired) > 0.1 * 7.0


def test_terminal_half_life_matches_two_compartment_closed_form() -> None:
    """With fast circulation the body is a two-compartment model (plasma V1, EES V2, exchange
    Q, clearance CL); its slow disposition rate β = (k10 + k12 + k21 − √(…))/2 (Gibaldi &
    Perrier ch. 2) must match the eigen-analysis within 1 %."""
    ds = mt.run(_scenario(NORMAL, glomerular_filtration_rate="120 mL/min"))
    v1 = 0.07 * 70 * (1 - 0.42)
    v2 = 0.16 * 70
    q, cl = 20.0, 0.120 * 60
    k10, k12, k21 = cl / v1, q / v1, q / v2
    s = k10 + k12 + k21
    beta = (s - math.sqrt(s * s - 4 * k10 * k21)) / 2
    assert float(ds["elimination_half_life"]) == pytest.approx(math.log(2) / beta, rel=0.01)
    # and the concentration decays at that rate between 8 and 20 h
    c = ds["plasma_concentration"].sel(pool="venous_plasma")
    slope = math.log(float(c.sel(time=20 * 3600.0)) / float(c.sel(time=8 * 3600.0))) / 12
    assert -slope == pytest.approx(beta, rel=0.01)


def test_ckd_epi_2021_equation() -> None:
    """At SCr = κ the equation is 142·0.9938^age (×1.012 female); de-indexed by BSA/1.73."""
    male = Patient(weight="70 kg", age="50 year", sex="male", serum_creatinine="0.9 mg/dL")
    assert ckd_epi_2021(male).m_as("mL/min") == pytest.approx(142 * 0.9938 ** 50)
    female = Patient(weight="60 kg", age="30 year", sex="female", serum_creatinine="1.4 mg/dL")
    expected = 142 * 2.0 ** -1.2 * 0.9938 ** 30 * 1.012
    assert ckd_epi_2021(female).m_as("mL/min") == pytest.approx(expected)
    tall = Patient(**NORMAL)
    bsa = math.sqrt(175 * 70 / 3600)
    assert gfr(tall).m_as("mL/min") == pytest.approx(ckd_epi_2021(tall).m_as("mL/min")
                                                     * bsa / 1.73)
    # creatinine in µmol/L converts with 113.12 g/mol
    si = Patient(weight="70 kg", age="50 year", sex="male", serum_creatinine="79.56 umol/L")
    assert ckd_epi_2021(si).m_as("mL/min") == pytest.approx(142 * 0.9938 ** 50, rel=1e-3)


def test_injection_rate_sets_the_duration_and_dose_units() -> None:
    sc = _scenario(NORMAL)
    model = build_model(WholeBody, sc)
    (inj,) = model.system.injections
    # 7 mmol of a 1.0 M formulation = 7 mL at 2 mL/s = 3.5 s
    assert inj.amount == pytest.approx(7.0) and inj.duration == pytest.approx(3.5)
    assert model.initial_amounts()["agent"].m_as("mmol") == pytest.approx(7.0)
    sc["events"] = [{"type": "injection", "dose": "15 mL", "duration": "10 s"}]
    sc["parameters"]["agent"] = "gadoterate"
    (inj,) = build_model(WholeBody, sc).system.injections
    assert inj.amount == pytest.approx(7.5) and inj.duration == 10.0


@pytest.mark.parametrize("events, field", [
    ([], "events"),
    ([{"type": "injection", "dose": "5 mL/s"}], "events.0.dose"),
    ([{"type": "injection", "dose": "7 mmol", "rate": "2 mL/s", "duration": "3 s"}],
     "events.0.rate"),
    ([{"type": "injection", "dose": "7 mmol", "speed": "2 mL/s"}], "events.0.speed"),
])
def test_bad_injections_are_refused_by_field(events: list, field: str) -> None:
    sc = _scenario(NORMAL)
    sc["events"] = events
    with pytest.raises(ScenarioError) as err:
        mt.run(sc)
    assert any(p == field for p, _ in err.value.problems), err.value.problems


def test_gfr_needs_creatinine_or_a_value() -> None:
    with pytest.raises(ScenarioError, match=r"patient\.serum_creatinine"):
        mt.run(_scenario({"weight": "70 kg", "age": "40 year", "sex": "male"}))


class UnbookedLoss(WholeBody):
    """Mutant: the venous plasma loses agent by a route the ledger does not claim."""

    def build_domain(self) -> Any:
        domain = super().build_domain()
        original = self.system.rate_matrix

        def leaky() -> np.ndarray:
            k = original()
            i = self.system.states.index("venous_plasma")
            k[i, i] -= 1e-4  # 1e-4 /s vanishes: no state receives it
            return k

        self.system.rate_matrix = leaky  # type: ignore[method-assign]
        return domain


def test_unbooked_loss_is_caught() -> None:
    names = failed_audits(UnbookedLoss, _scenario(NORMAL))
    assert "mass_balance[agent]" in names and "injected_accounted[agent]" in names
