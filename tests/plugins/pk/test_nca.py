"""Non-compartmental analysis (REFERENCES §1) on Theoph subject 1, on exact exponentials and on
profiles where the terminal slope cannot be estimated."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from medtransport.units import Q_
from medtransport_pk.nca import nca

DATA = Path(__file__).parents[2] / "data" / "theoph.csv"




def subject(number: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Times (h), concentrations (mg/L) and total dose (mg) of one Theoph subject."""
    with DATA.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(r["Subject"]) == number]
    t = np.array([float(r["Time"]) for r in rows])
    c = np.array([float(r["conc"]) for r in rows])
    return t, c, float(rows[0]["Dose"]) * float(rows[0]["Wt"])


def test_theoph_subject_1_cmax_tmax():
    t, c, dose = subject(1)
    r = nca(Q_(t, "h"), Q_(c, "mg/L"), dose=Q_(dose, "mg"))
    assert r.cmax.m_as("mg/L") == 10.5 and r.tmax.m_as("h") == 1.12  # REFERENCES §1
    assert r.clast.m_as("mg/L") == 3.28 and r.tlast.m_as("h") == 24.37


# Subject 1 written out: (t, C) = (0, 0.74) (0.25, 2.84) (0.57, 6.57) (1.12, 10.5) (2.02, 9.66)
# (3.82, 8.58) (5.10, 8.36) (7.03, 7.47) (9.05, 6.89) (12.12, 5.94) (24.37, 3.28).
RISING = (0.25 * (0.74 + 2.84) / 2 + 0.32 * (2.84 + 6.57) / 2 + 0.55 * (6.57 + 10.5) / 2)
LINEAR_FALLING = (0.90 * (10.5 + 9.66) / 2 + 1.80 * (9.66 + 8.58) / 2 + 1.28 * (8.58 + 8.36) / 2
                  + 1.93 * (8.36 + 7.47) / 2 + 2.02 * (7.47 + 6.89) / 2
                  + 3.07 * (6.89 + 5.94) / 2 + 12.25 * (5.94 + 3.28) / 2)
LOG_FALLING = (0.90 * (10.5 - 9.66) / math.log(10.5 / 9.66)
               + 1.80 * (9.66 - 8.58) / math.log(9.66 / 8.58)
               + 1.28 * (8.58 - 8.36) / math.log(8.58 / 8.36)
               + 1.93 * (8.36 - 7.47) / math.log(8.36 / 7.47)
               + 2.02 * (7.47 - 6.89) / math.log(7.47 / 6.89)
               + 3.07 * (6.89 - 5.94) / math.log(6.89 / 5.94)
               + 12.25 * (5.94 - 3.28) / math.log(5.94 / 3.28))


def test_theoph_subject_1_auc_by_hand():
    """Both AUC rules against the explicit trapezoid sums above (rel 1e-12), and the published
    NCA of the same profile (Bae & Lee, "Noncompartmental Analysis", vignette of the R package
    NonCompart, 2018): linear AUClast 148.923 h·mg/L; best fit on the last 3 points,
    λz 0.048457 /h, t½ 14.30438 h, adjusted R² 0.9999995."""
    t, c, dose = subject(1)
    lin = nca(Q_(t, "h"), Q_(c, "mg/L"), dose=Q_(dose, "mg"), auc_method="linear")
    log = nca(Q_(t, "h"), Q_(c, "mg/L"), dose=Q_(dose, "mg"))
    assert lin.auc_last.m_as("h*mg/L") == pytest.approx(RISING + LINEAR_FALLING, rel=1e-12)
    assert log.auc_last.m_as("h*mg/L") == pytest.approx(RISING + LOG_FALLING, rel=1e-12)
    assert lin.auc_last.m_as("h*mg/L") == pytest.approx(148.923, abs=5e-4)
    assert log.lambda_z_points == 3
    assert log.lambda_z.m_as("1/h") == pytest.approx(0.048457, abs=5e-7)
    assert log.half_life.m_as("h") == pytest.approx(14.30438, abs=5e-6)
    assert log.lambda_z_adjusted_r2 == pytest.approx(0.9999995, abs=5e-8)
    lam = log.lambda_z.m_as("1/h")
    auc_inf = RISING + LOG_FALLING + 3.28 / lam
    assert log.auc_inf.m_as("h*mg/L") == pytest.approx(auc_inf, rel=1e-12)
    assert log.percent_auc_extrapolated.m_as("percent") == pytest.approx(
        100 * (3.28 / lam) / auc_inf, rel=1e-12)
    assert log.clearance.m_as("L/h") == pytest.approx(dose / auc_inf, rel=1e-12)  # CL/F
    assert log.volume_z.m_as("L") == pytest.approx(dose / (lam * auc_inf), rel=1e-12)


C0, K = 12.5, 0.173  # mg/L, 1/h
UNEVEN = np.array([0.0, 0.3, 0.7, 1.6, 2.9, 4.4, 7.5, 11.0, 16.3, 24.0])


