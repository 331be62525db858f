"""The core random-normal generator: its bits, its law, its reproducibility."""

from __future__ import annotations

import itertools

import numba
import numpy as np
import pytest
from scipy import stats

from medtransport.numerics import normal, threads
from medtransport.numerics.normal import (
    add_noise,
    compact_normal,
    fill_compact_normal,
    fill_standard_normal,
    standard_normal,
    stream_key,
)

# Tests of randomness at a stated significance: p ≥ 1e-4 (a false alarm in 10 000 runs); the
# seeds are fixed, so a pass is reproducible.
ALPHA = 1e-4
M64 = (1 << 64) - 1


def splitmix64(key: int, counters: np.ndarray) -> np.ndarray:
    """SplitMix64 words written out independently in Python integers (Steele et al. 2014)."""
    out = []
    for c in counters.tolist():
        z = (key + (c + 1) * 0x9E3779B97F4A7C15) & M64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        out.append(z ^ (z >> 31))
    return np.array(out, dtype=np.uint64)


def test_words_are_splitmix64() -> None:
    # published reference: SplitMix64 seeded with 1234567 starts 6457827717110365317, …
    w = [int(normal._word(np.uint64(1234567), np.uint64(c))) for c in range(3)]
    assert w == [6457827717110365317, 3203168211198807973, 9817491932198370423]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_values_are_box_muller_of_the_stated_bits(dtype: type) -> None:
    """Against libm's log/cos/sin in float64 applied to the documented bit layout."""
    seed, n_pairs = 77, 4096
    key = int(stream_key(seed))
    z = standard_normal(2 * n_pairs, seed, dtype=dtype)
    p = np.arange(n_pairs, dtype=np.uint64)
    if dtype == np.float64:
        w0, w1 = splitmix64(key, 2 * p), splitmix64(key, 2 * p + 1)
        u1 = 1.0 - (w0 >> np.uint64(12)).astype(np.float64) * 2.0 ** -52
        t = (w1 >> np.uint64(10)).astype(np.float64) * 2.0 ** -54  # 54 bits, rounded
    else:
        w = splitmix64(key, p)
        u1 = 1.0 - (w >> np.uint64(24)).astype(np.float64) * 2.0 ** -40
        t = (w & np.uint64((1 << 24) - 1)).astype(np.float64) * 2.0 ** -24
    r = np.sqrt(-2.0 * np.log(u1))
    theta = 2 * np.pi * t - np.pi / 4
    ref = np.empty(2 * n_pairs)
    ref[0::2], ref[1::2] = r * np.cos(theta), r * np.sin(theta)
    if dtype == np.float64:
        assert np.max(np.abs(z - ref) / np.maximum(1, np.abs(ref))) < 2e-14
    else:  # rounded once to float32: within one float32 ulp of the float64 value
        ulp = np.spacing(np.abs(ref).astype(np.float32)).astype(np.float64)
        assert np.all(np.abs(z - ref) <= ulp)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_law_is_standard_normal(dtype: type) -> None:
    assert_standard_normal(standard_normal(2_000_000, 2024, dtype=dtype).astype(np.float64))


def assert_standard_normal(z: np.ndarray) -> None:
    """Moments, KS, Anderson–Darling, tails and binned χ² of 2·10⁶ deviates against N(0, 1)."""
    n = z.size
    # moments within 5 standard errors
    assert abs(z.mean()) < 5 / np.sqrt(n)
    assert abs(z.var() - 1) < 5 * np.sqrt(2 / n)
    assert abs(stats.skew(z)) < 5 * np.sqrt(6 / n)
    assert abs(stats.kurtosis(z)) < 5 * np.sqrt(24 / n)
    assert stats.kstest(z[:500_000], "norm").pvalue > ALPHA
    # Anderson–Darling on 200 000: A² below 6.0 (p ≈ 1e-3.5 for a fully specified normal)
    y = np.sort(stats.norm.cdf(z[:200_000]))
    m = y.size
    i = np.arange(1, m + 1)
    a2 = -m - np.mean((2 * i - 1) * (np.log(y) + np.log1p(-y[::-1])))
    assert a2 < 6.0
    # tail frequencies within 5 binomial standard deviations
    for level in (2.0, 3.0, 4.0, 4.5):
        prob = 2 * stats.norm.sf(level)
        count = np.count_nonzero(np.abs(z) > level)
        assert abs(count - n * prob) < 5 * np.sqrt(n * prob * (1 - prob)) + 1, level
    # binned χ² over 40 equiprobable bins
    edges = stats.norm.ppf(np.linspace(0, 1, 41))
    counts = np.histogram(z, bins=edges)[0]
    assert stats.chisquare(counts).pvalue > ALPHA


