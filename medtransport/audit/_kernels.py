"""The compiled loops of the audits' array passes: the integer-key extremes of
:mod:`medtransport.audit.extremes` (its docstring has the keys) and the mass balance's pass
of :mod:`medtransport.audit.ledger_pass` (its docstring has the equations). A module of their
own, imported only when an array large enough for them is audited, so that ``import
medtransport`` does not load numba; at module level, so that numba's on-disk cache keeps them
between processes (a kernel built inside a function that calls other such kernels was
compiled anew in every process: 1.7 s).
"""

from __future__ import annotations

import numba
import numpy as np

from medtransport.audit.extremes import _MAGNITUDE as _MAGNITUDE_BITS
from medtransport.audit.ledger_pass import MAX_TERMS

_MAGNITUDE = np.int64(_MAGNITUDE_BITS)


@numba.njit(cache=True, nogil=True, inline="always")
def fold(x: np.int64, lo: np.int64, hi: np.int64, top: np.int64
         ) -> tuple[np.int64, np.int64, np.int64]:
    """One value's bits ``x`` folded into (min key, max key, max |x| bits)."""
    key = x ^ ((x >> 63) & _MAGNITUDE)
    ax = x & _MAGNITUDE
    return (key if key < lo else lo, key if key > hi else hi, ax if ax > top else top)


@numba.njit(cache=True, nogil=True)
def key_extremes_3d(b: np.ndarray) -> tuple[int, int, int]:
    """(min key, max key, max |x| bits) over the int64 view ``b`` of float64 values."""
    lo = _MAGNITUDE
    hi = -_MAGNITUDE - 1
    top = np.int64(0)
    for i in range(b.shape[0]):
        for j in range(b.shape[1]):
            for k in range(b.shape[2]):
                lo, hi, top = fold(b[i, j, k], lo, hi, top)
    return lo, hi, top


@numba.njit(cache=True, nogil=True, inline="always")
def keys(b: np.ndarray, i: int, n: int, acc: np.ndarray, slot: int) -> None:
    """Row ``i`` of ``b`` folded into row ``slot`` of ``acc``."""
    lo = acc[slot, 0]
    hi = acc[slot, 1]
    top = acc[slot, 2]
    for j in range(n):
        lo, hi, top = fold(b[i, j], lo, hi, top)
    acc[slot, 0] = lo
    acc[slot, 1] = hi
    acc[slot, 2] = top


@numba.njit(cache=True, nogil=True, inline="always")
def add_row(a: np.ndarray, i: int, n: int, sums: np.ndarray, slot: int) -> None:
    for j in range(n):
        sums[slot, j] += a[i, j]


@numba.njit(cache=True, nogil=True)
def books(stored: np.ndarray, initial: np.ndarray, n_terms: int,
          t0: np.ndarray, t1: np.ndarray, t2: np.ndarray, t3: np.ndarray,
          signs: np.ndarray, expected: np.ndarray, residual: np.ndarray,
          b_stored: np.ndarray, b0: np.ndarray, b1: np.ndarray, b2: np.ndarray,
          b3: np.ndarray, b_expected: np.ndarray, b_residual: np.ndarray,
          reduce_rows: bool, sums: np.ndarray, row_top: np.ndarray,
          col_top: np.ndarray) -> np.ndarray:
    """Rows i of the (R, C) arrays in order. ``acc`` rows: stored, the terms, expected,
    residual; columns: min key, max key, max |x| bits. With ``reduce_rows``: ``sums``
    (stored, the terms, expected: each Σ_i over the rows, from 0.0) and the max |residual|
    bits of each row (``row_top``) and each column (``col_top``)."""
    acc = np.empty((3 + MAX_TERMS, 3), dtype=np.int64)
    for s in range(acc.shape[0]):
        acc[s, 0] = _MAGNITUDE
        acc[s, 1] = -_MAGNITUDE - 1
        acc[s, 2] = 0
    s0 = signs[0]
    s1 = signs[1]
    s2 = signs[2]
    s3 = signs[3]
    n = stored.shape[1]
    for i in range(stored.shape[0]):
        # e = initial ± each term in turn: the ledger's sums (s·t is exact for s = ±1)
        if n_terms == 1:
            for j in range(n):
                e = initial[i, j] + s0 * t0[i, j]
                expected[i, j] = e
                residual[i, j] = stored[i, j] - e
        elif n_terms == 2:
            for j in range(n):
                e = (initial[i, j] + s0 * t0[i, j]) + s1 * t1[i, j]
                expected[i, j] = e
                residual[i, j] = stored[i, j] - e
        elif n_terms == 3:
            for j in range(n):
                e = ((initial[i, j] + s0 * t0[i, j]) + s1 * t1[i, j]) + s2 * t2[i, j]
                expected[i, j] = e
                residual[i, j] = stored[i, j] - e
        else:
            for j in range(n):
                e = (((initial[i, j] + s0 * t0[i, j]) + s1 * t1[i, j]) + s2 * t2[i, j]) \
                    + s3 * t3[i, j]
                expected[i, j] = e
                residual[i, j] = stored[i, j] - e
        # the row's extremes while it is in the first-level cache
        keys(b_stored, i, n, acc, 0)
        keys(b0, i, n, acc, 1)
        if n_terms > 1:
            keys(b1, i, n, acc, 2)
        if n_terms > 2:
            keys(b2, i, n, acc, 3)
        if n_terms > 3:
            keys(b3, i, n, acc, 4)
        keys(b_expected, i, n, acc, 1 + MAX_TERMS)
        keys(b_residual, i, n, acc, 2 + MAX_TERMS)
        if reduce_rows:
            add_row(stored, i, n, sums, 0)
            add_row(t0, i, n, sums, 1)
            if n_terms > 1:
                add_row(t1, i, n, sums, 2)
            if n_terms > 2:
                add_row(t2, i, n, sums, 3)
            if n_terms > 3:
                add_row(t3, i, n, sums, 4)
            add_row(expected, i, n, sums, 1 + MAX_TERMS)
            top = np.int64(0)
            for j in range(n):
                ax = b_residual[i, j] & _MAGNITUDE
                top = ax if ax > top else top
                col_top[j] = ax if ax > col_top[j] else col_top[j]
            row_top[i] = top
    return acc
