"""The streamed bands' grid (:mod:`medtransport.bands`): each value's bin from its bits
against the bin written out with ``frexp`` from the module docstring's intervals, whatever
the memory order of the curve, and the counts of a chunk against ``np.unique``."""

from __future__ import annotations

import numpy as np
import pytest

from medtransport.bands import BITS, EXPONENT, bin_of, chunk_counts, count_keys, curve_keys


def reference_bin(x: float, bits: int = BITS, exponent: int = EXPONENT) -> int:
    """[2^e·(1 + j/2^K), 2^e·(1 + (j + 1)/2^K)) numbered outwards from the small bin."""
    per_sign = 2 * exponent << bits
    zero = per_sign + 1
    if np.isnan(x):
        return -1
    a = abs(x)
    if a < 2.0**-exponent:
        return zero
    if a >= 2.0**exponent:
        return 2 * per_sign + 2 if x > 0 else 0
    _, e2 = np.frexp(a)  # a = m·2^e2, m in [1/2, 1): e = e2 − 1
    e = int(e2) - 1
    j = int(np.floor((a / 2.0**e - 1.0) * 2**bits))
    key = (e + exponent) * 2**bits + j
    return zero + 1 + key if x > 0 else zero - 1 - key


def awkward_values() -> np.ndarray:
    rng = np.random.default_rng(5)
    edges = [2.0**e * (1 + j / 2**BITS) for e in (-32, -1, 0, 7, 31) for j in (0, 1, 127)]
    special = [0.0, -0.0, 5e-324, 2.0**-33, 2.0**-32 * (1 - 2**-53), 2.0**32,
               2.0**32 * (1 - 2**-53), np.inf, -np.inf, np.nan, 1e300, -1e-300]
    x = np.r_[edges, np.nextafter(edges, 0), np.nextafter(edges, np.inf), special,
              rng.lognormal(0, 8, 400)]
    return np.r_[x, -x]


def test_a_value_s_bin_is_its_interval_of_the_stated_grid() -> None:
    x = awkward_values()
    got = [bin_of(int(r), BITS, EXPONENT) for r in x.view(np.int64)]
    assert got == [reference_bin(v) for v in x]
    # and the compiled pass gives the same bins
    np.testing.assert_array_equal(curve_keys(x[:, None])[0], got)
    assert [bin_of(int(r), 3, 4) for r in x.view(np.int64)] == \
        [reference_bin(v, 3, 4) for v in x]


@pytest.mark.parametrize("layout", ["patient-major", "time-major", "strided"])
def test_counts_do_not_depend_on_the_curve_s_memory_order(layout: str) -> None:
    rng = np.random.default_rng(8)
    n_p, n_t = 301, 47
    base = rng.lognormal(0, 2, (n_p, n_t, 2)) * rng.choice([-1.0, 1.0], (n_p, n_t, 2))
    base[:40, 5] = 0.0
    base[3, :, 0] = np.nan  # a NaN is not counted
    if layout == "patient-major":
        curve = np.ascontiguousarray(base[:, :, 0])
    elif layout == "time-major":
        curve = np.asfortranarray(base[:, :, 0])
    else:  # a tissue of a (patient, time, tissue) array, as the PK model writes it
        curve = base[:, :, 0]
    keys = curve_keys(curve)
    assert keys.shape == (n_t, n_p) and keys.dtype == np.int16
    t, b, n = chunk_counts(curve)
    assert np.all(np.diff(t.astype(np.int64)) >= 0)  # in time order
    for time in (0, 5, 46):
        values = curve[:, time]
        ref_bins, ref_counts = np.unique([reference_bin(v) for v in values if v == v],
                                         return_counts=True)
        at = t == time
        order = np.argsort(b[at])
        np.testing.assert_array_equal(b[at][order], ref_bins)
        np.testing.assert_array_equal(n[at][order], ref_counts)
    np.testing.assert_array_equal(np.concatenate(count_keys(keys)), np.concatenate((t, b, n)))


@pytest.mark.parametrize("compiled", [True, False])
def test_the_metrics_pass_bins_the_curve_as_the_bands_do(compiled: bool) -> None:
    """A chunk bins its curve in the same pass as its NCA metrics: the same bins as
    :func:`curve_keys`, and the same metrics as the pass without bins."""
    import xarray as xr

    from medtransport.bands import key_dtype
    from medtransport.summaries import curve_metrics

    rng = np.random.default_rng(9)
    n_p, n_t = 7, 97
    values = rng.lognormal(0, 3, (n_p, n_t, 2))  # (patient, time, tissue), as the PK model
    values[2, 10:20, 0] = 0.0
    values[4, 33, 0] = np.nan
    values[5, :, 0] = 2.0**40  # beyond the grid
    curve = xr.DataArray(values[:, :, 0], dims=("patient", "time"),
                         coords={"time": np.linspace(0, 48 * 3600, n_t)},
                         attrs={"units": "mg/L"}).transpose("time", "patient")
    keys = np.full((n_t, n_p), -7, dtype=key_dtype())
    with_keys = curve_metrics(curve, compiled=compiled, band_keys=keys)
    np.testing.assert_array_equal(keys, curve_keys(values[:, :, 0]))
    alone = curve_metrics(curve, compiled=compiled)
    assert set(alone) == set(with_keys)
    for name, (v, unit, _) in alone.items():
        np.testing.assert_array_equal(with_keys[name][0], v, err_msg=name)
        assert with_keys[name][1] == unit
    with pytest.raises(ValueError, match="band_keys"):
        curve_metrics(curve, band_keys=keys.T.copy())


def test_a_time_with_more_bins_than_the_first_buffer_holds() -> None:
    """The count's buffers hold 512 bins per time at first, and the chunk is counted again
    with room for all when that is too few: values over 40 decades put thousands of bins in
    one time."""
    rng = np.random.default_rng(2)
    curve = np.exp(rng.uniform(-45, 45, (3000, 3))) * rng.choice([-1.0, 1.0], (3000, 3))
    t, b, n = chunk_counts(curve)
    assert t.size > 3 * 512
    for time in range(3):
        ref_bins, ref_counts = np.unique([reference_bin(v) for v in curve[:, time]],
                                         return_counts=True)
        at = t == time
        np.testing.assert_array_equal(b[at], ref_bins)  # a time's bins in increasing order
        np.testing.assert_array_equal(n[at], ref_counts)
