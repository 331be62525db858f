"""mt.fit and `medtransport fit` on PK data sets: results, files, refusals, theophylline."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

import medtransport as mt
from medtransport.cli import main
from medtransport.errors import ScenarioError

ROOT = Path(__file__).parents[2]
THEOPH = ROOT / "examples" / "data" / "theoph.csv"


def theoph_scenario(tmp_path: Path, **changes) -> Path:
    shutil.copy(THEOPH, tmp_path / "theoph.csv")
    text = f"""
name: Theophylline fit
model: pk.one_compartment
parameters:
  clearance: 2.81 L/h
  central_volume: 32.0 L
  absorption_rate: 1.57 1/h
  allometric: {{reference_weight: 70 kg, clearance_exponent: 1, volume_exponent: 1}}
population: {{size: 1, variability: {{clearance: 0.3, central_volume: 0.2, absorption_rate: 0.6}}}}
residual_error: {changes.get("residual_error", "{additive: 0.7 mg/L}")}
data:
  path: {changes.get("data", "theoph.csv")}
  format: nonmem
  units: {{TIME: h, AMT: mg/kg, DV: mg/L, WT: kg}}
  covariates: {{WT: weight}}
time: {{stop: 25 h, step: 15 min}}
{changes.get("extra", "")}
"""
    path = tmp_path / "theoph.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def theoph_map(tmp_path_factory) -> xr.Dataset:
    return mt.fit(theoph_scenario(tmp_path_factory.mktemp("theo")), method="map")


def test_map_result_has_eta_parameters_with_units_and_predictions_over_record(theoph_map):
    ds = theoph_map
    assert ds["eta_hat"].dims == ("ID", "eta") and ds.sizes["ID"] == 12
    assert ds["clearance"].attrs["units"] == "L/h" and ds["central_volume"].attrs["units"] == "L"
    assert ds["IPRED"].dims == ("record",) and ds.sizes["record"] == 144
    assert ds["DV"].attrs["units"] == "mg/L"
    assert ds.attrs["audit_status"] == "passed"
    names = {r["name"] for r in json.loads(ds.attrs["audit_report"])["results"]}
    assert {"map.converged", "map.hessian_positive_definite", "runs.mass_balance"} <= names
    # the individual parameters are θ·(WT/70)·exp(η̂)
    np.testing.assert_allclose(
        ds["clearance"].values,
        2.81 * ds["covariate_factor"].sel(parameter="clearance").values
        * np.exp(ds["eta_hat"].sel(eta="clearance").values), rtol=1e-12)


def test_ipred_is_the_bateman_function_at_the_individual_parameters(theoph_map):
    # Independent check against the closed form (oral one-compartment, F = 1).
    from medtransport_pk.closed_forms import bateman

    ds = theoph_map
    raw = np.genfromtxt(THEOPH, delimiter=",", names=True, skip_header=1,
                        missing_values=".", filling_values=np.nan)
    for i, sid in enumerate(ds["ID"].values):
        rows = raw[(raw["ID"] == sid)]
        dose = float(rows["AMT"][rows["EVID"] == 1][0] * rows["WT"][0])
        mine = (ds["ID_record"].values == sid) & np.isfinite(ds["IPRED"].values)
        cl, v, ka = (float(ds[n].values[i]) for n in
                     ("clearance", "central_volume", "absorption_rate"))
        expected = bateman(ds["TIME"].values[mine], dose, 1.0, ka, cl / v, v)
        np.testing.assert_allclose(ds["IPRED"].values[mine], expected, rtol=1e-9, atol=1e-12)


def test_ipred_on_the_grid_agrees_with_ipred_at_the_records(theoph_map):
    ds = theoph_map
    assert ds["ipred_grid"].dims == ("ID", "time") and ds["ipred_grid"].attrs["units"] == "mg/L"
    # the grid (every 15 min) holds some of the sampling times exactly: compare there
    compared = 0
    for i, sid in enumerate(ds["ID"].values):
        mine = (ds["ID_record"].values == sid) & np.isfinite(ds["IPRED"].values)
        for t, value in zip(ds["TIME"].values[mine], ds["IPRED"].values[mine], strict=True):
            hit = np.flatnonzero(np.abs(ds["time"].values - t) < 1e-9)
            if hit.size:
                assert ds["ipred_grid"].values[i, hit[0]] == pytest.approx(value, rel=1e-10)
                compared += value > 0
    assert compared >= 10

def test_cwres_are_roughly_standard_normal_on_a_good_fit(theoph_map):
    cwres = theoph_map["CWRES"].values
    cwres = cwres[np.isfinite(cwres)]
    assert cwres.size == 132
    assert abs(cwres.mean()) < 0.3 and 0.7 < cwres.std() < 1.3


def test_shrinkage_of_the_map_estimates_is_between_0_and_1_where_data_inform(theoph_map):
    shrink = theoph_map["eta_shrinkage"].sel(eta="clearance").item()
    assert -0.5 < shrink < 0.5


@pytest.mark.slow
def test_cli_fit_writes_the_result_the_plot_and_the_report(tmp_path: Path) -> None:
    scenario = theoph_scenario(tmp_path)
    out = tmp_path / "ind.nc"
    res = CliRunner().invoke(main, ["fit", str(scenario), "--method", "map", "-o", str(out),
                                    "--plot", str(tmp_path / "ind.png"),
                                    "--report", str(tmp_path / "ind.html"),
                                    "--vpc", str(tmp_path / "vpc.png")])
    assert res.exit_code == 0, res.output
    assert "map.converged" in res.output and "OFV" in res.output
    back = mt.read_netcdf(out)
    assert back.sizes["ID"] == 12 and back.attrs["audit_status"] == "passed"
    assert (tmp_path / "ind.png").stat().st_size > 10_000
    assert "Individual parameters" in (tmp_path / "ind.html").read_text()
    assert (tmp_path / "vpc.png").stat().st_size > 10_000


@pytest.mark.parametrize(("args", "message"), [
    (["--plot", "x.txt"], "--plot"),
    (["-o", "x.csv"], "-o/--output"),
    (["--method", "nope"], "nope"),
])
def test_cli_fit_refuses_bad_options_with_exit_2(tmp_path: Path, args, message) -> None:
    scenario = theoph_scenario(tmp_path)
    res = CliRunner().invoke(main, ["fit", str(scenario), *args])
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output


def test_a_scenario_without_residual_error_is_refused_naming_the_section(tmp_path) -> None:
    path = theoph_scenario(tmp_path)
    path.write_text(path.read_text().replace("residual_error: {additive: 0.7 mg/L}\n", ""))
    with pytest.raises(ScenarioError, match="residual_error: a fit needs a residual error"):
        mt.fit(path)


def _write_levels(tmp_path: Path, rows: str) -> Path:
    (tmp_path / "bad.csv").write_text("ID,TIME,AMT,DV,EVID,MDV,CMT,WT\n" + rows)
    return theoph_scenario(tmp_path, data="bad.csv")


def test_a_level_before_any_dose_is_refused_naming_the_row(tmp_path: Path) -> None:
    path = _write_levels(tmp_path, "1,0,.,1.0,0,0,2,70\n1,1,4,.,1,1,1,70\n1,2,.,5.0,0,0,2,70\n")
    with pytest.raises(ScenarioError, match=r"data row 2 \(ID 1, TIME 0 h\): a level before "
                                            r"the subject's first dose"):
        mt.fit(path)


def test_a_subject_without_observations_is_refused_saying_its_map_is_the_prior(tmp_path):
    path = _write_levels(tmp_path, "1,0,4,.,1,1,1,70\n1,2,.,5.0,0,0,2,70\n"
                                   "2,0,4,.,1,1,1,70\n")
    with pytest.raises(ScenarioError, match=r"subject ID 2 has no observations.*prior"):
        mt.fit(path)


def test_a_zero_level_under_proportional_error_is_refused(tmp_path: Path) -> None:
    path = _write_levels(tmp_path, "1,0,4,.,1,1,1,70\n1,2,.,5.0,0,0,2,70\n"
                                   "1,30,.,0,0,0,2,70\n")
    path.write_text(path.read_text().replace("{additive: 0.7 mg/L}", "{proportional: 0.2}"))
    with pytest.raises(ScenarioError, match=r"ID 1 \(record 2, TIME 30 h\): DV = 0 is not "
                                            r"positive"):
        mt.fit(path)


def test_m3_with_an_lloq_column_uses_the_limit(tmp_path: Path) -> None:
    rows = ("1,0,4,.,1,1,1,70,.\n1,1,.,6.0,0,0,2,70,0.5\n1,4,.,5.0,0,0,2,70,0.5\n"
            "1,12,.,3.0,0,0,2,70,0.5\n1,24,.,0.2,0,0,2,70,0.5\n")
    (tmp_path / "m3.csv").write_text("ID,TIME,AMT,DV,EVID,MDV,CMT,WT,LLOQ\n" + rows)
    ds = mt.fit(theoph_scenario(tmp_path, data="m3.csv"))
    # the 24-h level (0.2 < LLOQ 0.5) is fitted as "below 0.5": no CWRES, an IPRED there
    last = np.flatnonzero(ds["TIME"].values == 24)[0]
    assert math.isnan(ds["CWRES"].values[last]) and ds["IPRED"].values[last] > 0


@pytest.fixture(scope="module")
def foce_cli(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """One FOCE-I fit of the theophylline data through the CLI (about 40 s), shared by the
    test of what the CLI prints and the test of the estimates it wrote."""
    tmp = tmp_path_factory.mktemp("foce")
    res = CliRunner().invoke(main, ["fit", str(theoph_scenario(tmp)), "--method", "foce_i",
                                    "-o", str(tmp / "pop.nc")])
    assert res.exit_code == 0, res.output
    return res.output, tmp / "pop.nc"


@pytest.mark.slow
def test_theophylline_foce_i_is_close_to_the_published_mixed_effects_fit(
        foce_cli: tuple[str, Path]) -> None:
    """Pinheiro & Bates (2000) §6.2, nlme fm1Theo.nlme: ke = e^−2.4327 = 0.0878 /h,
    ka = e^0.4514 = 1.570 /h, CL = e^−3.2145 = 0.0402 L/h/kg (residual SD 0.70 mg/L in their
    fits). Not equal by construction: nlme's random effects are on (ln ke, ln ka, ln CL) with a
    general covariance and its likelihood is Lindstrom–Bates' linearisation, ours are on (CL, V,
    ka), diagonal, with FOCE-I's Laplace form. We require the typical values within 3 % and
    within 2 of our SEs. Read from the NetCDF file the fit wrote, so the tables' round trip is
    checked too."""
    ds = mt.read_netcdf(foce_cli[1])
    assert ds.attrs["audit_status"] == "passed"
    value = dict(zip(ds["estimate"].values, ds["estimate_value"].values, strict=True))
    se = dict(zip(ds["estimate"].values, ds["estimate_se"].values, strict=True))
    cl_per_kg = value["theta:clearance"] / 70.0
    v_per_kg = value["theta:central_volume"] / 70.0
    ka = value["theta:absorption_rate"]
    published = {"cl": math.exp(-3.2145), "ka": math.exp(0.4514),
                 "ke": math.exp(-2.4327)}
    assert cl_per_kg == pytest.approx(published["cl"], rel=0.03)
    assert ka == pytest.approx(published["ka"], rel=0.03)
    assert cl_per_kg / v_per_kg == pytest.approx(published["ke"], rel=0.03)
    assert abs(cl_per_kg - published["cl"]) * 70 < 2 * se["theta:clearance"]
    assert abs(ka - published["ka"]) < 2 * se["theta:absorption_rate"]
    assert value["sigma:additive"] == pytest.approx(0.70, rel=0.05)
    corr = ds["correlation"].values
    np.testing.assert_allclose(corr, corr.T, atol=1e-12)
    np.testing.assert_allclose(np.diag(corr), 1.0, atol=1e-12)
    assert list(ds["estimate_unit"].values)[:3] == ["L/h", "L", "1/h"]


def test_a_fit_failing_an_audit_is_an_audit_failure_with_its_report(tmp_path, monkeypatch):
    # Mutant: the optimiser stops after one iteration; the fit must not return a result.
    import medtransport.estimation.fit as fit_module
    from medtransport.errors import AuditFailure

    original = fit_module.estimate_map
    monkeypatch.setattr(fit_module, "estimate_map", lambda p: original(p, max_iter=1))
    with pytest.raises(AuditFailure) as info:
        mt.fit(theoph_scenario(tmp_path))
    failed = {r.name for r in info.value.report.failures}
    assert "map.converged" in failed
    assert info.value.dataset.attrs["audit_status"] == "failed"
    res = CliRunner().invoke(main, ["fit", str(theoph_scenario(tmp_path))])
    from medtransport.cli import EXIT_AUDIT

    assert res.exit_code == EXIT_AUDIT and "map.converged" in res.output


def test_fit_data_option_replaces_the_levels(tmp_path: Path) -> None:
    scenario = ROOT / "examples" / "estimation" / "vancomycin_patient.yaml"
    (tmp_path / "later.csv").write_text("ID,TIME,DV,EVID,MDV\n1,38,25.0,0,0\n1,48,12.0,0,0\n")
    base = mt.fit(scenario)
    lower = mt.fit(scenario, data=tmp_path / "later.csv")
    assert lower["DV"].values.tolist()[-2:] != base["DV"].values.tolist()[-2:]
    # lower levels at the same times: a larger clearance
    assert float(lower["clearance"].values[0]) > float(base["clearance"].values[0])


def test_exponential_error_map_fits_and_passes_its_audits(tmp_path: Path) -> None:
    path = theoph_scenario(tmp_path, residual_error="{exponential: 0.2}")
    # Theoph has zero levels at t = 0, which an exponential model cannot explain: refused …
    with pytest.raises(ScenarioError, match="is not positive"):
        mt.fit(path)
    # … and fitted once those records are dropped
    rows = [line for line in THEOPH.read_text().splitlines()
            if not (line.split(",")[1:2] == ["0.0"] and ",0,0," in line)]
    (tmp_path / "theoph.csv").write_text("\n".join(rows) + "\n")
    ds = mt.fit(path)
    assert ds.attrs["audit_status"] == "passed"
    assert json.loads(ds.attrs["residual_error"]) == {"exponential": 0.2}


def test_a_level_where_the_model_predicts_zero_under_proportional_error_is_explained(
        tmp_path: Path) -> None:
    # A sample at the oral dose time (prediction 0) with DV > 0: no proportional model can
    # explain it; the message says so instead of an optimiser failure.
    path = _write_levels(tmp_path, "1,0,4,.,1,1,1,70\n1,0,.,0.74,0,0,2,70\n"
                                   "1,2,.,5.0,0,0,2,70\n")
    path.write_text(path.read_text().replace("{additive: 0.7 mg/L}", "{proportional: 0.2}"))
    with pytest.raises(ScenarioError, match=r"ID 1: .*predicts 0 at 1 of its levels.* add an "
                                            r"additive part"):
        mt.fit(path)


def test_mutant_likelihood_without_the_lognormal_jacobian_fails_the_fit(tmp_path, monkeypatch):
    from medtransport.errors import AuditFailure
    from medtransport.estimation.residual import ResidualError

    path = theoph_scenario(tmp_path, residual_error="{exponential: 0.2}")
    rows = [line for line in THEOPH.read_text().splitlines()
            if not (line.split(",")[1:2] == ["0.0"] and ",0,0," in line)]
    (tmp_path / "theoph.csv").write_text("\n".join(rows) + "\n")

    def without_jacobian(self, dv, pred):  # the density of ln y, used as the density of y
        return -0.5 * (self.neg2_log_likelihood(dv, pred) + math.log(2 * math.pi))

    monkeypatch.setattr(ResidualError, "log_density", without_jacobian)
    with pytest.raises(AuditFailure) as info:
        mt.fit(path)
    assert [r.name for r in info.value.report.failures] == ["likelihood.normalised"]


def test_evaluate_only_reports_the_ofv_at_the_scenarios_values(tmp_path, theoph_map):
    # NONMEM's MAXEVAL=0: nothing moves, the OFV is that of the given model — the same
    # objective the MAP fit reports at those values.
    path = theoph_scenario(tmp_path, extra="estimate: {method: foce_i, evaluate_only: true, "
                                           "covariance: false}")
    ds = mt.fit(path)
    assert float(ds["typical_clearance"]) == 2.81
    assert json.loads(ds.attrs["optimiser"])["evaluate_only"] is True
    assert float(ds["ofv"]) == pytest.approx(float(theoph_map["ofv"]), abs=1e-3)


@pytest.mark.slow
@pytest.mark.slow
def test_cli_fit_foce_i_prints_the_population_estimates(foce_cli: tuple[str, Path]) -> None:
    output, path = foce_cli
    assert "population estimates (FOCE-I)" in output
    assert "omega2:clearance" in output and "foce.covariance_step" in output
    back = mt.read_netcdf(path)
    assert back.attrs["method"] == "foce_i" and "estimate_se" in back


def test_a_model_without_an_estimation_problem_is_refused_with_exit_2() -> None:
    scenario = sorted((ROOT / "examples" / "scenarios").glob("dye_*.yaml"))[0]
    res = CliRunner().invoke(main, ["fit", str(scenario)])
    assert res.exit_code == 2, res.output
    assert "cannot be fitted" in res.output and "Traceback" not in res.output
