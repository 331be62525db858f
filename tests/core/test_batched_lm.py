"""The batched Levenberg–Marquardt (medtransport.numerics.batched_lm) against scipy's
least_squares, problem by problem: the same minima, bounds honoured, standard errors from the
Jacobian at the solution."""

from __future__ import annotations

import numpy as np
from scipy.optimize import least_squares

from medtransport.numerics.batched_lm import levenberg_marquardt

T = np.linspace(0, 5, 40)


def _model(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return x[:, :1] * np.exp(-x[:, 1:2] * T) + x[:, 2:3]


def test_matches_scipy_least_squares_with_bounds() -> None:
    rng = np.random.default_rng(0)
    p = 200
    truth = np.stack([rng.uniform(1, 3, p), rng.uniform(0.3, 2, p), rng.uniform(-0.2, 0.2, p)],
                     axis=1)
    y = _model(truth, np.arange(p)) + rng.normal(0, 0.02, (p, T.size))
    lo, hi = np.array([0.0, 0.0, 0.0]), np.array([10.0, 10.0, 1.0])  # offset ≥ 0: some at bound
    fit = levenberg_marquardt(_model, np.tile([1.0, 1.0, 0.1], (p, 1)), y, lower=lo, upper=hi,
                              xtol=1e-12, ftol=1e-15)
    assert fit.converged.all()
    assert np.all(fit.x >= lo) and np.all(fit.x <= hi)
    at_bound = 0
    for i in range(p):
        ref = least_squares(lambda x, i=i: _model(x[None], np.array([i]))[0] - y[i],
                            [1.0, 1.0, 0.1], bounds=(lo, hi), xtol=1e-14, ftol=1e-14,
                            gtol=1e-14)
        assert np.allclose(fit.x[i], ref.x, atol=1e-6), (i, fit.x[i], ref.x)
        assert abs(fit.cost[i] - ref.cost) <= 1e-9 * max(ref.cost, 1e-12)
        at_bound += fit.x[i, 2] == 0.0 and ref.x[2] < 1e-6
    assert at_bound > 20  # the active set was exercised


def test_standard_errors_match_the_spread_of_repeats() -> None:
    rng = np.random.default_rng(1)
    p = 2000
    truth = np.tile([2.0, 0.8, 0.1], (p, 1))
    y = _model(truth, np.arange(p)) + rng.normal(0, 0.05, (p, T.size))
    fit = levenberg_marquardt(_model, np.tile([1.0, 1.0, 0.0], (p, 1)), y)
    spread = fit.x.std(axis=0, ddof=1)
    assert np.allclose(np.median(fit.stderr, axis=0), spread, rtol=0.1)


def test_weighted_fit_matches_scipy_with_scaled_residuals() -> None:
    """Weights w enter as √w on the residuals in scipy: same minima, same cost ½Σw·r²."""
    rng = np.random.default_rng(2)
    p = 40
    truth = np.stack([rng.uniform(1, 3, p), rng.uniform(0.3, 2, p), rng.uniform(0, 0.2, p)],
                     axis=1)
    w = rng.uniform(0.2, 5.0, (p, T.size))
    y = _model(truth, np.arange(p)) + rng.normal(0, 0.05, (p, T.size)) / np.sqrt(w)
    fit = levenberg_marquardt(_model, np.tile([1.0, 1.0, 0.1], (p, 1)), y, weights=w,
                              xtol=1e-12, ftol=1e-15)
    assert fit.converged.all()
    for i in range(p):
        sw = np.sqrt(w[i])
        ref = least_squares(lambda x, i=i, sw=sw: sw * (_model(x[None], np.array([i]))[0] - y[i]),
                            [1.0, 1.0, 0.1], xtol=1e-14, ftol=1e-14, gtol=1e-14)
        assert np.allclose(fit.x[i], ref.x, atol=1e-6), (i, fit.x[i], ref.x)
        assert abs(fit.cost[i] - ref.cost) <= 1e-9 * ref.cost
