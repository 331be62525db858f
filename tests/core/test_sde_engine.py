"""The core SDE engine against closed forms: exact transitions (OU, GBM, CIR by the non-central
χ², drifted Brownian motion), the exact-moment solver, walls with the Brownian-bridge test,
state-space fixes, ensemble statistics and the thread-independence of the per-path streams.

Tolerances are numbers of Monte Carlo standard errors (5 SE, or a KS/χ² level of 1e-3) with
fixed seeds; closed forms are from the references (REFERENCES §8), not from the code."""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest
from scipy import stats
from scipy.special import erf

from medtransport.numerics.ensemble import ensemble_statistics, histogram_density
from medtransport.numerics.sde import AffineSDE, exact_kinds, simulate
from medtransport.numerics.sde_moments import exact_moments

N_SIGMA = 5.0


def ou(theta: float = 2.0, m: float = 1.0, sigma: float = 0.5) -> AffineSDE:
    return AffineSDE.scalar(theta * m, -theta, c0=sigma * sigma)


def cir(kappa: float, theta: float, sigma: float) -> AffineSDE:
    return AffineSDE.scalar(kappa * theta, -kappa, c1=sigma * sigma, lower=0.0)


def within(est: np.ndarray, se: np.ndarray, exact: np.ndarray) -> None:
    z = np.abs(np.asarray(est) - np.asarray(exact)) / np.asarray(se)
    assert np.all(z < N_SIGMA), z


# ----------------------------------------------------------------------------- exact moments

def test_exact_moments_match_the_textbook_formulas() -> None:
    t = np.array([0.0, 0.3, 1.0, 5.0])
    # OU: m + (x0 − m)e^{−θt}, σ²(1 − e^{−2θt})/(2θ)
    mean, var = exact_moments(ou(2.0, 1.0, 0.5), [3.0], t)
    np.testing.assert_allclose(mean[:, 0], 1 + 2 * np.exp(-2 * t), rtol=1e-12)
    np.testing.assert_allclose(var[:, 0], 0.25 * (1 - np.exp(-4 * t)) / 4, rtol=1e-10,
                               atol=1e-15)
    # GBM: x0 e^{λt}, x0² e^{2λt}(e^{μ²t} − 1)
    mean, var = exact_moments(AffineSDE.scalar(0, -0.7, c2=0.09), [2.0], t)
    np.testing.assert_allclose(mean[:, 0], 2 * np.exp(-0.7 * t), rtol=1e-12)
    np.testing.assert_allclose(var[:, 0], 4 * np.exp(-1.4 * t) * np.expm1(0.09 * t),
                               rtol=1e-9, atol=1e-15)
    # CIR (Cox, Ingersoll & Ross 1985): x0 σ²/κ (e^{−κt} − e^{−2κt}) + θσ²/(2κ)(1 − e^{−κt})²
    k, th, s, x0 = 1.5, 0.04, 0.3, 0.1
    mean, var = exact_moments(cir(k, th, s), [x0], t)
    np.testing.assert_allclose(mean[:, 0], th + (x0 - th) * np.exp(-k * t), rtol=1e-12)
    ref = x0 * s**2 / k * (np.exp(-k * t) - np.exp(-2 * k * t)) \
        + th * s**2 / (2 * k) * (1 - np.exp(-k * t)) ** 2
    np.testing.assert_allclose(var[:, 0], ref, rtol=1e-9, atol=1e-15)
    # Jacobi: stationary Beta(μ/κ, (1 − μ)/κ): variance κμ(1 − μ)/(1 + κ)
    om, mu, ka = 2.0, 0.3, 0.5
    jac = AffineSDE.scalar(om * mu, -om, c1=2 * om * ka, c2=-2 * om * ka, lower=0, upper=1)
    mean, var = exact_moments(jac, [0.9], [50.0])
    assert mean[0, 0] == pytest.approx(mu, rel=1e-12)
    assert var[0, 0] == pytest.approx(ka * mu * (1 - mu) / (1 + ka), rel=1e-9)


