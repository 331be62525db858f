"""Statistics computed while the paths run (``numerics.sde_ensemble``), checked three ways:

- against the same paths rebuilt independently in numpy from the core compact normal stream
  (``normal.fill_compact_normal``) and summarised by ``numerics.ensemble`` — moments to
  round-off, histogram counts, extremes and kept paths exactly;
- against the exact moments and laws of the processes (5 Monte Carlo SE, KS level 1e-3);
- for the same bits whatever the number of threads and the number of paths.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest
from scipy import stats

from medtransport.numerics.ensemble import ensemble_statistics
from medtransport.numerics.normal import fill_compact_normal
from medtransport.numerics.sde import AffineSDE
from medtransport.numerics.sde_ensemble import BLOCK, run_ensemble, supports
from medtransport.numerics.sde_moments import exact_moments

N_SIGMA = 5.0


def gbm() -> AffineSDE:
    return AffineSDE.scalar(0.0, -0.5, c2=0.09)


def cir(kappa: float = 2.0, theta: float = 0.04, sigma: float = 0.3) -> AffineSDE:
    return AffineSDE.scalar(kappa * theta, -kappa, c1=sigma * sigma, lower=0.0)


def increments(n_paths: int, n_steps: int, seed: int) -> np.ndarray:
    """The standard normals of each path and step, (n_steps, n_paths), from the module's stated
    layout: steps 2k + 1 and 2k + 2 of lane j in block b are elements 2p and 2p + 1 of the
    seed's compact stream, p = b·2⁴⁰ + k·BLOCK + j."""
    pairs = (n_steps + 1) // 2
    out = np.empty((2 * pairs, n_paths))
    for b in range((n_paths + BLOCK - 1) // BLOCK):
        buf = fill_compact_normal(np.empty((pairs, BLOCK, 2)), seed, offset=2 * b * 2**40)
        lanes = min(BLOCK, n_paths - b * BLOCK)
        out[:, b * BLOCK:b * BLOCK + lanes] = buf[:, :lanes, :].transpose(0, 2, 1).reshape(
            2 * pairs, lanes)
    return out[:n_steps]


def em_paths(a0: float, a1: float, c: tuple[float, float, float], x0: float, h: float,
             z: np.ndarray, out: list[int], lower: float = -np.inf) -> np.ndarray:
    """Euler–Maruyama with full truncation, written out in numpy (states at ``out``)."""
    x = np.full(z.shape[1], x0)
    rec = [x.copy()] if out[0] == 0 else []
    for k in range(z.shape[0]):
        xv = np.maximum(x, lower)
        b = np.sqrt(np.maximum(c[0] + (c[1] + c[2] * xv) * xv, 0.0))
        x = x + (a0 + a1 * xv) * h + b * math.sqrt(h) * z[k]
        if k + 1 in out:
            rec.append(np.maximum(x, lower))
    return np.array(rec)


@pytest.mark.parametrize("n_paths", [300, 700])
def test_statistics_equal_those_of_the_same_paths_rebuilt_in_numpy(n_paths: int) -> None:
    sde = cir()
    steps, out, h, seed = 41, [0, 7, 40, 41], 0.01, 20261203
    z = increments(n_paths, steps, seed)
    paths = em_paths(0.08, -2.0, (0.0, 0.09, 0.0), 0.04, h, z, out, lower=0.0)
    run = run_ensemble(sde, 0.04, h, steps, out, n_paths=n_paths, seed=seed,
                       edges=(0.0, 0.1, 20), keep=5)
    ref = ensemble_statistics(paths, (0.5,))
    np.testing.assert_allclose(run.mean, ref.mean[:, 0], rtol=1e-12)
    np.testing.assert_allclose(run.variance[1:], ref.variance[1:, 0], rtol=1e-9)
    np.testing.assert_allclose(run.variance_se[1:], ref.variance_se[1:, 0], rtol=1e-6)
    np.testing.assert_allclose(run.samples, paths[:, :5], rtol=1e-12)
    np.testing.assert_allclose(run.minimum, paths.min(axis=1), rtol=1e-12)
    np.testing.assert_allclose(run.maximum, paths.max(axis=1), rtol=1e-12)
    for k in range(len(out)):
        counts = np.histogram(paths[k], run.edges)[0]
        assert np.array_equal(run.counts[k], counts)
        assert run.below[k] + run.above[k] == n_paths - counts.sum()
    # the median read off the fine cells is within a fine cell of the order statistic
    assert np.all(np.abs(run.quantiles[1:, 1] - ref.quantiles[1:, 0, 0])
                  <= run.fine_width + 1e-15)


def test_violations_are_the_steps_that_left_the_state_space() -> None:
    sde = cir(2.0, 0.02, 0.6)  # Feller fails badly: EM often steps below zero
    steps, h, seed, n = 60, 0.02, 7, 300
    z = increments(n, steps, seed)
    x = np.full(n, 0.02)
    left = 0
    for k in range(steps):
        xv = np.maximum(x, 0.0)
        x = x + (0.04 - 2.0 * xv) * h + np.sqrt(0.36 * xv) * math.sqrt(h) * z[k]
        left += int(np.sum(x < 0.0))
    run = run_ensemble(sde, 0.02, h, steps, [steps], n_paths=n, seed=seed,
                       edges=(0.0, 0.2, 10))
    assert left > 0
    assert run.violations == left
    assert run.minimum[0] >= 0.0  # recorded states are the truncated ones
    none = run_ensemble(sde, 0.02, h, steps, [steps], n_paths=n, seed=seed,
                        edges=(0.0, 0.2, 10), bounds_fix="none")
    assert none.violations > 0 and none.minimum[0] < 0.0  # its own paths: nothing clipped
    refl = run_ensemble(sde, 0.02, h, steps, [steps], n_paths=n, seed=seed,
                        edges=(0.0, 0.2, 10), bounds_fix="reflect")
    assert refl.minimum[0] >= 0.0 and refl.violations > 0


def test_the_same_bits_for_any_thread_count_and_any_number_of_paths() -> None:
    before = numba.get_num_threads()
    runs = []
    try:
        for threads in (1, numba.config.NUMBA_NUM_THREADS):
            numba.set_num_threads(threads)
            for scheme in ("euler_maruyama", "exact"):
                runs.append(run_ensemble(cir(), 0.04, 0.01, 30, [10, 30], n_paths=5000,
                                         seed=3, edges=(0.0, 0.12, 30), scheme=scheme,
                                         keep=10))
    finally:
        numba.set_num_threads(before)
    for a, b in ((runs[0], runs[2]), (runs[1], runs[3])):
        for name in ("mean", "variance", "variance_se", "minimum", "maximum", "counts",
                     "samples", "quantiles"):
            assert np.array_equal(getattr(a, name), getattr(b, name), equal_nan=True), name
    fewer = run_ensemble(cir(), 0.04, 0.01, 30, [10, 30], n_paths=300, seed=3,
                         edges=(0.0, 0.12, 30), keep=10)
    assert np.array_equal(fewer.samples, runs[0].samples)  # a path's draws are its own


@pytest.mark.parametrize(("name", "sde", "x0", "scheme"), [
    ("GBM exact", gbm(), 1.0, "exact"),
    ("GBM Milstein", gbm(), 1.0, "milstein"),
    ("OU exact", AffineSDE.scalar(2.0, -2.0, c0=0.25), 3.0, "exact"),
    ("CIR exact ν = 3.6", cir(), 0.04, "exact"),
    ("CIR exact ν = 2.5 (boosted Gamma)", cir(1.0, 0.0625, 0.2), 0.02, "exact"),
    ("Jacobi EM", AffineSDE.scalar(0.6, -2.0, c1=2.0, c2=-2.0, lower=0.0, upper=1.0), 0.9,
     "euler_maruyama"),
])
def test_moments_match_the_exact_ones(name: str, sde: AffineSDE, x0: float,
                                      scheme: str) -> None:
    times = np.array([0.1, 0.5, 1.0])
    h = 0.002
    out = [round(float(t) / h) for t in times]
    run = run_ensemble(sde, x0, h, out[-1], out, n_paths=40_000, seed=11,
                       edges=(float(max(sde.lower[0], -5)), float(min(sde.upper[0], 6.0)), 40),
                       scheme=scheme)
    mean, var = exact_moments(sde, [x0], times)
    z_mean = (run.mean - mean[:, 0]) / run.mean_se
    z_var = (run.variance - var[:, 0]) / run.variance_se
    assert np.all(np.abs(z_mean) < N_SIGMA), (name, z_mean)
    assert np.all(np.abs(z_var) < N_SIGMA), (name, z_var)
    assert np.all(run.alive == 40_000) and np.all(run.non_finite == 0)


def test_cir_exact_law_is_the_scaled_noncentral_chi_square() -> None:
    kappa, theta, sigma, x0, t = 2.0, 0.04, 0.3, 0.04, 0.5
    run = run_ensemble(cir(kappa, theta, sigma), x0, t / 5, 5, [5], n_paths=20_000, seed=4,
                       edges=(0.0, 0.2, 200), scheme="exact")
    k = sigma**2 * -math.expm1(-kappa * t) / (4 * kappa)
    law = stats.ncx2(4 * kappa * theta / sigma**2, x0 * math.exp(-kappa * t) / k, scale=k)
    expected = np.diff(law.cdf(run.edges)) * 20_000
    keep = expected > 5
    chi2 = float(np.sum((run.counts[0][keep] - expected[keep]) ** 2 / expected[keep]))
    assert stats.chi2.sf(chi2, int(keep.sum()) - 1) > 1e-3, chi2


def test_gbm_quantiles_against_the_log_normal_law() -> None:
    run = run_ensemble(gbm(), 1.0, 0.01, 100, [100], n_paths=50_000, seed=8,
                       edges=(0.0, 3.0, 60), scheme="exact", levels=(0.05, 0.5, 0.95))
    law = stats.lognorm(s=0.3, scale=math.exp(-0.5 - 0.045))
    exact = law.ppf([0.05, 0.5, 0.95])
    assert np.all(np.abs(run.quantiles[0] - exact) < N_SIGMA * run.quantile_se[0])


def test_refusals_name_what_is_wrong() -> None:
    assert supports(cir(1.0, 0.01, 0.3), "exact") is not None  # ν = 0.44: Poisson mixture
    with pytest.raises(ValueError, match="ν"):
        run_ensemble(cir(1.0, 0.01, 0.3), 0.01, 0.1, 3, [3], n_paths=10, seed=1,
                     edges=(0.0, 1.0, 3), scheme="exact")
    with pytest.raises(ValueError, match="output_steps"):
        run_ensemble(gbm(), 1.0, 0.1, 3, [4], n_paths=10, seed=1, edges=(0.0, 1.0, 3))
    with pytest.raises(ValueError, match="edges"):
        run_ensemble(gbm(), 1.0, 0.1, 3, [3], n_paths=10, seed=1, edges=(1.0, 0.0, 3))
    with pytest.raises(ValueError, match="seed"):
        run_ensemble(gbm(), 1.0, 0.1, 3, [3], n_paths=10, seed=-1, edges=(0.0, 1.0, 3))
