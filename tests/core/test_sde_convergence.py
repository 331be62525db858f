"""Convergence orders and the mean-square stability boundary, measured (Higham 2001, SIAM Rev).

Strong error  e_s(h) = E|X_h(T) − X(T)|   and weak error  e_w(h) = |E[X_h(T) − X(T)]|  on
geometric Brownian motion, with X(T) the exact solution on the *same* Brownian path: the engine
draws one normal per step for every scheme, so the exact transition at the same seed and step
gives X(T) = x₀exp((λ − μ²/2)T + μW_T) for the increments the scheme used. The orders are the
slopes of log e against log h, fitted by weighted least squares with each point's Monte Carlo
standard error; the test asks the slope's 99.7 % interval (± 3 SE) widened by a stated
pre-asymptotic allowance of 0.1 to contain the theoretical order."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medtransport.audit.ms_stability import largest_ms_stable_step, ms_growth
from medtransport.numerics.sde import AffineSDE, simulate

LAM, MU, X0, T = -1.0, 1.0, 1.0, 1.0
GBM = AffineSDE.scalar(0.0, LAM, c2=MU * MU)
LEVELS = (5, 6, 7, 8, 9)  # h = T/2^k
PATHS = 20_000
ALLOWANCE = 0.1


def _slope(h: np.ndarray, err: np.ndarray, se: np.ndarray) -> tuple[float, float]:
    """Weighted LS slope of log err on log h, and its standard error (known variances)."""
    x, y = np.log(h), np.log(err)
    w = (err / se) ** 2  # Var(log e) ≈ (SE/e)²
    xb = np.sum(w * x) / np.sum(w)
    sxx = np.sum(w * (x - xb) ** 2)
    slope = float(np.sum(w * (x - xb) * (y - np.sum(w * y) / np.sum(w))) / sxx)
    return slope, float(1.0 / math.sqrt(sxx))


def _errors(scheme: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    hs, es, es_se, ew, ew_se = [], [], [], [], []
    for k in LEVELS:
        n = 2**k
        h = T / n
        approx = simulate(GBM, [X0], h, n, [n], n_paths=PATHS, seed=21, scheme=scheme)
        exact = simulate(GBM, [X0], h, n, [n], n_paths=PATHS, seed=21, scheme="exact")
        diff = approx.values[0, :, 0] - exact.values[0, :, 0]
        hs.append(h)
        es.append(np.mean(np.abs(diff)))
        es_se.append(np.std(np.abs(diff), ddof=1) / math.sqrt(PATHS))
        ew.append(abs(np.mean(diff)))
        ew_se.append(np.std(diff, ddof=1) / math.sqrt(PATHS))
    return tuple(np.asarray(v) for v in (hs, es, es_se, ew, ew_se))  # type: ignore[return-value]


def test_the_same_seed_gives_the_scheme_and_the_exact_solution_the_same_brownian_path() -> None:
    """The premise of the strong errors: W_T recovered from the exact GBM end point equals the
    sum of the increments Euler–Maruyama used (recovered from a drift-free BM run)."""
    n, h = 16, T / 16
    exact = simulate(GBM, [X0], h, n, [n], n_paths=50, seed=21, scheme="exact")
    w_exact = (np.log(exact.values[0, :, 0] / X0) - (LAM - MU**2 / 2) * T) / MU
    bm = simulate(AffineSDE.scalar(0.0, 0.0, c0=1.0), [0.0], h, n, [n], n_paths=50, seed=21)
    np.testing.assert_allclose(w_exact, bm.values[0, :, 0], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(("scheme", "strong", "weak"), [("euler_maruyama", 0.5, 1.0),
                                                        ("milstein", 1.0, None)])
def test_convergence_orders_on_gbm(scheme: str, strong: float, weak: float | None) -> None:
    h, es, es_se, ew, ew_se = _errors(scheme)
    s, s_se = _slope(h, es, es_se)
    assert abs(s - strong) <= 3 * s_se + ALLOWANCE, (s, s_se)
    if weak is not None:
        w, w_se = _slope(h, ew, ew_se)
        assert abs(w - weak) <= 3 * w_se + ALLOWANCE, (w, w_se)
        # and EM's weak error is the closed form x0[(1 + hλ)^{T/h} − e^{λT}] within its SE
        closed = np.abs(X0 * ((1 + h * LAM) ** (T / h) - math.exp(LAM * T)))
        assert np.all(np.abs(ew - closed) <= 5 * ew_se)


def test_the_mean_square_stability_boundary_located_by_simulation_matches_the_formula() -> None:
    """EM on dX = λX dt + μX dW (λ = −3, μ² = 4: the SDE is mean-square stable, 2λ + μ² = −2)
    is stable in mean square iff |1 + hλ|² + hμ² < 1, i.e. h < h* = −(2λ + μ²)/λ² = 2/9.
    The per-step growth of the sample second moment over ten steps is measured on a grid of
    steps around h*; where it crosses 1 (linear interpolation) must be h* within the sampling
    error (propagated from the SE of the second moments)."""
    lam, mu2 = -3.0, 4.0
    sde = AffineSDE.scalar(0.0, lam, c2=mu2)
    h_star = -(2 * lam + mu2) / lam**2
    assert largest_ms_stable_step(sde, "euler_maruyama") == pytest.approx(h_star, rel=1e-12)
    n_steps, paths = 10, 200_000
    ratios = np.array([0.8, 0.9, 1.1, 1.2])
    growth, growth_se = [], []
    for r in ratios:
        h = r * h_star
        x = simulate(sde, [1.0], h, n_steps, [n_steps], n_paths=paths, seed=5,
                     scheme="euler_maruyama").values[0, :, 0]
        m2 = np.mean(x * x)
        se = np.std(x * x, ddof=1) / math.sqrt(paths)
        growth.append(m2 ** (1 / n_steps))
        growth_se.append(growth[-1] * se / (n_steps * m2))
        # each measured growth agrees with R(h) = |1 + hλ|² + hμ²
        assert abs(growth[-1] - ms_growth(sde, h, "euler_maruyama")) < 5 * growth_se[-1]
    g = np.asarray(growth)
    assert np.all(g[:2] < 1) and np.all(g[2:] > 1)
    cross = ratios[1] + (1 - g[1]) * (ratios[2] - ratios[1]) / (g[2] - g[1])
    slope = (g[2] - g[1]) / (ratios[2] - ratios[1])
    cross_se = math.hypot(growth_se[1], growth_se[2]) / slope
    assert abs(cross - 1.0) < 5 * cross_se + 0.01, (cross, cross_se)


def test_milstein_boundary_and_the_multidimensional_margin_reduce_to_the_scalar_formulas() -> None:
    sde = AffineSDE.scalar(0.0, -3.0, c2=4.0)
    # Milstein: |1 + hλ|² + hμ² + ½h²μ⁴ < 1  ⇒  h* = −(2λ + μ²)/(λ² + ½μ⁴)
    assert largest_ms_stable_step(sde, "milstein") == pytest.approx(2 / 17, rel=1e-12)
    assert ms_growth(sde, 0.1, "milstein") == pytest.approx((1 - 0.3) ** 2 + 0.4 + 0.5 * 0.01
                                                            * 16, rel=1e-12)
    # two uncoupled copies: the bisection of the d²-dimensional map finds the same step
    two = AffineSDE(np.zeros(2), np.diag([-3.0, -1.0]), np.array([[0, 0, 4.0], [0, 0, 0.5]]),
                    np.full(2, -np.inf), np.full(2, np.inf))
    assert largest_ms_stable_step(two, "euler_maruyama") == pytest.approx(2 / 9, rel=1e-9)