def test_exact_moments_of_coupled_components_match_the_lyapunov_equation() -> None:
    """A 2-D OU with coupled drift: stationary covariance solves A P + P Aᵀ + Q = 0."""
    from scipy.linalg import solve_continuous_lyapunov

    a = np.array([[-1.0, 0.5], [0.0, -2.0]])
    sde = AffineSDE(np.zeros(2), a, np.array([[0.4, 0, 0], [0.9, 0, 0]]), np.full(2, -np.inf),
                    np.full(2, np.inf))
    p = solve_continuous_lyapunov(a, -np.diag([0.4, 0.9]))
    _, var = exact_moments(sde, [1.0, -1.0], [40.0])
    np.testing.assert_allclose(var[0], np.diag(p), rtol=1e-8)


# ----------------------------------------------------------------------------- transitions

@pytest.mark.parametrize("scheme", ["exact", "euler_maruyama", "milstein"])
def test_ou_and_gbm_moments_within_standard_errors(scheme: str) -> None:
    t_steps = [0, 25, 100]
    for sde, x0, dt in ((ou(), 3.0, 0.004), (AffineSDE.scalar(0, -0.5, c2=0.16), 1.0, 0.004)):
        r = simulate(sde, [x0], dt, 100, t_steps, n_paths=40_000, seed=4, scheme=scheme)
        st = ensemble_statistics(r.values)
        mean, var = exact_moments(sde, [x0], r.times)
        within(st.mean[1:, 0], st.mean_se[1:, 0], mean[1:, 0])
        within(st.variance[1:, 0], st.variance_se[1:, 0], var[1:, 0])


def test_gbm_exact_transition_is_log_normal() -> None:
    lam, mu, t = 0.3, 0.4, 2.0
    r = simulate(AffineSDE.scalar(0, lam, c2=mu * mu), [1.5], 0.5, 4, [4], n_paths=20_000,
                 seed=8, scheme="exact")
    logs = np.log(r.values[0, :, 0] / 1.5)
    ks = stats.kstest(logs, "norm", args=((lam - mu * mu / 2) * t, mu * math.sqrt(t)))
    assert ks.pvalue > 1e-3


@pytest.mark.parametrize(("kappa", "theta", "sigma"), [
    (1.0, 0.04, 0.1),   # ν = 4κθ/σ² = 16 > 1: normal + χ² branch
    (1.0, 0.04, 0.5),   # ν = 0.64 ≤ 1 (Feller violated): Poisson-mixture branch
    (3.0, 1.0, 0.4),    # ν = 75, λ large: PTRS Poisson not needed, but the Gamma path is
])
def test_cir_exact_transition_is_the_scaled_noncentral_chi_square(kappa: float, theta: float,
                                                                   sigma: float) -> None:
    h, x0 = 0.25, 0.05
    r = simulate(cir(kappa, theta, sigma), [x0], h, 1, [1], n_paths=20_000, seed=9,
                 scheme="exact")
    k = sigma**2 * (1 - math.exp(-kappa * h)) / (4 * kappa)
    df, nc = 4 * kappa * theta / sigma**2, x0 * math.exp(-kappa * h) / k
    x = r.values[0, :, 0]
    assert np.all(x >= 0)
    ks = stats.kstest(x / k, stats.ncx2(df, nc).cdf)
    assert ks.pvalue > 1e-3, ks


