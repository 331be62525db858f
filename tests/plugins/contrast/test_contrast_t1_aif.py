"""VFA T1 maps, signal → concentration maps and AIFs from files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from medtransport.images import ImageError
from medtransport_contrast.aif import plasma_from_blood
from medtransport_contrast.aif_files import aif_from_vessel, read_aif_csv
from medtransport_contrast.signal import r1_of, spgr
from medtransport_contrast.t1_mapping import concentration_maps, vfa_t1

TR = 0.005
ANGLES = np.radians([2.0, 5.0, 10.0, 15.0, 20.0])


@pytest.mark.parametrize("method", ["linear", "nonlinear"])
def test_vfa_t1_round_trip(method: str) -> None:
    rng = np.random.default_rng(0)
    t1 = rng.uniform(0.3, 3.0, 500)
    m0 = rng.uniform(500, 2000, 500)
    s = spgr(1.0 / t1[:, None], TR, ANGLES[None, :], m0[:, None])
    fit = vfa_t1(s, ANGLES, TR, method=method)
    assert np.max(np.abs(fit["t1"] - t1) / t1) < 1e-6
    assert np.max(np.abs(fit["m0"] - m0) / m0) < 1e-6


def test_vfa_nonlinear_beats_linear_with_noise_and_reports_its_spread() -> None:
    """Gaussian noise (SNR ≈ 100 at the largest signal): the nonlinear fit's reported T1 SE
    matches the spread of 600 repeats within 20 %."""
    rng = np.random.default_rng(1)
    s = spgr(np.full((600, 1), 1 / 1.2), TR, ANGLES[None, :], 1000.0)
    noisy = s + rng.normal(0, 0.3, s.shape)
    fit = vfa_t1(noisy, ANGLES, TR)
    spread = fit["t1"].std(ddof=1)
    assert abs(np.mean(fit["t1_se"]) / spread - 1) < 0.2
    assert abs(fit["t1"].mean() - 1.2) < 4 * spread / math.sqrt(600)


def test_concentration_maps_invert_the_signal_with_the_plugins_relaxivity() -> None:
    r1 = r1_of("gadobutrol", 3.0)
    t1 = np.array([0.8, 1.4, 2.0])
    c = np.outer([1.0, 0.5, 2.0], np.concatenate([[0, 0, 0], np.linspace(0.1, 5, 20)]))
    fa = math.radians(15)
    s = spgr(1 / t1[:, None] + r1 * c, TR, fa, 1000.0)
    back = concentration_maps(s, t1, r1, TR, fa, baseline=3)
    np.testing.assert_allclose(back, c, atol=1e-9)
    # mutant: the wrong field's relaxivity (1.5 T table at 3 T) is off by r1 ratio
    wrong = concentration_maps(s, t1, r1_of("gadobutrol", 1.5), TR, fa, baseline=3)
    assert not np.allclose(wrong, c, atol=1e-3)


def test_aif_csv_with_units(tmp_path: Path) -> None:
    p = tmp_path / "aif.csv"
    p.write_text("time (min),blood [mmol/L]\n0,0\n0.5,4\n1,2\n")
    aif = read_aif_csv(p)
    assert aif.medium == "blood"
    t = np.array([0.0, 15.0, 30.0, 45.0, 60.0, 90.0])
    assert np.allclose(aif.curve(t), [0, 2, 4, 3, 2, 2])
    assert np.allclose(plasma_from_blood(aif.curve(t), 0.4)[2], 4 / 0.6)


@pytest.mark.parametrize(("text", "match"), [
    ("time,plasma\n0,0\n1,1\n", r"aif\.csv: header cell 'time' should name the time column"),
    ("time [s],plasma [mL]\n0,0\n1,1\n", r"unit 'mL' .* not a concentration unit"),
    ("time [s],tissue [mM]\n0,0\n1,1\n", r"called 'tissue'; name it 'plasma' or 'blood'"),
    ("time [s],plasma [mM]\n0,0\n1,x\n", r"aif\.csv row 3: expected two numbers"),
    ("time [s],plasma [mM]\n0,0\n0,1\n", "strictly increasing"),
])
def test_aif_csv_refusals_name_file_and_row(tmp_path: Path, text: str, match: str) -> None:
    (tmp_path / "aif.csv").write_text(text)
    with pytest.raises(ImageError, match=match):
        read_aif_csv("aif.csv", base=tmp_path)


def test_aif_from_vessel_mask() -> None:
    c = np.zeros((3, 3, 2, 5))
    c[1, 1, 0] = [0, 1, 2, 3, 4]
    c[1, 2, 0] = [0, 3, 2, 1, 0]
    vessel = np.zeros((3, 3, 2), bool)
    vessel[1, 1:, 0] = True
    np.testing.assert_allclose(aif_from_vessel(c, vessel, 0.5), [0, 4, 4, 4, 4])
    with pytest.raises(ValueError, match="empty"):
        aif_from_vessel(c, np.zeros((3, 3, 2), bool), 0.4)
