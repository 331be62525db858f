"""Series solutions against independent evaluations, and the audit of their truncation.

Independent references: Crank's short-time erfc forms (eq. 4.19 for the sheet −L < x < L, here
with thickness l = 2L; eq. 6.21 for the sphere), which converge fast where the eigenfunction
series converges slowly,

    slab:   M_t/M_∞ = 4√τ {π^{−1/2} + 2 Σ_{n≥1} (−1)^n ierfc(n/(2√τ))},        τ = Dt/l²
    sphere: M_t/M_∞ = 6√τ {π^{−1/2} + 2 Σ_{n≥1} ierfc(n/√τ)} − 3τ,              τ = Dt/a²

with ierfc(x) = e^{−x²}/√π − x·erfc(x); and brute-force sums in exact-rounding ``math.fsum``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import erfc, roots_legendre

from medtransport.domain import Grid
from medtransport.numerics import series as s

D = 1e-9
TAUS = np.logspace(-8, 0.3, 40)


def ierfc(x: np.ndarray) -> np.ndarray:
    return np.exp(-x * x) / math.sqrt(math.pi) - x * erfc(x)


def slab_short_time(tau: np.ndarray) -> np.ndarray:
    tail = sum((-1) ** n * ierfc(n / (2 * np.sqrt(tau))) for n in range(1, 40))
    return 4 * np.sqrt(tau) * (1 / math.sqrt(math.pi) + 2 * tail)


def sphere_short_time(tau: np.ndarray) -> np.ndarray:
    tail = sum(ierfc(n / np.sqrt(tau)) for n in range(1, 40))
    return 6 * np.sqrt(tau) * (1 / math.sqrt(math.pi) + 2 * tail) - 3 * tau


def test_slab_release_matches_the_short_time_form() -> None:
    thickness = 2e-4
    t = TAUS * thickness ** 2 / D
    np.testing.assert_allclose(s.slab_release(t, D, thickness), slab_short_time(TAUS),
                               rtol=0, atol=1e-12)
    # The leading term alone is exact up to exponentially small terms while τ is small.
    small = TAUS <= 1e-3
    np.testing.assert_allclose(s.slab_release(t[small], D, thickness),
                               4 * np.sqrt(TAUS[small] / math.pi), rtol=0, atol=1e-13)


def test_sphere_release_matches_the_short_time_form() -> None:
    radius = 5e-5
    t = TAUS * radius ** 2 / D
    np.testing.assert_allclose(s.sphere_release(t, D, radius), sphere_short_time(TAUS),
                               rtol=0, atol=1e-12)
    small = TAUS <= 1e-3
    np.testing.assert_allclose(s.sphere_release(t[small], D, radius),
                               6 * np.sqrt(TAUS[small] / math.pi) - 3 * TAUS[small],
                               rtol=0, atol=1e-13)


@pytest.mark.parametrize("tau", [1e-4, 3e-3, 0.05, 0.4])
def test_release_matches_brute_force_sums(tau: float) -> None:
    slab = 1 - math.fsum(8 / ((2 * n + 1) ** 2 * math.pi ** 2)
                         * math.exp(-(2 * n + 1) ** 2 * math.pi ** 2 * tau)
                         for n in range(20_000))
    sphere = 1 - 6 / math.pi ** 2 * math.fsum(math.exp(-n * n * math.pi ** 2 * tau) / n ** 2
                                              for n in range(1, 20_001))
    assert s.slab_release(tau, 1.0, 1.0) == pytest.approx(slab, abs=1e-13)
    assert s.sphere_release(tau, 1.0, 1.0) == pytest.approx(sphere, abs=1e-13)


@pytest.mark.parametrize("n_terms", [1, 10, 1000, 100_000])
def test_t0_normalization_sums_approach_closed_forms_within_the_bound(n_terms: int) -> None:
    slab = s.slab_truncation(0.0, D, 1e-4, 1e-6, n_terms=n_terms)
    sphere = s.sphere_truncation(0.0, D, 1e-4, 1e-6, n_terms=n_terms)
    assert slab.exact_sum_at_t0 == pytest.approx(math.pi ** 2 / 8, rel=1e-15)
    assert sphere.exact_sum_at_t0 == pytest.approx(math.pi ** 2 / 6, rel=1e-15)
    for tr, bound, lower in ((slab, 1 / (4 * n_terms), 1 / (4 * n_terms + 2)),
                             (sphere, 1 / n_terms, 1 / (n_terms + 1))):
        tail = tr.exact_sum_at_t0 - tr.sum_at_t0
        assert tr.sum_tail_bound == pytest.approx(bound)
        # The measured tail lies inside the bound — and the bound is tight (integral below).
        assert lower * (1 - 1e-9) <= tail <= bound
    if n_terms <= 1000:
        assert slab.sum_at_t0 == pytest.approx(
            math.fsum(1 / (2 * n + 1) ** 2 for n in range(n_terms)), rel=1e-15)
        assert sphere.sum_at_t0 == pytest.approx(
            math.fsum(1 / n ** 2 for n in range(1, n_terms + 1)), rel=1e-15)
    # The truncated series at t = 0 misses release 0 by exactly prefactor × measured tail.
    m0 = s.sphere_release(0.0, D, 1e-4, n_terms=n_terms, exact_at_t0=False)
    assert float(m0) == pytest.approx(6 / math.pi ** 2 * (sphere.exact_sum_at_t0
                                                         - sphere.sum_at_t0), rel=1e-6)
    assert 0 < float(m0) <= sphere.tail_bound


@pytest.mark.parametrize("tau", [0.0, 1e-6, 1e-3, 0.1])
@pytest.mark.parametrize("n_terms", [1, 3, 30])
def test_tail_bound_is_rigorous(tau: float, n_terms: int) -> None:
    # Neglected part of M_t/M∞, measured with 10⁵ extra terms, never exceeds the bound.
    extra = np.arange(n_terms, n_terms + 100_000, dtype=float)
    k = 2 * extra + 1
    slab_tail = 8 / math.pi ** 2 * math.fsum(np.exp(-k * k * math.pi ** 2 * tau) / k ** 2)
    n = extra + 1
    sphere_tail = 6 / math.pi ** 2 * math.fsum(np.exp(-n * n * math.pi ** 2 * tau) / n ** 2)
    assert slab_tail <= s.slab_tail_bound(tau, 1.0, 1.0, n_terms)
    assert sphere_tail <= s.sphere_tail_bound(tau, 1.0, 1.0, n_terms)


def test_truncation_meets_the_tolerance_with_the_fewest_terms() -> None:
    times = np.array([0.0, 2.0, 0.5, 10.0])  # t = 0 is served by the initial state
    for trunc, bound in ((s.slab_truncation, s.slab_tail_bound),
                         (s.sphere_truncation, s.sphere_tail_bound)):
        tr = trunc(times, D, 1e-4, 1e-10)
        assert tr.time == 0.5 and tr.tolerance == 1e-10
        assert tr.ok and tr.tail_bound <= 1e-10
        assert bound(0.5, D, 1e-4, tr.n_terms) == tr.tail_bound
        assert bound(0.5, D, 1e-4, tr.n_terms - 1) > 1e-10
        # A deliberately too-small N is flagged by its bound.
        short = trunc(times, D, 1e-4, 1e-10, n_terms=tr.n_terms // 2)
        assert short.tail_bound > short.tolerance and not short.ok
    at_zero = s.slab_truncation(0.0, D, 1e-4, 1e-6)
    assert at_zero.n_terms == math.ceil(2 / (math.pi ** 2 * 1e-6))  # 8/π² · 1/(4N) ≤ tol


def test_work_beyond_the_cap_is_refused_naming_the_achievable_tolerance() -> None:
    with pytest.raises(ValueError, match="achievable tolerance"):
        s.sphere_truncation(0.0, D, 1e-4, 1e-12)
    with pytest.raises(ValueError, match="achievable tolerance"):
        s.sphere_release([0.0, 1.0], D, 1e-4, tol=1e-12, exact_at_t0=False)
    grid = Grid("cartesian", (0.0,), (1e-4,), (10_000,))
    with pytest.raises(ValueError, match="achievable tolerance"):
        s.slab_cell_average(grid, np.linspace(1e-6, 1.0, 1000), D, 1.0, tol=1e-14)


@pytest.mark.parametrize("n_terms", [None, 5, 4000])
def test_cell_averages_sum_to_the_remaining_amount(n_terms: int | None) -> None:
    c0, thickness, radius = 3.0, 2e-4, 1.5e-4
    times = np.array([0.0, 1e-3, 0.1, 3.0, 40.0])
    exact0 = n_terms is None
    slab = Grid("cartesian", (1e-3,), (1e-3 + thickness,), (37,))
    avg = s.slab_cell_average(slab, times, D, c0, n_terms=n_terms, exact_at_t0=exact0)
    amount = s.slab_amount(times, D, thickness, c0, n_terms=n_terms, exact_at_t0=exact0)
    np.testing.assert_allclose(avg @ slab.weights, amount, rtol=1e-12, atol=0)
    ball = Grid("sphere", (0.0,), (radius,), (41,))
    avg = s.sphere_shell_average(ball, times, D, c0, n_terms=n_terms, exact_at_t0=exact0)
    amount = s.sphere_amount(times, D, radius, c0, n_terms=n_terms, exact_at_t0=exact0)
    np.testing.assert_allclose(avg @ ball.weights, amount, rtol=1e-12, atol=0)
    total = c0 * 4 / 3 * math.pi * radius ** 3
    released = s.sphere_release(times, D, radius, n_terms=n_terms, exact_at_t0=exact0)
    np.testing.assert_allclose(amount, total * (1 - released), rtol=0, atol=1e-15 * total)


def test_cell_averages_are_means_of_the_profile() -> None:
    # 20-point Gauss–Legendre per cell on the (smooth, t > 0) profile.
    c0, thickness, radius, t = 2.0, 1e-4, 1e-4, np.array([0.02, 1.0])
    nodes, wts = roots_legendre(20)
    slab = Grid("cartesian", (0.0,), (thickness,), (9,))
    e = slab.edges(0)
    x = (0.5 * (e[1:] + e[:-1])[:, None] + 0.5 * np.diff(e)[:, None] * nodes).ravel()
    prof = s.slab_profile(x, t, D, thickness, c0).reshape(2, 9, 20)
    np.testing.assert_allclose(s.slab_cell_average(slab, t, D, c0), 0.5 * prof @ wts,
                               rtol=1e-10, atol=1e-13)
    ball = Grid("sphere", (0.0,), (radius,), (7,))
    e = ball.edges(0)
    r = 0.5 * (e[1:] + e[:-1])[:, None] + 0.5 * np.diff(e)[:, None] * nodes
    prof = s.sphere_profile(r.ravel(), t, D, radius, c0).reshape(2, 7, 20)
    shell = (prof * 4 * math.pi * r ** 2 * 0.5 * np.diff(e)[:, None]) @ wts
    np.testing.assert_allclose(s.sphere_shell_average(ball, t, D, c0), shell / ball.weights,
                               rtol=1e-10, atol=1e-13)


def test_profiles_honour_initial_and_boundary_conditions() -> None:
    c0, length = 5.0, 1e-4
    x = np.linspace(0, length, 11)
    prof = s.slab_profile(x, [0.0, 0.5, 2.0], D, length, c0)
    np.testing.assert_array_equal(prof[0], c0)  # t = 0: the known initial state
    np.testing.assert_allclose(prof[1:, [0, -1]], 0.0, atol=1e-12)
    np.testing.assert_allclose(prof[1:], prof[1:, ::-1], rtol=1e-12, atol=1e-15)  # symmetric
    r = np.linspace(0, length, 11)
    sph = s.sphere_profile(r, [0.0, 0.5, 2.0], D, length, c0)
    np.testing.assert_array_equal(sph[0], c0)
    np.testing.assert_allclose(sph[1:, -1], 0.0, atol=1e-12)
    # Centre: the limit r → 0 of the series, 2c₀ Σ (−1)^{n+1} e_n, is finite.
    n = np.arange(1, 200)
    for row, t in zip(sph[1:], (0.5, 2.0), strict=True):
        centre = 2 * c0 * math.fsum((-1.0) ** (n + 1) * np.exp(-n * n * math.pi ** 2 * D * t
                                                               / length ** 2))
        assert row[0] == pytest.approx(centre, rel=1e-12)
    assert s.slab_profile(x, 1.0, D, length, c0).shape == (11,)
    with pytest.raises(ValueError, match="non-negative"):
        s.slab_release([-1.0], D, length)