def test_pairs_and_neighbours_are_independent() -> None:
    z = standard_normal(1_000_000, 8, dtype=np.float64)
    z1, z2 = z[0::2], z[1::2]
    n = z1.size
    assert abs(np.corrcoef(z1, z2)[0, 1]) < 5 / np.sqrt(n)
    assert abs(np.corrcoef(z1 ** 2, z2 ** 2)[0, 1]) < 5 / np.sqrt(n)
    assert abs(np.corrcoef(z[:-1], z[1:])[0, 1]) < 5 / np.sqrt(z.size)
    # z₁² + z₂² = R² ~ χ²₂ = Exp(mean 2); the angle of a pair is uniform
    assert stats.kstest(z1 ** 2 + z2 ** 2, "expon", args=(0, 2)).pvalue > ALPHA
    assert stats.kstest(np.arctan2(z2, z1), "uniform", args=(-np.pi, 2 * np.pi)).pvalue > ALPHA
    # different seeds, and spawned children of one seed, are uncorrelated streams
    streams = [standard_normal(200_000, s) for s in np.random.SeedSequence(3).spawn(4)]
    streams.append(standard_normal(200_000, 4))
    c = np.corrcoef(np.array(streams, dtype=np.float64))
    assert np.all(np.abs(c[~np.eye(5, dtype=bool)]) < 5 / np.sqrt(200_000))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bitwise_reproducible_for_any_thread_count_and_split(dtype: type) -> None:
    n = 5 * normal.BLOCK + 3  # above the parallel threshold, ragged last block
    runs = []
    for count in sorted({1, 2, numba.config.NUMBA_NUM_THREADS}):
        with threads.requested_for(count):
            runs.append(standard_normal(n, 11, dtype=dtype))
            runs.append(add_noise(np.ones((3, n), dtype), [0.5, 0.7, 0.9], 0.3, 11))
    for other in runs[2::2]:
        assert np.array_equal(other, runs[0])
    for other in runs[3::2]:
        assert np.array_equal(other, runs[1])
    # the serial path gives the same bits as the parallel one
    whole = runs[0]
    serial = np.empty_like(whole)
    normal._fill_serial(serial, stream_key(11), 0, dtype == np.float64)
    assert np.array_equal(serial, whole)
    # pieces at any offset, odd ones included, concatenate to the whole draw
    cuts = [0, 1, 6, 7, normal.BLOCK + 1, 3 * normal.BLOCK, n]
    pieces = [standard_normal(b - a, 11, dtype=dtype, offset=a)
              for a, b in itertools.pairwise(cuts)]
    assert np.array_equal(np.concatenate(pieces), whole)
    # same seed → same array; another seed → another array; int and SeedSequence agree
    assert np.array_equal(standard_normal(n, np.random.SeedSequence(11), dtype=dtype), whole)
    assert not np.array_equal(standard_normal(n, 12, dtype=dtype), whole)


