"""Population sampling with correlated variability and covariates: statistics within sampling
error, chunk invariance, and the old ``{size, variability}`` form unchanged."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError
from scipy import stats

from medtransport.population import (
    PopulationSpec,
    sample_etas,
    sample_population,
    standard_normals,
)
from medtransport.scenario import Patient

N = 40_000


def spec(**kw: object) -> PopulationSpec:
    return PopulationSpec.model_validate({"size": N, **kw})


def test_the_old_form_draws_exactly_what_it_drew_before() -> None:
    s = spec(variability={"clearance": 0.3, "central_volume": 0.2})
    new = sample_population(s, 5, 100, 300).etas
    old = sample_etas(5, ["central_volume", "clearance"], [0.2, 0.3], 100, 300)
    for name in old:
        np.testing.assert_array_equal(new[name], old[name])


def test_correlated_etas_have_the_declared_covariance() -> None:
    s = spec(variability={"clearance": 0.3, "central_volume": 0.2, "peripheral_volume": 0.25},
             correlations={"clearance, central_volume": 0.6,
                           "central_volume, peripheral_volume": -0.3})
    eta = sample_population(s, 11, 0, N).etas
    names = ["central_volume", "clearance", "peripheral_volume"]
    omega = {"clearance": 0.3, "central_volume": 0.2, "peripheral_volume": 0.25}
    rho = {("central_volume", "clearance"): 0.6, ("central_volume", "peripheral_volume"): -0.3,
           ("clearance", "peripheral_volume"): 0.0}
    x = np.stack([eta[n] for n in names])
    cov = np.cov(x)
    for i, a in enumerate(names):
        assert abs(x[i].mean()) < 5 * omega[a] / math.sqrt(N)
        for j, b in enumerate(names):
            r = 1.0 if i == j else rho[(a, b) if (a, b) in rho else (b, a)]
            expected = r * omega[a] * omega[b]
            # SE of a sample covariance of normals: √((σa²σb² + σab²)/n)
            se = math.sqrt((omega[a] ** 2 * omega[b] ** 2 + expected ** 2) / N)
            assert abs(cov[i, j] - expected) < 5 * se, (a, b)


def test_a_covariance_block_equals_omega_and_correlations() -> None:
    block = spec(covariance={"parameters": ["clearance", "central_volume"],
                             "matrix": [[0.09, 0.036], [0.036, 0.04]]})
    pairs = spec(variability={"clearance": 0.3, "central_volume": 0.2},
                 correlations={"clearance, central_volume": 0.6})
    a = sample_population(block, 3, 0, 500).etas
    b = sample_population(pairs, 3, 0, 500).etas
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-12, atol=1e-15)


def test_correlated_draws_and_covariates_are_chunk_invariant() -> None:
    s = spec(variability={"clearance": 0.3, "central_volume": 0.2},
             correlations={"clearance, central_volume": 0.5},
             covariates={"weight": {"distribution": "lognormal", "median": "75 kg",
                                    "omega": 0.2, "lower": "40 kg", "upper": "150 kg"},
                         "sex": {"female_fraction": 0.5}},
             covariate_correlations={"weight, sex": -0.5})
    whole = sample_population(s, 9, 0, 1000)
    for start, stop in [(0, 1), (1, 333), (333, 1000), (640, 641)]:
        part = sample_population(s, 9, start, stop)
        for name in whole.etas:
            np.testing.assert_array_equal(part.etas[name], whole.etas[name][start:stop])
        assert part.covariates is not None and whole.covariates is not None
        np.testing.assert_array_equal(part.covariates.weight.magnitude,
                                      whole.covariates.weight.magnitude[start:stop])
        np.testing.assert_array_equal(part.covariates.female,
                                      whole.covariates.female[start:stop])


def test_covariate_marginals_and_correlation_within_sampling_error() -> None:
    s = spec(covariates={
        "weight": {"distribution": "lognormal", "median": "75 kg", "omega": 0.2},
        "age": {"distribution": "normal", "mean": "55 year", "sd": "15 year",
                "lower": "18 year", "upper": "90 year"},
        "serum_creatinine": {"distribution": "lognormal", "median": "80 umol/L",
                             "omega": 0.3},
        "sex": {"female_fraction": 0.4}},
        covariate_correlations={"weight, serum_creatinine": 0.4})
    cov = sample_population(s, 21, 0, N).covariates
    assert cov is not None
    log_w = np.log(cov.weight.m_as("kg"))
    assert abs(log_w.mean() - math.log(75)) < 5 * 0.2 / math.sqrt(N)
    assert abs(log_w.std() - 0.2) < 5 * 0.2 / math.sqrt(2 * N)
    # the truncated normal's mean and SD from scipy (an independent reference)
    ref = stats.truncnorm((18 - 55) / 15, (90 - 55) / 15, loc=55, scale=15)
    age = cov.age.m_as("year")
    assert age.min() >= 18 and age.max() <= 90
    assert abs(age.mean() - ref.mean()) < 5 * ref.std() / math.sqrt(N)
    assert abs(age.std() - ref.std()) < 5 * ref.std() / math.sqrt(2 * N) * 1.5
    assert cov.female is not None
    assert abs(cov.female.mean() - 0.4) < 5 * math.sqrt(0.4 * 0.6 / N)
    assert cov.serum_creatinine is not None
    r = np.corrcoef(log_w, np.log(cov.serum_creatinine.m_as("umol/L")))[0, 1]
    # SE of a sample correlation ≈ (1 − ρ²)/√n
    assert abs(r - 0.4) < 5 * (1 - 0.4 ** 2) / math.sqrt(N)
    # Cockcroft–Gault per patient, written out here from the 1976 paper
    scr_mgdl = cov.serum_creatinine.m_as("umol/L") / 88.42
    expected = (140 - age) * cov.weight.m_as("kg") / (72 * scr_mgdl) * \
        np.where(cov.female, 0.85, 1.0)
    np.testing.assert_allclose(cov.creatinine_clearance.m_as("mL/min"), expected, rtol=2e-3)


def test_unsampled_covariates_come_from_the_scenario_patient() -> None:
    s = spec(covariates={"weight": {"distribution": "normal", "mean": "70 kg",
                                    "sd": "10 kg", "lower": "45 kg"}})
    patient = Patient.model_validate({"weight": "70 kg", "age": "60 year", "sex": "female",
                                      "serum_creatinine": "1 mg/dL"})
    cov = sample_population(s, 1, 0, 100, patient).covariates
    assert cov is not None and cov.age is not None
    assert np.all(cov.age.m_as("year") == 60) and np.all(cov.female)
    assert cov.weight.m_as("kg").min() >= 45


@pytest.mark.parametrize(("section", "match"), [
    ({"variability": {"a": 0.3}, "correlations": {"a, b": 0.2}}, "b has no variability"),
    ({"variability": {"a": 0.3, "b": 0.3}, "correlations": {"a b": 0.2}}, "two different"),
    ({"variability": {"a": 0.3, "b": 0.3, "c": 0.3},
      "correlations": {"a, b": 0.9, "b, c": 0.9, "a, c": -0.9}}, "not positive definite"),
    ({"covariance": {"parameters": ["a", "b"], "matrix": [[0.1, 0.2], [0.1, 0.1]]}},
     "symmetric"),
    ({"covariates": {"weight": {"distribution": "normal", "mean": "70 kg"}}}, "needs mean and sd"),
    ({"covariates": {"weight": {"distribution": "lognormal", "median": "70 L",
                                "omega": 0.2}}}, r"\[mass\]"),
    ({"covariate_correlations": {"weight, age": 0.2}}, "no distribution"),
])
def test_bad_population_sections_are_named(section: dict[str, object], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        spec(**section)


def test_standard_normals_are_rows_of_one_stream() -> None:
    z = standard_normals(4, 3, 0, 50)
    np.testing.assert_array_equal(standard_normals(4, 3, 17, 18), z[17:18])
    assert z.shape == (50, 3) and np.isfinite(z).all()
