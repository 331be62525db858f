"""Percentile bands computed while a population runs: exact per-time histograms on a fixed
logarithmic grid, merged across chunks by adding counts, so the bands need no second pass over
the stored curves.

The grid. A value x is put in a bin by the bits of its IEEE-754 double: for
2^−E ≤ |x| < 2^E, the bin is the sign, the exponent e = ⌊log₂|x|⌋ and the first K bits of
the mantissa, i.e. the interval

    [2^e·(1 + j/2^K), 2^e·(1 + (j + 1)/2^K)),   j = 0 … 2^K − 1,

mirrored for negative x. Values with |x| < 2^−E (zero among them) share one bin, and values
with |x| ≥ 2^E fall in an overflow bin of their sign. Counts are integers, so merging chunks
(in any order, on any worker) gives the same histogram as one pass over every patient.

The estimate. At each time the q-th percentile is Hyndman & Fan's type 7 (numpy's default):
with N values and h = (N − 1)·q, j = ⌊h⌋, f = h − j, it is x₍ⱼ₎ + f·(x₍ⱼ₊₁₎ − x₍ⱼ₎) over the
order statistics x₍₀₎ ≤ … ≤ x₍ₙ₋₁₎. The histogram locates the bins of x₍ⱼ₎ and x₍ⱼ₊₁₎
exactly (cumulative counts); each is replaced by its bin's midpoint m (0 for the small bin).
A bin [a, b) with a ≥ 2^e has b − a = 2^(e−K), so |x − m| ≤ 2^(e−K−1) ≤ 2^(−K−1)·|x|. Hence
the **error bound**

    |estimate − exact| ≤ 2^(−K−1)·max(|x₍ⱼ₎|, |x₍ⱼ₊₁₎|) + 2^(−E)

(with K = 7, E = 32: a relative 0.39 % of the larger neighbouring order statistic, plus
2.3·10⁻¹⁰ in the variable's stored unit). An order statistic in an overflow bin
(|x| ≥ 2^E) makes that percentile NaN rather than a value outside the bound.

Memory: (2·2E·2^K + 3) counts of 4 bytes per time (64 kB at K = 7, E = 32); a chunk's
histogram travels as its non-zero counts only.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["BITS", "EXPONENT", "BandHistogram", "chunk_counts", "relative_bound"]

#: K: mantissa bits kept per bin (2^K bins per octave).
BITS = 7
#: E: the grid covers 2^−E ≤ |x| < 2^E.
EXPONENT = 32


def relative_bound(bits: int = BITS) -> float:
    """2^(−K−1): the relative part of the error bound of a band."""
    return 2.0 ** (-bits - 1)


def _layout(bits: int, exponent: int) -> tuple[int, int]:
    """(keys per sign, bins in all): [negative overflow][negatives, large to small][small]
    [positives, small to large][positive overflow]."""
    per_sign = 2 * exponent << bits
    return per_sign, 2 * per_sign + 3


@functools.cache
def _kernel() -> Any:
    import numba

    @numba.njit(cache=True, nogil=True)
    def count(c: np.ndarray, bits: int, exponent: int, t_out: np.ndarray,
              k_out: np.ndarray, n_out: np.ndarray) -> int:
        """Non-zero counts of the (time, patient) block ``c`` (the bits of float64 values,
        as int64): (time, bin, count) written to the outputs in time order;
        returns how many."""
        n_t, n_p = c.shape
        per_sign = (2 * exponent) << bits
        n_bins = 2 * per_sign + 3
        zero = per_sign + 1
        shift = 52 - bits
        # for |x| ≥ 2^−E the bits of |x| shifted right by 52 − K are the biased exponent
        # followed by K bits of the mantissa: monotone in |x|
        low = (1023 - exponent) << bits
        magnitude = np.int64(0x7FFFFFFFFFFFFFFF)
        nan_bits = np.int64(0x7FF0000000000000)
        scratch = np.zeros(n_bins, dtype=np.int64)
        touched = np.empty(n_p, dtype=np.int64)
        m = 0
        for t in range(n_t):
            k = 0
            for p in range(n_p):
                raw = c[t, p]
                mag = raw & magnitude
                if mag > nan_bits:  # NaN: a failed patient never reaches the bands
                    continue
                key = (mag >> shift) - low
                if key < 0:
                    b = zero
                elif key >= per_sign:
                    b = n_bins - 1 if raw >= 0 else 0
                elif raw >= 0:
                    b = zero + 1 + key
                else:
                    b = zero - 1 - key
                if scratch[b] == 0:
                    touched[k] = b
                    k += 1
                scratch[b] += 1
            for i in range(k):
                b = touched[i]
                t_out[m] = t
                k_out[m] = b
                n_out[m] = scratch[b]
                scratch[b] = 0
                m += 1
        return m

    return count


def chunk_counts(curve: np.ndarray, bits: int = BITS, exponent: int = EXPONENT
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The histogram of a chunk's (patient, time) curve as its non-zero counts:
    (time index int32, bin int32, count uint32), in time order."""
    # time-major and contiguous: each time's patients are read in one sweep
    c = np.ascontiguousarray(np.asarray(curve, dtype=np.float64).T).view(np.int64)
    size = c.size
    t_out = np.empty(size, dtype=np.int32)
    k_out = np.empty(size, dtype=np.int32)
    n_out = np.empty(size, dtype=np.uint32)
    m = _kernel()(c, bits, exponent, t_out, k_out, n_out)
    return t_out[:m].copy(), k_out[:m].copy(), n_out[:m].copy()


