"""The one-pass (min, max) the audits share, on the layouts solvers hand them."""

from __future__ import annotations

import numpy as np
import pytest

from medtransport.audit import extremes as ext


def layouts() -> list[np.ndarray]:
    rng = np.random.default_rng(8)
    big = rng.normal(size=(300, 1200, 4))  # > COMPILED_SIZE values: the compiled loop
    assert big.size >= ext.COMPILED_SIZE
    return [
        big,
        big.transpose(1, 0, 2)[..., :2],  # body states of a patient-major solver, time first
        big.transpose(1, 0, 2)[..., 2],  # a sink state
        big[::-1, ::3, 1:],  # negative and skipping strides
        np.asfortranarray(big[:, :, 0]),
        big[:5, :7],  # small: numpy's passes
    ]


@pytest.mark.parametrize("index", range(6))
def test_extremes_equal_numpy_on_every_layout(index: int) -> None:
    values = layouts()[index]
    assert ext.extremes(values) == (values.min(), values.max())


@pytest.mark.parametrize("index", range(6))
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", ["middle", "last"])
def test_a_single_non_finite_value_shows(index: int, bad: float, where: str) -> None:
    values = layouts()[index]  # a view into a fresh array: its layout is kept
    spot = tuple(n // 2 if where == "middle" else n - 1 for n in values.shape)
    values[spot] = bad
    lo, hi = ext.extremes(values)
    if np.isnan(bad):
        assert np.isnan(lo) and np.isnan(hi)
    else:
        assert (lo, hi) == (values.min(), values.max())
        assert bad in (lo, hi)


def test_memory_order_merges_contiguous_axes() -> None:
    a = np.zeros((10, 20, 4))
    assert ext.memory_order(a).shape == (800,)
    assert ext.memory_order(a.transpose(1, 0, 2)[..., :2]).shape == (200, 2)
    assert ext.memory_order(a[..., 0].T).shape == (200,)


def test_integers_complex_and_empty() -> None:
    assert ext.extremes(np.array([3, -2, 7])) == (-2.0, 7.0)
    assert ext.extremes(np.array([1 + 2j, 1 - 1j])) == (1 - 1j, 1 + 2j)
    with pytest.raises(ValueError, match="empty"):
        ext.extremes(np.zeros((0, 3)))


@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_abs_max_along_both_axes_matches_numpy_with_nans_and_infs(layout: str) -> None:
    from medtransport.audit.extremes import abs_max_along

    rng = np.random.default_rng(7)
    x = rng.normal(size=(61, 37)) * 10.0 ** rng.integers(-5, 5, size=(61, 37))
    x[3, 4] = np.nan
    x[10, 20] = -np.inf
    x[11, :] = -0.0
    a = {"C": x, "F": np.asfortranarray(x), "strided": x[:, ::2]}[layout]
    rows, cols = abs_max_along(a)
    np.testing.assert_array_equal(rows, np.abs(a).max(axis=1))
    np.testing.assert_array_equal(cols, np.abs(a).max(axis=0))
    assert np.isnan(rows[3]) and rows[10] == np.inf


def test_a_broadcast_is_read_once_per_distinct_value() -> None:
    """Axes of stride 0 repeat the same values: left out of the memory order, and the
    extremes of a large broadcast are those of what it repeats (NaN included)."""
    row = np.linspace(-3.0, 5.0, 1500)
    wide = np.broadcast_to(row, (1500, 1500))  # 2.25e6 values, above COMPILED_SIZE
    assert ext.memory_order(wide).shape == (1500,)
    assert ext.extremes(wide) == (-3.0, 5.0)
    assert ext.memory_order(np.broadcast_to(np.zeros(()), (2000, 900))).shape == (1,)
    assert ext.extremes(np.broadcast_to(np.zeros(()), (2000, 900))) == (0.0, 0.0)
    row[700] = np.nan
    assert all(np.isnan(ext.extremes(wide)))
