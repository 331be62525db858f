"""contrast.dce as a scenario: OSIPI curves through the whole model, unit handling, the
tissue's books, and the mutants the issue names."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from contrast_osipi_data import load_dce

import medtransport as mt
from medtransport.errors import ScenarioError
from medtransport.testing import build_model, failed_audits
from medtransport_contrast.dce_model import DCE
from medtransport_contrast.tissue import TissueSolution, solve_tissue

OSIPI_TIME = {"start": "0.25 s", "stop": "299.75 s", "step": "0.5 s"}


def _osipi_2cxm(row: dict[str, Any]) -> dict[str, Any]:
    """The OSIPI 2CXM case as a scenario: Parker from 10 s (+ the arterial delay), Hct 0.42,
    Fp written as the file gives it, in mL/min/100 mL."""
    return {"name": row["label"], "model": "contrast.dce",
            "parameters": {"kinetic_model": "two_compartment_exchange",
                           "plasma_flow": f"{row['fp']} mL/min/100 mL",
                           "permeability_surface": f"{row['ps']} 1/min",
                           "vp": row["vp"], "ve": row["ve"],
                           "aif": {"kind": "parker", "hematocrit": 0.42,
                                   "delay": f"{10 + row['arterial_delay']} s"}},
            "time": OSIPI_TIME}


def _residual(ds: Any, row: dict[str, Any]) -> np.ndarray:
    np.testing.assert_allclose(ds["time"].values, row["t"], atol=1e-9)
    return ds["tissue_concentration"].values - row["C_t"]


@pytest.mark.parametrize("name", ["2cxm_sd_0.001_delay_0", "2cxm_sd_0.001_delay_5"])
def test_dce_scenarios_reproduce_osipi_2cxm_to_the_noise(name: str) -> None:
    for row in load_dce(name)[::5]:
        ds = mt.run(_osipi_2cxm(row))
        assert ds.attrs["audit_status"] == "passed"
        res = _residual(ds, row)
        assert abs(res.mean()) <= 4 * 0.001 / np.sqrt(res.size) and res.std() <= 0.0011, \
            row["label"]


def test_dce_patlak_scenario_reproduces_osipi_patlak() -> None:
    for row in load_dce("patlak_sd_0.02_delay_5")[::4]:
        sc = {"name": row["label"], "model": "contrast.dce",
              "parameters": {"kinetic_model": "patlak", "ktrans": f"{row['ps']} 1/min",
                             "vp": row["vp"],
                             "aif": {"kind": "parker", "hematocrit": 0.42,
                                     "delay": f"{10 + row['arterial_delay']} s"}},
              "time": OSIPI_TIME}
        res = _residual(mt.run(sc), row)
        assert abs(res.mean()) <= 3 * 0.02 / np.sqrt(res.size) and res.std() <= 0.022


# --------------------------------------------------------------------- mutants (issue 4)

class FlowUnitSlip(DCE):
    """Mutant: a flow given per 100 mL read as per mL (the slip the issue names)."""

    def rate(self, name: str) -> float:
        return super().rate(name) * (100.0 if name == "plasma_flow" else 1.0)


class BloodAsPlasma(DCE):
    """Mutant: the whole-blood Parker AIF used as the plasma input."""

    def plasma_of_blood(self, blood: np.ndarray, hct: float) -> np.ndarray:
        return np.asarray(blood, dtype=float)


class LeakyEES(DCE):
    """Mutant: the EES loses 1 %/min by a route nobody books."""

    def kinetics(self, t: np.ndarray, cp: np.ndarray) -> TissueSolution:
        booked = super().kinetics(t, cp)
        leaky = solve_tissue("extended_tofts", t, cp, ktrans=self.rate("ktrans"),
                             ve=self.fraction("ve") * 1.0, vp=self.fraction("vp"),
                             e0=float(self.params.initial_ees_concentration.m_as("mM")))
        leaky.ees = leaky.ees * np.exp(-0.01 / 60 * (t - t[0]))
        return TissueSolution(leaky.plasma, leaky.ees, booked.inflow, booked.outflow)


@pytest.mark.parametrize("mutant", [FlowUnitSlip, BloodAsPlasma])
def test_unit_mutants_are_caught_by_the_reference_data(mutant: type[DCE]) -> None:
    """Both mutants pass every audit (their books balance — a wrong input is still booked),
    so the OSIPI validation is what catches them: residuals far beyond the 0.001 mM noise."""
    row = load_dce("2cxm_sd_0.001_delay_0")[3]
    good = _residual(mt.run(_osipi_2cxm(row)), row)
    assert good.std() <= 0.0011
    ds = mt.run(build_model(mutant, _osipi_2cxm(row)))
    assert ds.attrs["audit_status"] == "passed"
    bad = _residual(ds, row)
    assert bad.std() > 10 * 0.001 and np.abs(bad).max() > 0.05


def test_leaky_ees_is_caught_by_the_mass_balance_audit() -> None:
    sc = DCE.example_scenarios()[0]  # extended Tofts with agent left from an earlier dose
    assert "mass_balance[agent]" in failed_audits(LeakyEES, sc)


# --------------------------------------------------------------------- units and errors

def test_flow_units_convert_per_volume_and_per_mass() -> None:
    """25 mL/min/100 mL = 0.25 /min; 60 mL/min/100 g × 1.04 g/mL = 0.624 /min."""
    base = {"kinetic_model": "two_compartment_exchange", "permeability_surface": "0.1 1/min",
            "vp": "5 mL/100 mL", "ve": 0.2, "aif": {"kind": "parker"}}
    sc = {"name": "units", "model": "contrast.dce", "time": {"stop": "10 s", "step": "1 s"}}
    per_volume = build_model(DCE, {**sc, "parameters": {**base,
                                                        "plasma_flow": "25 mL/min/100 mL"}})
    assert per_volume.rate("plasma_flow") == pytest.approx(0.25 / 60)
    assert per_volume.fraction("vp") == pytest.approx(0.05)
    per_mass = build_model(DCE, {**sc, "parameters": {**base,
                                                      "plasma_flow": "60 mL/min/100 g"}})
    assert per_mass.rate("plasma_flow") == pytest.approx(0.6 * 1.04 / 60)
    same = build_model(DCE, {**sc, "parameters": {**base, "plasma_flow": "0.25 1/min"}})
    assert same.rate("plasma_flow") == per_volume.rate("plasma_flow")


@pytest.mark.parametrize("change, field", [
    ({"kinetic_model": "extended_tofts"}, "parameters.vp"),
    ({"plasma_flow": "20 mL/min/100 mL"}, "parameters.plasma_flow"),
    ({"ve": 0.0}, "parameters.ve"),
])
def test_missing_or_foreign_parameters_name_their_field(change: dict, field: str) -> None:
    params = {"kinetic_model": "tofts", "ktrans": "0.1 1/min", "ve": 0.2,
              "aif": {"kind": "parker"}, **change}
    sc = {"name": "x", "model": "contrast.dce", "parameters": params,
          "time": {"stop": "10 s", "step": "1 s"}}
    with pytest.raises(ScenarioError) as err:
        mt.run(sc)
    assert field in [p for p, _ in err.value.problems]


def test_injection_events_need_the_whole_body_aif() -> None:
    sc = {"name": "x", "model": "contrast.dce",
          "parameters": {"kinetic_model": "tofts", "ktrans": "0.1 1/min", "ve": 0.2,
                         "aif": {"kind": "parker"}},
          "events": [{"type": "injection", "dose": "0.1 mmol/kg"}],
          "time": {"stop": "10 s", "step": "1 s"}}
    with pytest.raises(ScenarioError, match="whole_body"):
        mt.run(sc)


def test_signal_outputs_follow_fast_exchange_and_spgr() -> None:
    """The model's R1 and enhancement recomputed from its C_t with the cited r1 (gadobutrol,
    3 T: 5.0 /s/mM) and the SPGR formula written out here."""
    ds = mt.run(DCE.example_scenarios()[0])
    ct = ds["tissue_concentration"].values
    r1 = 1 / 1.2 + 5.0 * ct
    np.testing.assert_allclose(ds["tissue_r1"].values, r1, rtol=1e-12)
    a, tr = np.radians(15.0), 0.004
    e1 = np.exp(-tr * r1)
    s = np.sin(a) * (1 - e1) / (1 - np.cos(a) * e1)
    e10 = np.exp(-tr / 1.2)
    s0 = np.sin(a) * (1 - e10) / (1 - np.cos(a) * e10)
    np.testing.assert_allclose(ds["relative_enhancement"].values, (s - s0) / s0, rtol=1e-10)


def test_ct_attenuation_and_whole_body_aif() -> None:
    ds = mt.run(DCE.example_scenarios()[1])
    assert ds["tissue_attenuation"].attrs["units"] == "HU"
    k = 25.0 * 126.904 / 1000.0  # HU per mM of iodine
    np.testing.assert_allclose(ds["tissue_enhancement"].values,
                               k * ds["tissue_concentration"].values, rtol=1e-12)
    wb = mt.run(DCE.example_scenarios()[3])
    cp = wb["aif_plasma"].values
    # the whole-body AIF: nothing before the delayed first pass, a peak of a few mM
    assert cp[0] == 0.0 and 1.0 < cp.max() < 20.0
