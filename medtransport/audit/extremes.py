"""The smallest and largest value of an array in one pass, NaN if any value is NaN.

    extremes(u) = (min u, max u),   or (NaN, NaN) when some u is NaN

Several audits ask only for these two numbers (finiteness: both finite?; non-negativity:
min u ≥ −rtol·max|u|). The array is first viewed in memory order (outermost stride first,
negative strides flipped), adjacent axes that are contiguous with each other are merged, and
one compiled loop reads the values once in that order.

The loop compares integers, not floats: for a float64 with bits x (as int64),

    key(x) = x XOR ((x >> 63) AND 0x7FFF…F)

orders every non-NaN double as the floats order (the IEEE 754 layout is sign-magnitude; the
negative half is flipped), −0 just below +0; and |x| as bits, x AND 0x7FFF…F, exceeds
0x7FF0…0 exactly when x is NaN. Integer minima and maxima vectorise where float ones (whose
NaN rules the compiler must keep) do not: one pass at about the cost of one of numpy's two.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

__all__ = ["abs_max_along", "extremes"]

#: Below this many values numpy's own passes are cheap enough (and need no compiler).
COMPILED_SIZE = 1 << 20


def memory_order(values: np.ndarray) -> np.ndarray:
    """A view of ``values`` with its axes in memory order, the smallest stride last, every
    stride non-negative, adjacent axes merged where the memory allows it, and axes of stride
    0 (a broadcast: the same values again) left out."""
    a = values
    for axis, stride in enumerate(a.strides):
        if stride < 0:
            a = np.flip(a, axis)
    a = a.transpose(sorted(range(a.ndim), key=lambda ax: -a.strides[ax]))
    shape, strides = [], []
    for n, s in zip(a.shape, a.strides, strict=True):
        if n == 1 or s == 0:
            continue
        if shape and strides[-1] == n * s:  # the previous axis steps over this one exactly
            shape[-1] *= n
            strides[-1] = s
        else:
            shape.append(n)
            strides.append(s)
    return np.lib.stride_tricks.as_strided(a, tuple(shape) or (1,),
                                           tuple(strides) or (a.itemsize,), writeable=False)


#: bits of |x| above this: x is NaN; equal: ±inf
_INF_BITS = 0x7FF0_0000_0000_0000
_MAGNITUDE = 0x7FFF_FFFF_FFFF_FFFF


@functools.cache
def _kernel() -> Any:
    from medtransport.audit._kernels import key_extremes_3d

    return key_extremes_3d


def _from_key(key: int) -> float:
    """The float64 whose key (see the module docstring) is ``key``; −0 as +0."""
    k = np.int64(key)
    bits = np.array([k ^ ((k >> np.int64(63)) & np.int64(_MAGNITUDE))], dtype=np.int64)
    return float(bits.view(np.float64)[0]) + 0.0


def extremes(values: np.ndarray) -> tuple[Any, Any]:
    """(min, max) of a non-empty numeric array; (nan, nan) if any value is NaN. Floats for a
    real array; numpy's own scalars otherwise (complex values compare lexicographically)."""
    a = np.asarray(values)
    if a.size == 0:
        raise ValueError("extremes of an empty array")
    if a.dtype != np.float64 or a.size < COMPILED_SIZE:
        lo, hi = a.min(), a.max()
        return (lo, hi) if np.iscomplexobj(a) else (float(lo), float(hi))
    m = memory_order(a)
    if m.ndim > 3:
        return float(m.min()), float(m.max())
    while m.ndim < 3:
        m = m[np.newaxis]
    lo, hi, top = _kernel()(m.view(np.int64))
    if top > _INF_BITS:
        return float("nan"), float("nan")
    return _from_key(lo), _from_key(hi)


@functools.cache
def _axes_kernel() -> Any:
    import numba

    @numba.njit(cache=True, nogil=True)
    def abs_max_rows_cols(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = np.zeros(a.shape[0])
        cols = np.zeros(a.shape[1])
        for i in range(a.shape[0]):
            r = 0.0
            for j in range(a.shape[1]):
                v = abs(a[i, j])
                if not v <= r:  # larger, or NaN (which then stays)
                    r = v if r == r else r
                if not v <= cols[j]:
                    cols[j] = v if cols[j] == cols[j] else cols[j]
            rows[i] = r
        return rows, cols

    return abs_max_rows_cols


def abs_max_along(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(max_j |u_ij| for each i, max_i |u_ij| for each j) of a 2-D float array in one pass,
    without an |u| temporary; NaN where a row or column holds a NaN (as numpy's ``max`` of
    ``abs``, whose bits these are: a maximum is exact in any order). The array is read in its
    memory order (a patient-major (time, patient) residual row by patient)."""
    a = np.asarray(values, dtype=float)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D array, got shape {a.shape}")
    if a.size == 0:
        return np.abs(a).max(axis=1, initial=0.0), np.abs(a).max(axis=0, initial=0.0)
    if abs(a.strides[0]) < abs(a.strides[1]):  # column-major: walk the transpose
        cols, rows = _axes_kernel()(a.T)
        return rows, cols
    return _axes_kernel()(a)