def test_cir_exact_reaches_the_gamma_stationary_law_and_poisson_branch_at_large_lambda() -> None:
    """Stationary CIR law: Gamma(2κθ/σ², scale σ²/(2κ)). Small steps make λ = x e^{−κh}/k
    large (the PTRS Poisson sampler when ν ≤ 1)."""
    kappa, theta, sigma = 2.0, 0.05, 0.5  # ν = 1.6 > 1 … and below with σ = 0.7
    for s in (sigma, 0.7):
        r = simulate(cir(kappa, theta, s), [theta], 0.01, 500, [500], n_paths=10_000, seed=2,
                     scheme="exact")
        law = stats.gamma(2 * kappa * theta / s**2, scale=s**2 / (2 * kappa))
        assert stats.kstest(r.values[0, :, 0], law.cdf).pvalue > 1e-3


def test_drifted_brownian_exact_equals_euler_maruyama_in_law() -> None:
    sde = AffineSDE.scalar(0.7, 0.0, c0=0.36)
    for scheme in ("exact", "euler_maruyama"):
        r = simulate(sde, [1.0], 0.1, 20, [20], n_paths=20_000, seed=3, scheme=scheme)
        assert stats.kstest(r.values[0, :, 0], "norm", args=(1 + 1.4, 0.6 * math.sqrt(2))
                            ).pvalue > 1e-3


def test_exact_kinds_are_recognised_and_an_unknown_one_is_refused() -> None:
    assert exact_kinds(ou()) == [1]
    assert exact_kinds(AffineSDE.scalar(0, -1, c2=1)) == [2]
    assert exact_kinds(cir(1, 1, 1)) == [3]
    jac = AffineSDE.scalar(0.3, -1, c1=1, c2=-1, lower=0, upper=1)
    assert exact_kinds(jac) == [0]
    with pytest.raises(ValueError, match="no exact transition"):
        simulate(jac, [0.5], 0.01, 1, [1], n_paths=10, seed=1, scheme="exact")


# ----------------------------------------------------------------------------- state space

def test_euler_on_cir_leaves_zero_unless_fixed_and_the_violations_are_counted() -> None:
    sde = cir(1.0, 0.04, 0.5)  # Feller violated: the raw scheme goes negative often
    raw = simulate(sde, [0.04], 0.02, 100, [100], n_paths=5000, seed=1, bounds_fix="none")
    assert np.nanmin(raw.values) < 0 and raw.violations.sum() > 0
    for fix in ("truncate", "reflect"):
        r = simulate(sde, [0.04], 0.02, 100, [0, 50, 100], n_paths=5000, seed=1,
                     bounds_fix=fix)
        assert np.nanmin(r.values) >= 0 and r.violations.sum() > 0
    ex = simulate(sde, [0.04], 0.02, 100, [100], n_paths=5000, seed=1, scheme="exact")
    assert ex.violations.sum() == 0 and np.min(ex.values) >= 0


def test_jacobi_with_fixes_stays_in_the_unit_interval_and_reaches_its_beta_law() -> None:
    om, mu, ka = 2.0, 0.3, 0.5
    jac = AffineSDE.scalar(om * mu, -om, c1=2 * om * ka, c2=-2 * om * ka, lower=0, upper=1)
    for fix in ("truncate", "reflect"):
        r = simulate(jac, [0.9], 0.001, 4000, [4000], n_paths=8000, seed=6, bounds_fix=fix)
        x = r.values[0, :, 0]
        assert np.all((x >= 0) & (x <= 1))
        assert stats.kstest(x, stats.beta(mu / ka, (1 - mu) / ka).cdf).pvalue > 1e-3


# ----------------------------------------------------------------------------- walls

