"""The residual error model: variances, seeded simulation, likelihood, M3, units, refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

import medtransport as mt
from medtransport.errors import ScenarioError
from medtransport.estimation.residual import ResidualError


def test_combined_variance_is_the_sum_of_the_additive_and_proportional_parts() -> None:
    err = ResidualError.parse({"additive": "0.5 mg/L", "proportional": 0.1}, "mg/L")
    assert err.kind == "combined"
    pred = np.array([0.0, 2.0, 10.0])
    np.testing.assert_allclose(err.sd(pred), np.sqrt(0.25 + (0.1 * pred) ** 2), rtol=1e-15)


def test_additive_sd_is_converted_to_the_unit_of_dv() -> None:
    err = ResidualError.parse({"additive": "500 ng/mL"}, "mg/L")
    assert err.additive == pytest.approx(0.5, rel=1e-12)
    assert err.unit == "mg/L"


def test_additive_sd_with_the_wrong_dimension_is_refused_naming_the_field() -> None:
    with pytest.raises(ScenarioError, match=r"residual_error\.additive: expected the unit of DV"):
        ResidualError.parse({"additive": "0.5 mg"}, "mg/L")


@pytest.mark.parametrize(("section", "field"), [
    ({"additiv": "0.5 mg/L"}, "residual_error.additiv"),
    ({"proportional": -0.1}, "residual_error.proportional"),
    ({"exponential": 0.1, "proportional": 0.1}, "residual_error"),
    ({}, "residual_error"),
])
def test_bad_sections_name_the_field(section: dict, field: str) -> None:
    with pytest.raises(ScenarioError, match=field.replace(".", r"\.")):
        ResidualError.parse(section, "mg/L")


def test_the_scenario_accepts_the_section_and_refuses_misspellings() -> None:
    base = {"name": "x", "model": "pk.one_compartment", "time": {"stop": "1 h", "step": "1 h"},
            "parameters": {"clearance": "1 L/h", "central_volume": "10 L"}}
    sc = mt.load_scenario({**base, "residual_error": {"additive": "0.5 mg/L",
                                                       "proportional": 0.1}})
    assert ResidualError.from_spec(sc.residual_error, "mg/L").kind == "combined"
    with pytest.raises(ScenarioError, match=r"residual_error\.proportionl"):
        mt.load_scenario({**base, "residual_error": {"proportionl": 0.1}})


def test_neg2_log_likelihood_matches_the_normal_density_without_log_2pi() -> None:
    err = ResidualError(additive=0.3, proportional=0.2, unit="mg/L")
    dv, pred = np.array([1.1, 4.0, 0.2]), np.array([1.0, 5.0, 0.3])
    sd = np.sqrt(0.09 + (0.2 * pred) ** 2)
    expected = -2 * stats.norm.logpdf(dv, pred, sd) - math.log(2 * math.pi)
    np.testing.assert_allclose(err.neg2_log_likelihood(dv, pred), expected, rtol=1e-12)


def test_exponential_likelihood_is_normal_on_the_log_scale() -> None:
    err = ResidualError(exponential=0.25)
    dv, pred = np.array([1.1, 4.0]), np.array([1.0, 5.0])
    expected = -2 * stats.norm.logpdf(np.log(dv), np.log(pred), 0.25) - math.log(2 * math.pi)
    np.testing.assert_allclose(err.neg2_log_likelihood(dv, pred), expected, rtol=1e-12)


def test_m3_is_the_probability_below_the_limit_and_missing_dv_counts_nothing() -> None:
    err = ResidualError(additive=0.5, unit="mg/L")
    dv = np.array([np.nan, np.nan, 2.0])
    pred = np.array([1.0, 1.0, 2.5])
    out = err.neg2_log_likelihood(dv, pred, lloq=0.8, blq=[True, False, False])
    assert out[0] == pytest.approx(-2 * stats.norm.logcdf(0.8, 1.0, 0.5), rel=1e-12)
    assert out[1] == 0.0
    assert out[2] == pytest.approx(-2 * stats.norm.logpdf(2.0, 2.5, 0.5) - math.log(2 * math.pi))


def test_simulation_is_seeded_and_has_the_stated_spread() -> None:
    err = ResidualError(additive=0.5, proportional=0.2, unit="mg/L")
    pred = np.full(200_000, 10.0)
    a, b = err.simulate(pred, 7), err.simulate(pred, 7)
    np.testing.assert_array_equal(a, b)
    expected_sd = math.sqrt(0.25 + 4.0)
    # SD of a sample SD ≈ σ/√(2n) = 0.005: 5 of those.
    assert np.std(a) == pytest.approx(expected_sd, abs=5 * expected_sd / math.sqrt(4e5))
    assert np.mean(a) == pytest.approx(10.0, abs=5 * expected_sd / math.sqrt(2e5))
    logs = ResidualError(exponential=0.3).simulate(pred, np.random.default_rng(1))
    assert np.std(np.log(logs)) == pytest.approx(0.3, abs=5 * 0.3 / math.sqrt(4e5))


@pytest.mark.parametrize("section", [{"proportional": 0.1}, {"exponential": 0.1}])
def test_non_positive_dv_is_refused_under_proportional_or_exponential_error(section) -> None:
    err = ResidualError.parse(section, "mg/L")
    with pytest.raises(ScenarioError, match=r"row 12: DV = 0 is not positive"):
        err.check_observations([1.0, 0.0], where=lambda i: f"row {11 + i}")
    ResidualError.parse({"additive": "0.1 mg/L", **({} if "exponential" in section
                                                    else section)}, "mg/L").check_observations(
        [1.0, 0.0])