@pytest.mark.parametrize("shape", [(64, 1, 32, 32), (3, 70_001), (1, 7), (5,), (2, 0)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_add_noise_is_the_affine_combination(shape: tuple[int, ...], dtype: type) -> None:
    x0 = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    rows = shape[0] if len(shape) > 1 else 1
    a = np.sqrt(np.linspace(0.05, 1.0, rows))
    b = np.sqrt(1.0 - a ** 2)
    y, eps = add_noise(x0, a, b, 4, return_noise=True)
    assert np.array_equal(eps, standard_normal(shape, 4, dtype=dtype))
    bshape = (rows,) + (1,) * (len(shape) - 1) if len(shape) > 1 else (1,)
    expected = (a.astype(dtype).reshape(bshape) * x0) + (b.astype(dtype).reshape(bshape) * eps)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, expected)
    assert np.array_equal(y, add_noise(x0, a, b, 4))


def test_fill_and_bad_input() -> None:
    out = np.empty((4, 9), dtype=np.float32)
    assert fill_standard_normal(out, 3) is out
    assert np.array_equal(out, standard_normal((4, 9), 3))
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        standard_normal(4, 1, dtype=np.int32)
    with pytest.raises(TypeError, match="x0 must be float32 or float64"):
        add_noise(np.ones(4, dtype=np.int64), 1.0, 0.0, 1)
    with pytest.raises(ValueError, match="offset must be a non-negative"):
        standard_normal(4, 1, offset=-1)
    with pytest.raises(ValueError, match="out must be C-contiguous"):
        fill_standard_normal(np.empty((4, 4))[:, ::2], 1)


def test_compact_stream_is_box_muller_of_one_word_per_pair() -> None:
    """Against libm's log/cos/sin in float64 applied to the documented layout (the float32
    stream's: one word per pair), to the polynomials' stated 1e-10."""
    seed, n_pairs = 77, 4096
    key = int(stream_key(seed))
    z = compact_normal(2 * n_pairs, seed)
    w = splitmix64(key, np.arange(n_pairs, dtype=np.uint64))
    u1 = 1.0 - (w >> np.uint64(24)).astype(np.float64) * 2.0 ** -40
    t = (w & np.uint64((1 << 24) - 1)).astype(np.float64) * 2.0 ** -24
    r = np.sqrt(-2.0 * np.log(u1))
    theta = 2 * np.pi * t - np.pi / 4
    ref = np.empty(2 * n_pairs)
    ref[0::2], ref[1::2] = r * np.cos(theta), r * np.sin(theta)
    err = np.max(np.abs(z - ref) / np.maximum(1, np.abs(ref)))
    assert 0 < err < 1e-10  # float64 values, not the float64 stream's 1e-16 polynomials
    assert z.dtype == np.float64


def test_compact_law_and_independence() -> None:
    z = compact_normal(2_000_000, 2024)
    assert_standard_normal(z)
    z1, z2 = z[0:1_000_000:2], z[1:1_000_000:2]
    n = z1.size
    assert abs(np.corrcoef(z1, z2)[0, 1]) < 5 / np.sqrt(n)
    assert abs(np.corrcoef(z1 ** 2, z2 ** 2)[0, 1]) < 5 / np.sqrt(n)
    assert stats.kstest(z1 ** 2 + z2 ** 2, "expon", args=(0, 2)).pvalue > ALPHA
    assert stats.kstest(np.arctan2(z2, z1), "uniform", args=(-np.pi, 2 * np.pi)).pvalue > ALPHA
    # not the float64 stream of the same seed: uncorrelated with it
    other = standard_normal(200_000, 2024, dtype=np.float64)
    assert abs(np.corrcoef(z[:200_000], other)[0, 1]) < 5 / np.sqrt(200_000)


def test_compact_bitwise_reproducible_for_any_thread_count_and_split() -> None:
    n = 5 * normal.BLOCK + 3
    runs = []
    for count in sorted({1, 2, numba.config.NUMBA_NUM_THREADS}):
        with threads.requested_for(count):
            runs.append(compact_normal(n, 11))
    whole = runs[0]
    assert all(np.array_equal(r, whole) for r in runs[1:])
    serial = np.empty_like(whole)
    normal._FILL_COMPACT[0](serial, stream_key(11), 0)
    assert np.array_equal(serial, whole)
    cuts = [0, 1, 6, 7, normal.BLOCK + 1, 3 * normal.BLOCK, n]
    pieces = [compact_normal(b - a, 11, offset=a) for a, b in itertools.pairwise(cuts)]
    assert np.array_equal(np.concatenate(pieces), whole)
    assert np.array_equal(compact_normal(n, np.random.SeedSequence(11)), whole)
    out = np.empty((3, 7))
    assert fill_compact_normal(out, 11) is out and np.array_equal(out.ravel(), whole[:21])
    with pytest.raises(TypeError, match="out must be float64"):
        fill_compact_normal(np.empty(4, np.float32), 1)
    with pytest.raises(ValueError, match="offset must be a non-negative"):
        compact_normal(4, 1, offset=-1)


def test_the_serial_kernels_never_start_the_thread_pool_even_from_numbas_cache() -> None:
    """numba names cache files by function, not by flags: a serial and a parallel dispatcher
    of one function would load each other's code. Run both, then the serial one alone in a
    fresh process (a cache hit): it must not have started numba's thread pool."""
    import subprocess
    import sys

    both = ("import numpy as np; from medtransport.numerics import normal as m\n"
            "x = np.empty(8 * m.PARALLEL_MIN)\n"
            "m._FILL[1][1](x, m.stream_key(3), 0); m._FILL[1][0](x, m.stream_key(3), 0)\n"
            "m._FILL_COMPACT[1](x, m.stream_key(3), 0)\n"
            "m._FILL_COMPACT[0](x, m.stream_key(3), 0)\n")
    serial = ("import numba, numpy as np; from medtransport.numerics import normal as m\n"
              "x = np.empty(8 * m.PARALLEL_MIN)\n"
              "m._FILL[1][0](x, m.stream_key(3), 0); m._FILL_COMPACT[0](x, m.stream_key(3), 0)\n"
              "try:\n"
              "    print('pool started:', numba.threading_layer())\n"
              "except ValueError:\n"
              "    print('no pool')\n")
    for code in (both, serial):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=300)
        assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "no pool"