def test_absorbing_wall_with_the_bridge_matches_the_reflection_principle() -> None:
    """BM from x0 = 1 above an absorbing wall at 0: survival erf(x0/√(2t)). Without the bridge
    test the survival is too high by O(√h) (the wall acts as if moved outwards)."""
    bm = AffineSDE.scalar(0.0, 0.0, c0=1.0)
    n = 40_000
    exact = erf(1 / math.sqrt(2.0))
    se = math.sqrt(exact * (1 - exact) / n)
    walls = [("absorbing", 0.0, "none", 0.0)]
    r = simulate(bm, [1.0], 0.02, 50, [0, 50], n_paths=n, seed=3, walls=walls)
    assert abs(r.alive()[-1] / n - exact) < N_SIGMA * se
    biased = simulate(bm, [1.0], 0.02, 50, [0, 50], n_paths=n, seed=3, walls=walls, bridge=False)
    assert biased.alive()[-1] / n - exact > 10 * se
    assert r.absorbed(0)[-1] + r.alive()[-1] == n
    # absorbed paths are NaN in values and held at the wall in stopped
    gone = r.absorbed_face >= 0
    assert np.all(np.isnan(r.values[-1, gone, 0])) and np.all(r.stopped[-1, gone, 0] == 0.0)


def test_reflecting_walls_fold_paths_into_the_interval_and_uniformise() -> None:
    bm = AffineSDE.scalar(0.0, 0.0, c0=1.0)
    r = simulate(bm, [0.2], 0.01, 300, [300], n_paths=20_000, seed=5,
                 walls=[("reflecting", 0.0, "reflecting", 1.0)])
    x = r.values[0, :, 0]
    assert np.all((x >= 0) & (x <= 1))
    assert stats.kstest(x, "uniform").pvalue > 1e-3  # t = 3 ≫ L²/D: uniform


# ----------------------------------------------------------------------------- streams

def test_same_seed_gives_the_same_bits_whatever_the_thread_count() -> None:
    sde = cir(1.0, 0.04, 0.5)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        a = simulate(sde, [0.04], 0.01, 50, [50], n_paths=3000, seed=77, scheme="exact")
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))  # 2 where allowed
        b = simulate(sde, [0.04], 0.01, 50, [50], n_paths=3000, seed=77, scheme="exact")
    finally:
        numba.set_num_threads(before)
    assert np.array_equal(a.values, b.values)
    c = simulate(sde, [0.04], 0.01, 50, [50], n_paths=3000, seed=78, scheme="exact")
    assert not np.array_equal(a.values, c.values)
    # path p's stream does not depend on how many paths run: the first 100 agree
    d = simulate(sde, [0.04], 0.01, 50, [50], n_paths=100, seed=77, scheme="exact")
    assert np.array_equal(a.values[:, :100], d.values)


# ----------------------------------------------------------------------------- statistics

def test_ensemble_standard_errors_match_the_normal_theory() -> None:
    rng = np.random.default_rng(0)
    n, sigma = 10_000, 2.0
    x = rng.normal(0, sigma, size=(1, n, 1))
    st = ensemble_statistics(x, (0.5, 0.9))
    assert st.mean_se[0, 0] == pytest.approx(sigma / math.sqrt(n), rel=0.05)
    assert st.variance_se[0, 0] == pytest.approx(sigma**2 * math.sqrt(2 / (n - 1)), rel=0.1)
    for j, p in enumerate((0.5, 0.9)):
        q = stats.norm.ppf(p, scale=sigma)
        asym = math.sqrt(p * (1 - p) / n) / stats.norm.pdf(q, scale=sigma)
        assert st.quantile_se[0, j, 0] == pytest.approx(asym, rel=0.25)


def test_histogram_density_integrates_to_the_surviving_fraction() -> None:
    x = np.array([[0.1, 0.5, 0.9, np.nan, 2.0]])
    h = histogram_density(x, np.linspace(0, 1, 5), n_started=5)
    assert (h.density[0] * 0.25).sum() + h.outside[0] == pytest.approx(4 / 5)
    assert h.outside[0] == pytest.approx(1 / 5)


def test_bad_input_is_refused_naming_what_was_expected() -> None:
    with pytest.raises(ValueError, match="1–3 components"):
        AffineSDE(np.zeros(4), np.zeros((4, 4)), np.zeros((4, 3)), np.zeros(4), np.ones(4))
    with pytest.raises(ValueError, match="scheme must be one of"):
        simulate(ou(), [0.0], 0.1, 1, [1], n_paths=2, seed=1, scheme="rk4")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="state space"):
        simulate(cir(1, 1, 1), [-1.0], 0.1, 1, [1], n_paths=2, seed=1)
    with pytest.raises(ValueError, match="output_steps"):
        simulate(ou(), [0.0], 0.1, 5, [0, 9], n_paths=2, seed=1)


