"""Dose recommendation: AUC24 from the individual clearance, PTA against its closed form,
the CLI, and bad targets."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats

from medtransport.cli import main
from medtransport.estimation.recommend import recommend
from medtransport.units import Q_

SCENARIO = Path(__file__).parents[2] / "examples" / "estimation" / "vancomycin_patient.yaml"


@pytest.fixture(scope="module")
def auc_only():
    return recommend(str(SCENARIO), data=None, targets=[("auc24", 400.0, 600.0, "mg*h/L")],
                     intervals=[8.0, 12.0, 24.0], round_to=Q_(250, "mg"), n_samples=4000,
                     seed=3)


def test_auc24_is_the_daily_dose_over_the_individual_clearance(auc_only) -> None:
    # Steady state, linear kinetics: AUC24 = (24/τ)·D / CL (Rowland & Tozer ch. 7).
    cl = float(auc_only.fit["clearance"].values[0])
    for c in auc_only.candidates:
        expected = 24.0 / c["interval"] * c["dose"] / cl
        assert c["predicted"]["auc24"] == pytest.approx(expected, rel=1e-9)


def test_pta_of_an_auc_target_matches_its_closed_form(auc_only) -> None:
    # With AUC24 = k/CL and ln CL | y ≈ N(ln CL̂, s²) (Laplace), PTA = Φ(b) − Φ(a) with
    # a = (ln(k/600) − ln CL̂)/s, b = (ln(k/400) − ln CL̂)/s. 4000 draws: binomial SD ≤ 0.8 %.
    fit = auc_only.fit
    cl_hat = float(fit["clearance"].values[0])
    s = float(fit["eta_se"].sel(eta="clearance").values[0])
    for c in auc_only.candidates:
        k = 24.0 / c["interval"] * c["dose"]
        expected = (stats.norm.cdf((math.log(k / 400) - math.log(cl_hat)) / s)
                    - stats.norm.cdf((math.log(k / 600) - math.log(cl_hat)) / s))
        assert c["pta"] == pytest.approx(expected, abs=0.035)


def test_the_recommended_regimen_run_passes_the_core_audits(auc_only) -> None:
    assert auc_only.report.passed
    names = {r.name for r in auc_only.report.results}
    assert any(n.startswith("mass_balance") for n in names)
    assert auc_only.pta == max(c["pta"] for c in auc_only.candidates)
    assert auc_only.dose % 250 == 0


def test_cli_recommend_prints_the_recommendation_and_writes_files(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, [
        "recommend", str(SCENARIO), "--target", "auc24: 400..600 mg*h/L",
        "--target", "trough: 10..15 mg/L", "--interval", "12h,24h", "--round", "250 mg",
        "--samples", "500", "--plot", str(tmp_path / "dose.png"), "-o", str(tmp_path / "d.nc")])
    assert res.exit_code == 0, res.output
    assert "recommended:" in res.output and "probability of target attainment" in res.output
    assert (tmp_path / "dose.png").stat().st_size > 10_000
    assert (tmp_path / "d.nc").is_file()


@pytest.mark.parametrize(("target", "message"), [
    ("auc: 400..600 mg*h/L", "expected 'auc24"),
    ("auc24: 600..400 mg*h/L", "LOW < HIGH"),
    ("trough: 10..15 mg", "trough needs a unit like mg/L"),
])
def test_bad_targets_exit_2_naming_the_option(target: str, message: str) -> None:
    res = CliRunner().invoke(main, ["recommend", str(SCENARIO), "--target", target])
    assert res.exit_code == 2, res.output
    assert "--target" in res.output and message in res.output
    assert "Traceback" not in res.output


def test_samples_are_seeded(auc_only) -> None:
    again = recommend(str(SCENARIO), data=None, targets=[("auc24", 400.0, 600.0, "mg*h/L")],
                      intervals=[8.0, 12.0, 24.0], round_to=Q_(250, "mg"), n_samples=4000,
                      seed=3)
    assert [c["pta"] for c in again.candidates] == [c["pta"] for c in auc_only.candidates]
    np.testing.assert_array_equal(again.course_band, auc_only.course_band)


def test_a_data_set_of_several_subjects_is_refused(tmp_path: Path) -> None:
    from medtransport.errors import ScenarioError

    (tmp_path / "two.csv").write_text("ID,TIME,DV,EVID,MDV\n1,38,31,0,0\n2,38,25,0,0\n")
    with pytest.raises(ScenarioError, match="a recommendation is for one patient"):
        recommend(str(SCENARIO), data=str(tmp_path / "two.csv"),
                  targets=[("auc24", 400.0, 600.0, "mg*h/L")], intervals=[12.0],
                  round_to=Q_(250, "mg"))


def test_importance_resampling_keeps_every_draw_when_laplace_is_exact() -> None:
    # Linear-Gaussian subject: the posterior is exactly N(η̂, (H/2)⁻¹), so every importance
    # weight is equal and the effective sample size is the number of draws.
    from medtransport.estimation.map import estimate_map
    from medtransport.estimation.problem import Problem
    from medtransport.estimation.recommend import importance_resample
    from medtransport.estimation.residual import ResidualError

    design = np.array([[1.0, 0.5], [1.0, 2.0], [0.3, -1.0]])
    offset = np.array([5.0, 3.0, 1.0])
    theta = np.ones(2)

    def predict(phi, subjects):
        return offset[None] + np.log(phi / theta) @ design.T

    problem = Problem(predict=predict, dv=np.array([[5.3, 3.9, 0.6]]),
                      observed=np.ones((1, 3), bool), parameter_names=("a", "b"),
                      theta=theta, eta_names=("a", "b"), omega=np.diag([0.09, 0.16]),
                      residual=ResidualError(additive=0.4, unit="mg/L"))
    modes = estimate_map(problem)
    rng = np.random.default_rng(0)
    draws = rng.multivariate_normal(modes.eta[0], modes.posterior_covariance[0], size=500)
    _, ess = importance_resample(problem, draws, modes.eta[0], modes.posterior_covariance[0],
                                 rng)
    assert ess == pytest.approx(500, rel=1e-6)


def test_cli_recommend_with_importance_resampling_states_its_effective_sample_size() -> None:
    res = CliRunner().invoke(main, ["recommend", str(SCENARIO), "--target",
                                    "auc24: 400..600 mg*h/L", "--posterior", "sir",
                                    "--samples", "400"])
    assert res.exit_code == 0, res.output
    assert "importance resampling, effective sample size" in res.output


@pytest.mark.parametrize(("args", "message"), [
    (["--interval", "8x"], "--interval"),
    (["--round", "250 mL"], "--round"),
])
def test_bad_interval_or_rounding_exit_2_naming_the_option(args, message) -> None:
    res = CliRunner().invoke(main, ["recommend", str(SCENARIO), "--target",
                                    "auc24: 400..600 mg*h/L", "--samples", "100", *args])
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output