class BandHistogram:
    """The merged per-time histogram of a population's summary curve (see the module
    docstring for the grid and the error bound)."""

    def __init__(self, n_times: int, bits: int = BITS, exponent: int = EXPONENT):
        self.bits, self.exponent = bits, exponent
        self.per_sign, self.n_bins = _layout(bits, exponent)
        self.counts = np.zeros((n_times, self.n_bins), dtype=np.uint32)

    @property
    def n_times(self) -> int:
        return int(self.counts.shape[0])

    def add_curve(self, curve: np.ndarray) -> None:
        """Count a (patient, time) block of curves."""
        self.add(*chunk_counts(curve, self.bits, self.exponent))

    def add(self, t: np.ndarray, b: np.ndarray, n: np.ndarray) -> None:
        """Add a chunk's non-zero counts (unique (time, bin) pairs, as :func:`chunk_counts`
        gives them)."""
        flat = self.counts.reshape(-1)
        idx = t.astype(np.int64) * self.n_bins + b
        flat[idx] += n

    def representatives(self) -> np.ndarray:
        """Each bin's midpoint (0 for the small bin, NaN for the overflow bins)."""
        key = np.arange(self.per_sign, dtype=np.int64)
        octave = (key >> self.bits) - self.exponent
        j = key & ((1 << self.bits) - 1)
        # the midpoint of [2^e·(1 + j/2^K), 2^e·(1 + (j + 1)/2^K))
        mid = np.ldexp(1.0 + (j + 0.5) / (1 << self.bits), octave)
        return np.concatenate([[np.nan], -mid[::-1], [0.0], mid, [np.nan]])

    def percentiles(self, percentiles: Sequence[float]) -> np.ndarray:
        """(percentile, time) type-7 percentiles within the bound of the module docstring;
        NaN at a time without any value."""
        q = np.asarray(percentiles, dtype=float) / 100.0
        rep = self.representatives()
        out = np.full((q.size, self.n_times), np.nan)
        for t in range(self.n_times):
            row = self.counts[t]
            nz = np.flatnonzero(row)
            if nz.size == 0:
                continue
            cum = np.cumsum(row[nz].astype(np.int64))
            n = int(cum[-1])
            h = (n - 1) * q
            j = np.floor(h).astype(np.int64)
            f = h - j
            # the bin holding order statistic r is the first whose cumulative count exceeds r
            lo = rep[nz[np.searchsorted(cum, j, side="right")]]
            hi = rep[nz[np.searchsorted(cum, np.minimum(j + 1, n - 1), side="right")]]
            out[:, t] = np.where(f > 0, lo + f * (hi - lo), lo)
        return out

    def total(self) -> np.ndarray:
        """Patients counted at each time."""
        return self.counts.sum(axis=1, dtype=np.int64)

    # -- a checkpoint: the counts and the chunks they hold ---------------------------------
    def to_bytes(self, chunks: Sequence[int]) -> bytes:
        """The counts (Blosc-LZ4 over the dense array: mostly zeros, fast) and the chunks they
        hold."""
        from numcodecs import Blosc

        blob = Blosc(cname="lz4", clevel=1, shuffle=Blosc.SHUFFLE).encode(self.counts)
        buf = io.BytesIO()
        np.savez(buf, counts=np.frombuffer(blob, dtype=np.uint8),
                 shape=np.asarray(self.counts.shape), grid=np.asarray([self.bits,
                                                                       self.exponent]),
                 chunks=np.asarray(sorted(chunks), dtype=np.int64))
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> tuple[BandHistogram, list[int]]:
        from numcodecs import Blosc

        with np.load(io.BytesIO(data)) as z:
            bits, exponent = (int(x) for x in z["grid"])
            hist = cls(int(z["shape"][0]), bits, exponent)
            counts = np.frombuffer(Blosc().decode(z["counts"].tobytes()), dtype=np.uint32)
            hist.counts[...] = counts.reshape(hist.counts.shape)
            return hist, [int(i) for i in z["chunks"]]