@pytest.mark.parametrize("scheme", ["euler_maruyama", "milstein", "exact"])
def test_the_scalar_kernel_gives_the_same_bits_as_the_general_one(scheme: str) -> None:
    """One component runs a specialised loop; the general d-component loop must agree bit for
    bit (same draws per step, same fixes, walls and bookkeeping)."""
    sde = cir(1.0, 0.04, 0.5)
    kw: dict = {"n_paths": 500, "seed": 12, "scheme": scheme, "keep_decrease": True,
                "walls": [("none", 0.0, "absorbing", 0.08)]}
    fast = simulate(sde, [0.04], 0.01, 60, [0, 30, 60], **kw)
    slow = simulate(sde, [0.04], 0.01, 60, [0, 30, 60], _general=True, **kw)
    for name in ("values", "absorbed_face", "absorbed_step", "violations", "decrease"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(slow, name), err_msg=name)
    assert (fast.absorbed_face >= 0).any()
    if scheme != "exact":
        assert fast.violations.sum() > 0


@pytest.mark.parametrize("scheme", ["euler_maruyama", "milstein"])
def test_coupled_components_match_their_exact_moments(scheme: str) -> None:
    """2-D OU with a coupled drift and a 3-D process mixing OU, GBM and CIR components: the
    general (d-component) loop against the closed moment equations, within 5 SE."""
    a = np.array([[-1.0, 0.5], [0.0, -2.0]])
    ou2 = AffineSDE(np.array([0.5, 0.0]), a, np.array([[0.4, 0, 0], [0.9, 0, 0]]),
                    np.full(2, -np.inf), np.full(2, np.inf))
    mixed = AffineSDE(np.array([1.0, 0.0, 0.08]), np.diag([-1.0, -0.5, -2.0]),
                      np.array([[0.25, 0, 0], [0, 0, 0.09], [0, 0.09, 0]]),
                      np.array([-np.inf, -np.inf, 0.0]), np.full(3, np.inf))
    for sde, x0 in ((ou2, [1.0, -1.0]), (mixed, [2.0, 1.0, 0.04])):
        r = simulate(sde, x0, 0.002, 500, [0, 250, 500], n_paths=20_000, seed=31,
                     scheme=scheme)
        st = ensemble_statistics(r.values)
        mean, var = exact_moments(sde, x0, r.times)
        within(st.mean[1:], st.mean_se[1:], mean[1:])
        within(st.variance[1:], st.variance_se[1:], var[1:])


def test_walls_act_per_component_in_three_dimensions() -> None:
    bm3 = AffineSDE(np.zeros(3), np.zeros((3, 3)), np.array([[1.0, 0, 0]] * 3),
                    np.full(3, -np.inf), np.full(3, np.inf))
    walls = [("reflecting", 0.0, "reflecting", 1.0), ("none", 0.0, "none", 0.0),
             ("absorbing", -1.0, "none", 0.0)]
    r = simulate(bm3, [0.5, 0.0, 0.0], 0.01, 100, [100], n_paths=5000, seed=2, walls=walls)
    alive = np.isfinite(r.values[0, :, 0])
    assert np.all((r.values[0, alive, 0] >= 0) & (r.values[0, alive, 0] <= 1))
    assert set(np.unique(r.absorbed_face)) <= {-1, 4}  # only component 2's lower wall
    n = 5000
    p_survive = erf(1.0 / math.sqrt(2.0))
    assert abs(alive.mean() - p_survive) < N_SIGMA * math.sqrt(p_survive * (1 - p_survive) / n)