@pytest.mark.parametrize("times", [UNEVEN, UNEVEN[1:]], ids=["from-0", "back-extrapolated"])
def test_mono_exponential_is_exact_with_log_down(times):
    """The log trapezoid is exact for an exponential, so AUC_inf = C0/k and λz = k to 1e-12,
    also when C0 has to be back-extrapolated from the first two samples (IV bolus)."""
    c = C0 * np.exp(-K * times)
    volume = 8.0
    r = nca(Q_(times, "h"), Q_(c, "mg/L"), dose=Q_(C0 * volume, "mg"), route="iv_bolus")
    assert r.auc_inf.m_as("h*mg/L") == pytest.approx(C0 / K, rel=1e-12)
    assert r.lambda_z.m_as("1/h") == pytest.approx(K, rel=1e-12)
    assert r.lambda_z_points == len(times)  # all fits tie at R²_adj = 1: the most points win
    assert r.clearance.m_as("L/h") == pytest.approx(K * volume, rel=1e-12)
    assert r.volume_z.m_as("L") == pytest.approx(volume, rel=1e-12)
    linear = nca(Q_(times, "h"), Q_(c, "mg/L"), route="iv_bolus", auc_method="linear")
    # The chord lies above a convex decline: the linear rule overestimates.
    assert linear.auc_inf.m_as("h*mg/L") > C0 / K
    assert linear.auc_last.m_as("h*mg/L") > r.auc_last.m_as("h*mg/L")


@pytest.mark.parametrize(("t", "c"), [
    ([0.0, 1.0, 2.0, 3.0], [0.0, 5.0, 4.0, 3.0]),                     # 2 points after Cmax
    ([0.0, 1.0, 2.0, 4.0, 8.0, 12.0], [0.0, 5.0, 4.0, 4.5, 4.6, 4.8]),  # rising terminal phase
    ([0.0, 1.0, 2.0], [0.0, 0.0, 0.0]),                               # nothing measurable
])
def test_lambda_z_not_estimable_gives_nan_quantities(t, c):
    r = nca(Q_(np.array(t), "h"), Q_(np.array(c), "mg/L"), dose=Q_(100.0, "mg"))
    assert r.lambda_z_points == 0 and math.isnan(r.lambda_z_adjusted_r2)
    for q, unit in [(r.lambda_z, "1/h"), (r.half_life, "h"), (r.auc_inf, "h*mg/L"),
                    (r.percent_auc_extrapolated, "percent"), (r.clearance, "L/h"),
                    (r.volume_z, "L")]:
        assert math.isnan(q.m_as(unit))
    assert math.isfinite(r.auc_last.m_as("h*mg/L"))


def test_without_dose_clearance_is_absent():
    t, c, _ = subject(1)
    r = nca(Q_(t, "h"), Q_(c, "mg/L"))
    assert r.clearance is None and r.volume_z is None
    names = [row[0] for row in r.to_table()]
    assert "clearance" not in names and "auc_inf" in names


@pytest.mark.parametrize("conc_unit", ["ug/mL", "ng/mL"])
def test_units_do_not_change_the_answer(conc_unit):
    """Minutes and µg/mL (or ng/mL) give the same results as hours and mg/L (rel 1e-12)."""
    t, c, dose = subject(1)
    ref = nca(Q_(t, "h"), Q_(c, "mg/L"), dose=Q_(dose, "mg"))
    other = nca(Q_(t, "h").to("min"), Q_(c, "mg/L").to(conc_unit), dose=Q_(dose, "mg"))
    for name, unit in [("auc_last", "h*mg/L"), ("auc_inf", "h*mg/L"), ("lambda_z", "1/h"),
                       ("half_life", "h"), ("cmax", "mg/L"), ("tmax", "h"),
                       ("clearance", "L/h"), ("volume_z", "L")]:
        assert getattr(other, name).m_as(unit) == pytest.approx(
            getattr(ref, name).m_as(unit), rel=1e-12), name
    assert other.lambda_z_points == ref.lambda_z_points


def test_table_rows_carry_units():
    t, c, dose = subject(1)
    rows = {name: (value, unit) for name, value, unit in
            nca(Q_(t, "h"), Q_(c, "mg/L"), dose=Q_(dose, "mg")).to_table()}
    assert rows["cmax"][0] == 10.5 and Q_(1.0, rows["cmax"][1]) == Q_(1.0, "mg/L")
    assert Q_(1.0, rows["auc_inf"][1]) == Q_(1.0, "h*mg/L")
    assert Q_(1.0, rows["clearance"][1]) == Q_(1.0, "L/h")
    assert rows["lambda_z_points"] == (3.0, "")


def test_rejects_unsorted_times():
    with pytest.raises(ValueError, match="increasing"):
        nca(Q_(np.array([0.0, 2.0, 1.0]), "h"), Q_(np.array([1.0, 2.0, 3.0]), "mg/L"))
