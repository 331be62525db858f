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
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["BITS", "EXPONENT", "BandHistogram", "bin_of", "chunk_counts", "count_keys",
           "curve_keys", "relative_bound"]

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


def bin_of(raw: int, bits: int, exponent: int) -> int:
    """The bin of a float64 value given as its IEEE-754 bits ``raw`` (int64): the grid of the
    module docstring, branch-free so that a compiled loop over a curve stays cheap; −1 for
    NaN (a failed patient never reaches the bands). Plain Python, and compiled inline into
    the passes that read a curve (:func:`compiled_bin_of`)."""
    per_sign = (2 * exponent) << bits
    # for |x| ≥ 2^−E the bits of |x| shifted right by 52 − K are the biased exponent followed
    # by K bits of the mantissa, monotone in |x|: k = their offset from 2^−E, clamped to −1
    # (the small bin) and per_sign (the overflow bin)
    mag = raw & 0x7FFFFFFFFFFFFFFF
    k = min(max((mag >> (52 - bits)) - ((1023 - exponent) << bits), -1), per_sign)
    # the sign bit mirrors the key around the small bin, at per_sign + 1
    b = per_sign + 1 + ((raw >> 63) | 1) * (1 + k)
    # −1 for a NaN (|bits| above those of infinity), without a branch
    return b | ((0x7FF0000000000000 - mag) >> 63)


_registering = threading.Lock()


@functools.cache
def compiled_bin_of() -> Any:
    """Make :func:`bin_of` callable (inlined) from numba-compiled code; returns it. Once per
    process, also when two chunk threads start at the same time."""
    from numba.extending import register_jitable

    with _registering:
        if not getattr(bin_of, "_registered", False):
            register_jitable(inline="always")(bin_of)
            bin_of._registered = True  # type: ignore[attr-defined]
    return bin_of


def key_dtype(bits: int = BITS, exponent: int = EXPONENT) -> type[np.signedinteger[Any]]:
    """The narrowest signed integer that holds every bin and −1 (int16 at K = 7, E = 32):
    a chunk's bins take a quarter of its curve's memory."""
    return np.int16 if _layout(bits, exponent)[1] < 2**15 else np.int32


@functools.cache
def _keys_kernel() -> Any:
    import numba

    bin_kernel = compiled_bin_of()

    @numba.njit(cache=True, nogil=True)
    def keys(c: np.ndarray, bits: int, exponent: int, out: np.ndarray) -> None:
        """The bins of a (patient, time) block of float64 bits, read in its memory order
        (patient-major), written (time, patient)."""
        n_p, n_t = c.shape
        for p in range(n_p):
            for t in range(n_t):
                out[t, p] = bin_kernel(c[p, t], bits, exponent)

    return keys


@functools.cache
def _count_kernel() -> Any:
    import numba

    @numba.njit(cache=True, nogil=True)
    def count(keys: np.ndarray, n_bins: int, t_out: np.ndarray, k_out: np.ndarray,
              n_out: np.ndarray) -> int:
        """Non-zero counts of the (time, patient) bins ``keys`` (−1: not counted):
        (time, bin, count) written to the outputs in time order; returns how many, or −1
        when the outputs have no room for a time's range of bins."""
        n_t, n_p = keys.shape
        scratch = np.zeros(n_bins, dtype=np.int32)
        m = 0
        for t in range(n_t):
            lo, hi = n_bins, -1
            for p in range(n_p):
                b = keys[t, p]
                if b >= 0:
                    scratch[b] += 1
                    lo = min(lo, b)
                    hi = max(hi, b)
            if m + hi - lo + 1 > t_out.size:
                return -1
            # a time's values span a few octaves: its range of bins is short, and scanning
            # it emits the counts without a branch per value; an empty bin is written and
            # overwritten by the next (about half the range is empty: a branch on it would
            # be mispredicted half the time)
            for b in range(lo, hi + 1):
                n = scratch[b]
                t_out[m] = t
                k_out[m] = b
                n_out[m] = n
                scratch[b] = 0
                m += n != 0
        return m

    return count


def curve_keys(curve: np.ndarray, bits: int = BITS, exponent: int = EXPONENT) -> np.ndarray:
    """The (time, patient) bins of a (patient, time) float64 curve, read in its memory order
    (no transposed copy of the curve)."""
    c = np.asarray(curve, dtype=np.float64)
    if c.ndim != 2:
        raise ValueError(f"expected a (patient, time) curve, got shape {c.shape}")
    out = np.empty(c.shape[::-1], dtype=key_dtype(bits, exponent))
    if abs(c.strides[0]) < abs(c.strides[1]):  # time-major memory: walk it time by time
        _keys_kernel()(c.T.view(np.int64), bits, exponent, out.T)
    else:
        _keys_kernel()(c.view(np.int64), bits, exponent, out)
    return out


def count_keys(keys: np.ndarray, bits: int = BITS, exponent: int = EXPONENT
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The histogram of (time, patient) bins (:func:`curve_keys`) as its non-zero counts:
    (time index, bin, count), in time order, each in the narrowest integer type that holds
    it (uint16, int16, uint16 up to 65,536 times and patients: a chunk's counts travel to
    the client, 6 bytes a count)."""
    keys = np.ascontiguousarray(keys)
    n_t, n_p = keys.shape
    n_bins = _layout(bits, exponent)[1]
    types = (np.uint16 if n_t <= 2**16 else np.uint32, key_dtype(bits, exponent),
             np.uint16 if n_p < 2**16 else np.uint32)
    # room for a few hundred bins per time (a population's values at one time span a few
    # octaves: 270-350 non-empty bins for 700-2100 patients of the vancomycin trial), not
    # one entry per value, which cost 36 MB of short-lived buffers a chunk (each new page
    # written is a page fault); if a chunk needs more, counted again with room for all
    for capacity in (n_t * min(n_p, 512), n_t * n_p + n_bins):
        t_out, k_out, n_out = (np.empty(capacity, dtype=d) for d in types)
        m = _count_kernel()(keys, n_bins, t_out, k_out, n_out)
        if m >= 0:
            return t_out[:m], k_out[:m], n_out[:m]
    raise AssertionError("unreachable: the second capacity holds every count")


def chunk_counts(curve: np.ndarray, bits: int = BITS, exponent: int = EXPONENT
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The histogram of a chunk's (patient, time) curve as its non-zero counts:
    (time index, bin, count), in time order (:func:`count_keys`)."""
    return count_keys(curve_keys(curve, bits, exponent), bits, exponent)


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
