"""Arterial input functions against OSIPI's reference curves and Parker's paper."""

from __future__ import annotations

import numpy as np
import pytest
from contrast_osipi_data import load_aif, load_dce

from medtransport.errors import ScenarioError
from medtransport_contrast.aif import MeasuredAIF, ParkerAIF, parker_blood, plasma_from_blood
from medtransport_contrast.dce_model import DCE


def test_parker_reproduces_osipi_reference_at_osipi_tolerance() -> None:
    """OSIPI's population-AIF test: atol 1e-4 mM, rtol 0.01, every point of every curve."""
    curves = load_aif("ParkerAIF_ref")
    assert len(curves) == 11
    for label, (t_min, cb, _) in curves.items():
        ours = parker_blood(t_min * 60.0)
        np.testing.assert_allclose(ours, cb, atol=1e-4, rtol=0.01, err_msg=label)
        # and far tighter: it is the same formula
        np.testing.assert_allclose(ours, cb, atol=1e-12, rtol=1e-12, err_msg=label)


def test_delayed_parker_reproduces_osipi_reference() -> None:
    """OSIPI: atol 0.1 mM, rtol 0.1 (loose, for resampling implementations); ours re-evaluates
    the formula, so it is held to 1e-12 as well, delays that are not whole samples included."""
    curves = load_aif("ParkerAIF_ref_with_delay")
    assert len(curves) == 9
    for label, (t_min, cb, delay) in curves.items():
        ours = ParkerAIF(kind="parker", delay=f"{delay} s").blood(t_min * 60.0)
        np.testing.assert_allclose(ours, cb, atol=0.1, rtol=0.1, err_msg=label)
        np.testing.assert_allclose(ours, cb, atol=1e-12, rtol=1e-12, err_msg=label)


def test_parker_landmarks_from_the_paper() -> None:
    """REFERENCES §2: peak ≈ 6.07 mM at ≈ 10.4 s; C_b(0) ≈ 0.080 mM."""
    t = np.linspace(0.0, 60.0, 600_001)
    cb = parker_blood(t)
    assert cb.max() == pytest.approx(6.07, abs=0.01)
    assert t[cb.argmax()] == pytest.approx(10.4, abs=0.1)
    assert cb[0] == pytest.approx(0.080, abs=0.001)


def test_plasma_aif_of_osipi_simulations_is_parker_over_one_minus_hct() -> None:
    """The simulated 2CXM/Patlak sets' plasma AIF: Parker blood from 10 s, Hct 0.42."""
    row = load_dce("2cxm_sd_0.001_delay_0")[0]
    t = row["t"]
    ours = np.where(t >= 10.0, plasma_from_blood(parker_blood(t - 10.0), 0.42), 0.0)
    np.testing.assert_allclose(ours, row["cp_aif"], atol=1e-5, rtol=1e-5)
    # treating the blood curve as plasma is off by the factor 1 − Hct
    wrong = np.where(t >= 10.0, parker_blood(t - 10.0), 0.0)
    assert np.max(np.abs(wrong - row["cp_aif"])) > 1.0


def test_measured_aif_interpolates_with_units() -> None:
    aif = MeasuredAIF(kind="measured", medium="blood", time_units="min",
                      concentration_units="umol/L", times=[0.0, 1.0, 2.0],
                      concentrations=[0.0, 1000.0, 500.0], delay="30 s")
    t = np.array([0.0, 30.0, 60.0, 90.0, 150.0, 600.0])
    # delayed by 30 s: 0 until 30 s, 0.5 mM at 60 s (half way to 1 min), held at the end
    np.testing.assert_allclose(aif.curve(t), [0.0, 0.0, 0.5, 1.0, 0.5, 0.5])


@pytest.mark.parametrize("bad, field", [
    ({"time_units": "mM"}, "time_units"),
    ({"concentration_units": "s"}, "concentration_units"),
    ({"times": [0.0, 0.0]}, "increasing"),
    ({"concentrations": [0.0]}, "concentrations"),
])
def test_measured_aif_refuses_bad_tables(bad: dict, field: str) -> None:
    params = {"kinetic_model": "tofts", "ktrans": "0.1 1/min", "ve": 0.2,
              "aif": {"kind": "measured", "medium": "plasma", "times": [0.0, 1.0],
                      "concentrations": [0.0, 1.0], **bad}}
    with pytest.raises(ScenarioError) as err:
        DCE.validate_params(params)
    text = str(err.value)
    assert "parameters.aif" in text and field in text
