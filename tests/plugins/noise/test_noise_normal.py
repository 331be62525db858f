"""The seeded normal generator and the fused closed-form noising."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from scipy import stats

from medtransport_noise.normal import add_noise, standard_normal

# Tests of randomness use a stated significance: p ≥ 1e-4 (a false alarm in 10 000 runs); the
# seeds are fixed, so a pass is reproducible.
ALPHA = 1e-4


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_standard_normal_is_standard_normal(dtype: type) -> None:
    z = standard_normal((16, 50_000), 123, dtype=dtype).astype(np.float64).ravel()
    n = z.size
    assert abs(z.mean()) < 5 / np.sqrt(n)
    assert abs(z.var() - 1) < 5 * np.sqrt(2 / n)
    assert abs(stats.skew(z)) < 5 * np.sqrt(6 / n)
    assert abs(stats.kurtosis(z)) < 5 * np.sqrt(24 / n)
    assert stats.kstest(z, "norm").pvalue > ALPHA
    # the tail is there (P(|z| > 4) = 6.3e-5: about 50 of 800 000)
    assert 20 < np.sum(np.abs(z) > 4) < 100


def test_streams_are_independent_and_pairs_uncorrelated() -> None:
    z = standard_normal((8, 2 * 65_536), 5).astype(np.float64)
    n = z.shape[1] // 2
    # elements 2p and 2p + 1 are the cos and sin of the same Box–Muller pair
    assert abs(np.corrcoef(z[0, 0::2], z[0, 1::2])[0, 1]) < 5 / np.sqrt(n)
    c = np.corrcoef(z)
    off = c[~np.eye(8, dtype=bool)]
    assert np.all(np.abs(off) < 5 / np.sqrt(z.shape[1]))
    # |z| of a pair are dependent only through R: their squares sum to a χ²₂ = Exp(1/2)
    r2 = z[0, 0::2] ** 2 + z[0, 1::2] ** 2
    assert stats.kstest(r2, "expon", args=(0, 2)).pvalue > ALPHA


def test_reproducible_and_independent_of_threads() -> None:
    a = standard_normal((64, 1, 32, 32), 9)
    assert np.array_equal(a, standard_normal((64, 1, 32, 32), 9))
    assert not np.array_equal(a, standard_normal((64, 1, 32, 32), 10))
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        assert np.array_equal(a, standard_normal((64, 1, 32, 32), 9))
    finally:
        numba.set_num_threads(before)


@pytest.mark.parametrize("shape", [(64, 1, 32, 32), (3, 200_001), (1, 7), (5,)])
def test_add_noise_is_the_affine_combination(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal(shape).astype(np.float32)
    rows = shape[0] if len(shape) > 1 else 1
    a = np.sqrt(np.linspace(0.05, 1.0, rows))
    b = np.sqrt(1.0 - a ** 2)
    y, eps = add_noise(x0, a, b, 4, return_noise=True)
    bshape = (rows,) + (1,) * (len(shape) - 1) if len(shape) > 1 else ()
    a32 = a.astype(np.float32).reshape(bshape) if bshape else np.float32(a[0])
    b32 = b.astype(np.float32).reshape(bshape) if bshape else np.float32(b[0])
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, a32 * x0 + b32 * eps)
    assert np.array_equal(y, add_noise(x0, a, b, 4))


def test_add_noise_marginal_moments() -> None:
    """E[x] = a·x0, Var[x] = b² per row, from 200 000 values per row."""
    x0 = np.full((4, 200_000), 2.0, dtype=np.float32)
    a = np.array([1.0, 0.8, 0.3, 0.0])
    b = np.sqrt(1 - a ** 2)
    y = add_noise(x0, a, b, 17).astype(np.float64)
    n = y.shape[1]
    for i in range(4):
        assert abs(y[i].mean() - 2 * a[i]) <= 5 * b[i] / np.sqrt(n)
        assert abs(y[i].var() - b[i] ** 2) <= 5 * b[i] ** 2 * np.sqrt(2 / n)
    assert np.all(y[0] == 2.0)
