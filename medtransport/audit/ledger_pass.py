"""The mass balance's arrays of a batch of patients in one pass over their memory.

    expected = initial ± term₁ ± … ± term_k      (the ledger's order: inflow, source,
                                                  outflow, sink; a term = Σ of its routes)
    residual = stored − expected

and, from the same reads, the extremes (min, max; NaN if any value is NaN) of ``stored``, of
every term, of ``expected`` and of ``residual`` — all that the mass-balance audit asks of them
(its scale is the largest |u| the ledger saw; its verdict the largest |residual|), and what
finiteness and non-negativity ask of a state that is also a ledger term.

A batch's arrays are (T, P) float64 of 24 MB and more each: separately, the sums and the
audits' extremes were a dozen passes over them. Here each patient's row (or each time's, in
the arrays' own memory order) is read once; its expected and residual are written and their
extremes taken while the row is still in the first-level cache. The arithmetic is the
ledger's, in the same order (``e = initial; e = e ± term`` term by term, no fused
multiply–add), so ``expected`` and ``residual`` have the bits of
:meth:`medtransport.ledger.Ledger.expected_stored` and of ``stored − expected``. The extremes
compare integer keys of the values' bits (see :mod:`medtransport.audit.extremes`).

When the arrays are patient-major (rows are patients: what a batch solver writes), the same
pass also gives what a population chunk keeps of its books — each array summed over the
patients at every time (from 0.0, patient after patient: the bits of numpy's sum over that
axis in that layout) and max |residual| over time for each patient and over the patients at
each time (NaN where a NaN is) — so that no later pass reads them again.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from medtransport.audit.extremes import _INF_BITS, COMPILED_SIZE, _from_key
from medtransport.numerics import arena

__all__ = ["MAX_TERMS", "LedgerPass", "ledger_pass"]

#: Terms (after summing each one's routes) the compiled pass takes.
MAX_TERMS = 4


@dataclass
class LedgerPass:
    """What one pass gives: the arrays, and (min, max) of each array it read or wrote — in
    ``extremes``, keyed like :func:`memory_key` so that an audit asking about the same memory
    under another name (a state that is also a ledger route) finds them."""

    expected: np.ndarray
    residual: np.ndarray
    extremes: dict[tuple[Any, ...], tuple[float, float]]
    #: Σ over patients at each time of stored, every term and expected, keyed by memory; and
    #: max |residual| (over time per patient, over patients per time): patient-major only
    patient_sums: dict[tuple[Any, ...], np.ndarray] | None = None
    residual_abs_max: tuple[np.ndarray, np.ndarray] | None = None


def memory_key(values: np.ndarray) -> tuple[Any, ...]:
    """Identifies the values an array shows: its buffer address, shape, strides and dtype."""
    return (values.__array_interface__["data"][0], values.shape, values.strides,
            values.dtype.str)


@functools.cache
def _kernel() -> Any:
    from medtransport.audit._kernels import books

    return books


def _rows_first(a: np.ndarray, patient_major: bool) -> np.ndarray:
    return a.T if patient_major else a


def ledger_pass(stored: np.ndarray, initial: float | np.ndarray,
                terms: list[tuple[np.ndarray, float]]) -> LedgerPass | None:
    """The pass over a (T, P) batch; None when it does not apply — fewer values than
    :data:`~medtransport.audit.extremes.COMPILED_SIZE`, more than :data:`MAX_TERMS` terms, or
    a term not shaped like ``stored`` — and the caller's numpy sums do the work. ``terms``:
    (the term's values, +1 or −1) in the ledger's order."""
    if (stored.ndim != 2 or stored.dtype != np.float64 or stored.size < COMPILED_SIZE
            or not 1 <= len(terms) <= MAX_TERMS
            or any(t.shape != stored.shape or t.dtype != np.float64 for t, _ in terms)):
        return None
    init = np.asarray(initial, dtype=float)
    if init.ndim > 1 or (init.ndim == 1 and init.size not in (1, stored.shape[1])):
        return None
    init = np.broadcast_to(init.reshape(1, -1), stored.shape)
    # walk every array in the stored amount's memory order: rows = patients when it is
    # patient-major (a batch solver's output), else times
    patient_major = abs(stored.strides[1]) > abs(stored.strides[0])
    # laid out like stored ("K" order), in a population batch's reused memory
    expected = arena.empty_like(stored)
    residual = arena.empty_like(stored)
    values = [t for t, _ in terms]
    padded = values + [values[0]] * (MAX_TERMS - len(values))
    signs = np.array([s for _, s in terms] + [1.0] * (MAX_TERMS - len(terms)))
    rows = [_rows_first(a, patient_major) for a in (stored, init, *padded, expected,
                                                    residual)]
    bits = [r.view(np.int64) for r in (rows[0], *rows[2:])]
    n_rows, n_cols = rows[0].shape
    sums = np.zeros((2 + MAX_TERMS, n_cols))
    row_top = np.zeros(n_rows if patient_major else 0, dtype=np.int64)
    col_top = np.zeros(n_cols if patient_major else 0, dtype=np.int64)
    acc = _kernel()(rows[0], rows[1], len(terms), *rows[2:2 + MAX_TERMS], signs, rows[-2],
                    rows[-1], *bits, patient_major, sums, row_top, col_top)
    found: dict[tuple[Any, ...], tuple[float, float]] = {}
    arrays = [stored, *values, expected, residual]
    slots = [0, *range(1, 1 + len(values)), 1 + MAX_TERMS, 2 + MAX_TERMS]
    for a, slot in zip(arrays, slots, strict=True):
        lo, hi, top = acc[slot]
        found[memory_key(a)] = (float("nan"), float("nan")) if top > _INF_BITS else \
            (_from_key(lo), _from_key(hi))
    done = LedgerPass(expected, residual, found)
    if patient_major:
        done.patient_sums = {memory_key(a): sums[slot] for a, slot in
                             zip([stored, *values, expected],
                                 [0, *range(1, 1 + len(values)), 1 + MAX_TERMS], strict=True)}
        # the |residual| bits back to floats (NaN bits stay NaN): over time, over patients
        done.residual_abs_max = (row_top.view(np.float64), col_top.view(np.float64))
    return done
