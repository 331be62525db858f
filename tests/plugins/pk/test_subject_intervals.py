"""NCA per dosing interval for every subject of a data set: of the predictions and of the
observed DV. Expected values are exact formulas (a one-compartment IV bolus at steady state),
trapezoid sums worked out by hand, the vancomycin generator's own exact solution, or the data
file's numbers — not the code under test."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from medtransport.runner import run
from medtransport.scenario import load_scenario
from medtransport_pk.dataset import compartment_numbers, read_dataset, read_nonmem
from medtransport_pk.observed import observed_interval_nca
from medtransport_pk.subject_intervals import grouped_nca

DATA = Path(__file__).parents[3] / "examples" / "data"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "d.csv"
    path.write_text(text)
    return path


def bolus_scenario(tmp_path: Path, text: str, step: str = "30 min") -> dict:
    write(tmp_path, text)
    return {"name": "q12h", "model": "pk.one_compartment",
            "parameters": {"clearance": "2 L/h", "central_volume": "20 L"},
            "data": {"path": str(tmp_path / "d.csv"), "units": {
                "TIME": "h", "AMT": "mg", "II": "h", "DV": "mg/L"}},
            "time": {"stop": "48 h", "step": step}}


def test_iv_bolus_q12h_at_steady_state_gives_dose_over_clearance(tmp_path: Path) -> None:
    # C(t) = D/V·e^{−kt}/(1 − e^{−kτ}) over each interval at steady state, k = CL/V = 0.1/h:
    # AUCτ = D/CL = 50 h·mg/L exactly; the log-down trapezoid is exact for one exponential, so
    # only rounding separates the two (tolerance 1e-9 relative). Two subjects, the second
    # with twice the dose, so that subjects are not mixed up.
    text = ("ID,TIME,AMT,II,ADDL,SS,CMT,DV\n"
            "1,0,100,12,3,1,1,.\n1,6,.,.,.,.,1,3\n"
            "2,0,200,12,3,1,1,.\n2,6,.,.,.,.,1,6\n")
    ds = run(bolus_scenario(tmp_path, text))
    k, tau = 0.1, 12.0
    for p, dose in ((0, 100.0), (1, 200.0)):
        mine = ds["nca_interval_patient"].values == p
        assert ds["nca_interval_number"].values[mine].tolist() == [0, 1, 2, 3]
        np.testing.assert_allclose(ds["nca_interval_auc_tau"].values[mine], dose / 2.0,
                                   rtol=1e-9)
        np.testing.assert_allclose(ds["nca_interval_clearance"].values[mine], 2.0, rtol=1e-9)
        assert ds["nca_interval_at_steady_state"].values[mine].tolist() == [1, 1, 1, 1]
        peak = dose / 20.0 / (1 - math.exp(-k * tau))
        np.testing.assert_allclose(ds["nca_interval_cmax"].values[mine], peak, rtol=1e-9)
        np.testing.assert_allclose(ds["nca_interval_ctrough"].values[mine],
                                   peak * math.exp(-k * tau), rtol=1e-9)
        np.testing.assert_allclose(ds["nca_interval_cavg"].values[mine], dose / 2 / tau,
                                   rtol=1e-9)
        np.testing.assert_allclose(ds["nca_interval_accumulation_ratio"].values[mine], 1.0,
                                   rtol=1e-9)
        assert np.all(ds["nca_interval_tmax"].values[mine] == 0.0)
    assert ds["nca_interval_auc_tau"].attrs["units"] == "mg/L*h"
    assert ds["nca_interval_clearance"].attrs["units"] == "L/h"


def test_doses_off_the_output_grid_and_accumulation(tmp_path: Path) -> None:
    # doses at 0 and 10 h (no steady state) on a 4 h grid: each start is put on the grid and
    # the end point is the trough just before the next dose. AUCτ of the first interval =
    # D/CL·(1 − e^{−kτ}) exactly (log trapezoids of one exponential), the second adds the
    # first dose's tail: R_ac = 1 + e^{−kτ}.
    text = "ID,TIME,AMT,II,ADDL,CMT,DV\n1,0,100,10,1,1,.\n1,5,.,.,.,1,3\n"
    ds = run(bolus_scenario(tmp_path, text, step="4 h"))
    e = math.exp(-0.1 * 10)
    np.testing.assert_allclose(ds["nca_interval_start"].values, [0.0, 10.0])
    np.testing.assert_allclose(ds["nca_interval_auc_tau"].values,
                               [50 * (1 - e), 50 * (1 - e) * (1 + e)], rtol=1e-9)
    np.testing.assert_allclose(ds["nca_interval_accumulation_ratio"].values, [1.0, 1 + e],
                               rtol=1e-9)
    np.testing.assert_allclose(ds["nca_interval_cmin"].values, [5 * e, 5 * e * (1 + e)],
                               rtol=1e-9)
    assert ds["nca_interval_at_steady_state"].values.tolist() == [0, 0]


def test_grouped_nca_against_trapezoids_by_hand() -> None:
    # group 0: (0, 1), (1, 3), (3, 1.5): rise linear 1·(1 + 3)/2 = 2, fall log
    # 2·(3 − 1.5)/ln 2 = 4.328085; group 1 one point; group 2: flat (0, 2), (4, 2) = 8
    group = np.array([0, 0, 0, 1, 2, 2])
    t = np.array([0.0, 1.0, 3.0, 2.0, 0.0, 4.0])
    c = np.array([1.0, 3.0, 1.5, 7.0, 2.0, 2.0])
    out = grouped_nca(group, t, c, 3)
    assert out.auc[0] == pytest.approx(2.0 + 3.0 / math.log(2.0), rel=1e-12)
    assert np.isnan(out.auc[1]) and np.isnan(out.cmin[1])
    assert out.auc[2] == pytest.approx(8.0, rel=1e-12)
    assert out.cmax.tolist() == [3.0, 7.0, 2.0] and out.tmax.tolist() == [1.0, 2.0, 0.0]
    assert out.cmin[0] == 1.0 and out.n.tolist() == [3, 1, 2]
    linear = grouped_nca(group, t, c, 3, method="linear")
    assert linear.auc[0] == pytest.approx(2.0 + 2.0 * (3.0 + 1.5) / 2, rel=1e-12)


def test_observed_nca_per_interval_by_hand(tmp_path: Path) -> None:
    # doses at 0 and 12 h (II 12, ADDL 1): interval 0 has samples at 1, 4, 10 h; interval 1
    # one sample (too few: only the subject's Cmax/Tmax/Clast/Tlast cover it)
    text = ("ID,TIME,AMT,II,ADDL,DV,CMT\n5,0,100,12,1,.,1\n5,1,.,.,.,8,1\n5,4,.,.,.,4,1\n"
            "5,10,.,.,.,1,1\n5,13,.,.,.,9,1\n")
    table = read_nonmem(write(tmp_path, text), {"path": "d.csv", "units": {
        "AMT": "mg", "DV": "mg/L", "II": "h"}}, compartments=compartment_numbers(0, False))
    ds = observed_interval_nca(table)
    assert ds.sizes["observed_interval"] == 1
    row = ds.isel(observed_interval=0)
    assert int(row["observed_interval_number"]) == 0 and int(row["observed_interval_n"]) == 3
    # log-down twice: 3·(8 − 4)/ln 2 + 6·(4 − 1)/ln 4
    assert float(row["observed_interval_auc"]) == pytest.approx(
        12 / math.log(2) + 18 / math.log(4), rel=1e-12)
    assert float(row["observed_interval_cmax"]) == 8.0
    assert float(row["observed_interval_tmax"]) == 1.0
    assert float(row["observed_interval_cmin"]) == 1.0
    assert row["observed_interval_auc"].attrs["units"] == "h*mg/L"
    # with a minimum of one observation the second interval has its row, Tmax since its dose
    one = observed_interval_nca(table, min_points=1)
    assert one["observed_interval_tmax"].values.tolist() == [1.0, 1.0]
    assert one["observed_interval_cmax"].values.tolist() == [8.0, 9.0]


def _generator():
    spec = importlib.util.spec_from_file_location("make_vancomycin", DATA / "make_vancomycin.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_vancomycin_observed_intervals_from_the_data_file() -> None:
    # every subject's samples (trough, peak, trough) fall into three different intervals:
    # no interval has two, so no AUC row; one sample each gives Tmax since that dose
    table = read_dataset(load_scenario(DATA / "vancomycin.yaml"))
    assert table is not None
    assert observed_interval_nca(table).sizes["observed_interval"] == 0
    one = observed_interval_nca(table, min_points=1)
    first = one["observed_interval_subject"].values == 0
    assert one["observed_interval_cmax"].values[first].tolist() == [13.2, 41.0, 15.1]
    assert one["observed_interval_tmax"].values[first].tolist() == [11.5, 2.0, 11.5]
    assert one["observed_interval_number"].values[first].tolist() == [3, 4, 5]


def test_vancomycin_predicted_intervals_match_the_generators_exact_solution() -> None:
    # troughs exactly (the generator's matrix exponentials, rtol 1e-9); AUCτ within the
    # trapezoid error of a 15-min grid: 0.5 % (each infusion's end falls between grid points)
    gen = _generator()
    ds = run(DATA / "vancomycin.yaml")
    for i, (wt, age, sex, scr) in enumerate(gen.SUBJECTS, start=1):
        cl = 4.6 * (wt / 70) ** 0.75 * (0.1 + 0.9 * gen.crcl(wt, age, sex, scr) / 100)
        v1, q, v2 = 30.0 * wt / 70, 6.9 * (wt / 70) ** 0.75, 40.0 * wt / 70
        kmat = np.array([[-(cl + q) / v1, q / v2], [q / v1, -q / v2]])
        load, maint = gen.rounded(25 * wt), gen.rounded(15 * wt)
        infusions = [(0.0, 2.0, load / 2)]
        if i == 8:
            infusions += [(12.0 + 12 * j, maint / 1000, 1000.0) for j in range(4)]
            infusions += [(60.0 + 12 * j, 1.0, 750.0) for j in range(2)]
        else:
            infusions += [(12.0 + 12 * j, maint / 1000, 1000.0) for j in range(6)]
        mine = ds["nca_interval_patient"].values == i - 1
        starts = ds["nca_interval_start"].values[mine]
        assert starts.tolist() == [0.0, 12.0, 24.0, 36.0, 48.0, 60.0]
        ends = starts + 12.0
        troughs = np.array(gen.central(list(ends), infusions, kmat, v1))
        np.testing.assert_allclose(ds["nca_interval_ctrough"].values[mine], troughs,
                                   rtol=1e-9)
        for s, auc in zip(starts, ds["nca_interval_auc_tau"].values[mine], strict=True):
            # a 1.5-min reference grid: its trapezoid error (about 1e-7 relative against a
            # 9-s grid) is far below the 0.5 % asserted, at a tenth of the generator's
            # matrix exponentials
            fine = np.linspace(s, s + 12.0, 481)
            c = np.array(gen.central(list(fine), infusions, kmat, v1))
            exact = float(np.sum((c[1:] + c[:-1]) / 2 * np.diff(fine)))
            assert auc == pytest.approx(exact, rel=5e-3)
        doses = [load] + [maint] * (4 if i == 8 else 5) + ([750.0] if i == 8 else [])
        np.testing.assert_allclose(ds["nca_interval_dose"].values[mine], doses)
