"""MAP individualisation against closed-form posteriors and simulated subjects."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import check_bateman_agrees, simulated_oral
from scipy import stats

from medtransport.estimation.map import estimate_map, map_objective
from medtransport.estimation.problem import Problem
from medtransport.estimation.residual import ResidualError


def linear_problem(y: np.ndarray, design: np.ndarray, offset: np.ndarray, omega: np.ndarray,
                   sigma: float) -> Problem:
    """f(η) = a + B·η exactly (the parameters' logs are the η), additive error."""
    theta = np.array([1.0, 1.0])

    def predict(phi: np.ndarray, subjects: np.ndarray) -> np.ndarray:
        eta = np.log(phi / theta)
        return offset[None, :] + eta @ design.T

    return Problem(predict=predict, dv=y[None, :], observed=np.ones((1, y.size), bool),
                   parameter_names=("a", "b"), theta=theta, eta_names=("a", "b"), omega=omega,
                   residual=ResidualError(additive=sigma, unit="mg/L"))


def test_one_linear_gaussian_subject_has_the_closed_form_posterior() -> None:
    # Posterior of η ~ N(0, Ω) with y = a + Bη + ε, ε ~ N(0, σ²I):
    # precision P = BᵀB/σ² + Ω⁻¹, mean P⁻¹Bᵀ(y − a)/σ² (Gelman et al., BDA3, §14.2).
    design = np.array([[1.0, 0.5], [1.0, 2.0], [0.3, -1.0], [2.0, 1.0]])
    offset = np.array([5.0, 3.0, 1.0, 2.0])
    omega = np.array([[0.09, 0.02], [0.02, 0.16]])
    sigma = 0.4
    y = np.array([5.3, 3.9, 0.6, 2.8])
    precision = design.T @ design / sigma ** 2 + np.linalg.inv(omega)
    mean = np.linalg.solve(precision, design.T @ (y - offset) / sigma ** 2)
    cov = np.linalg.inv(precision)
    fit = estimate_map(linear_problem(y, design, offset, omega, sigma))
    np.testing.assert_allclose(fit.eta[0], mean, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(fit.posterior_covariance[0], cov, rtol=1e-6)
    assert fit.converged.all()


def test_the_optimisers_objective_equals_the_independent_one() -> None:
    problem, _ = simulated_oral(5, seed=3)
    fit = estimate_map(problem)
    independent = map_objective(problem, fit.eta, fit.ipred)
    np.testing.assert_allclose(fit.objective, independent, rtol=1e-12)


def test_the_helper_model_is_the_bateman_function() -> None:
    assert check_bateman_agrees() < 1e-12


def test_map_recovers_the_true_eta_within_posterior_ses_at_the_stated_rate() -> None:
    # Under the model the true η lies within ±1.96 posterior SE with ≈ 95 % probability (the
    # Laplace approximation is near exact with 8 informative samples per subject). 200
    # subjects × 3 η = 600 intervals: the binomial SD of the rate is 0.9 %, so the observed
    # coverage must lie within 95 % ± 3.5 %.
    problem, true_eta = simulated_oral(200, seed=11)
    fit = estimate_map(problem)
    assert fit.converged.all()
    z = (fit.eta - true_eta) / fit.posterior_se
    coverage = float(np.mean(np.abs(z) < 1.96))
    assert abs(coverage - 0.95) < 0.035, coverage
    # and the standardised errors look standard normal (mean 0, SD 1)
    assert abs(z.mean()) < 0.15 and abs(z.std() - 1.0) < 0.1


def test_map_of_a_pure_prior_direction_is_zero_and_its_se_is_omega() -> None:
    # ka is barely learnt from very late samples (through ka/(ka − k) only): its posterior
    # stays close to the prior N(0, 0.4²).
    problem, _ = simulated_oral(3, seed=5, times=np.array([40.0, 48.0, 60.0, 72.0]))
    fit = estimate_map(problem)
    assert np.all(np.abs(fit.eta[:, 2]) < 0.1 * 0.4)
    np.testing.assert_allclose(fit.posterior_se[:, 2], 0.4, rtol=0.05)


def test_m3_pulls_the_prediction_below_the_limit() -> None:
    problem, _ = simulated_oral(1, seed=2)
    # The last sample is reported below an LLOQ well above the prediction a typical
    # subject would have there; M3 moves η̂ so that being below is likely, plain omission not.
    blq = np.zeros_like(problem.observed)
    blq[0, -1] = True
    observed = problem.observed.copy()
    observed[0, -1] = False
    base = Problem(**{**problem.__dict__, "observed": observed})
    with_m3 = Problem(**{**problem.__dict__, "observed": observed, "blq": blq,
                         "lloq": np.full(problem.dv.shape, 0.05)})
    a, b = estimate_map(base), estimate_map(with_m3)
    assert b.ipred[0, -1] < a.ipred[0, -1]
    # at the M3 mode the last record's term is −2 ln Φ((LLOQ − f)/sd)
    sd = problem.residual.sd(b.ipred[0, -1])
    expected = -2 * stats.norm.logcdf(0.05, b.ipred[0, -1], sd)
    ll = problem.residual.neg2_log_likelihood(np.array([np.nan]), b.ipred[0, -1:],
                                              lloq=0.05, blq=[True])
    assert ll[0] == pytest.approx(expected, rel=1e-10)


def test_a_subject_without_observations_is_refused_saying_its_map_is_the_prior() -> None:
    problem, _ = simulated_oral(2, seed=1)
    observed = problem.observed.copy()
    observed[1] = False
    with pytest.raises(Exception, match=r"subject ID 2 has no observations.*the prior"):
        Problem(**{**problem.__dict__, "observed": observed})
