"""Seeded standard-normal noise, fast, and the closed-form noising that consumes it.

Normal deviates by the Box–Muller transform (Box & Muller 1958, Ann. Math. Stat. 29:610):
for independent U₁, U₂ ~ U[0, 1),

    R = √(−2·ln(1 − U₁)),   Z₁ = R·cos(2πU₂),   Z₂ = R·sin(2πU₂)

are independent N(0, 1). For float32 data one float64 uniform's 53 random bits feed a pair: 20
bits for the angle (2²⁰ levels), 33 for the radius (so the tail reaches 6.8σ, beyond the 5.8σ of
a float32 uniform); numpy's SIMD log/sin/cos make this several times faster than
``Generator.standard_normal``'s ziggurat in float32 (see bench/bench_noise.py). Float64 output
draws two full uniforms per pair (tail 8.6σ).

Reproducibility does not depend on the number of threads: the array, seen as rows (samples) ×
columns, is split into :data:`N_STREAMS` fixed parts, each drawn from its own SFC64 stream spawned
from ``numpy.random.SeedSequence(seed)``; threads only decide which part is drawn when.

:func:`add_noise` fuses the closed-form marginal of the forward process (REFERENCES §5),

    x_t = √ᾱ_t·x₀ + √(1 − ᾱ_t)·ε,

per row, with the coefficients given in float64 and cast to the data's dtype last.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["N_STREAMS", "add_noise", "standard_normal"]

#: Fixed number of independent streams an array is split into (not the number of threads).
N_STREAMS = 8
#: Elements per piece: small enough that a piece's temporaries stay in cache.
CHUNK = 65536
_TWO_PI = 2.0 * math.pi
_ANGLE_LEVELS = float(2**20)
_pool: ThreadPoolExecutor | None = None


def _threads() -> int:
    return max(1, min(N_STREAMS, os.cpu_count() or 1))


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(_threads(), thread_name_prefix="medtransport-noise")
    return _pool


def _streams(seed: int | np.random.SeedSequence) -> list[np.random.Generator]:
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    return [np.random.Generator(np.random.SFC64(s)) for s in ss.spawn(N_STREAMS)]


def _ranges(rows: int, cols: int) -> list[tuple[int, int]]:
    """Flat [start, stop) of each stream; on row boundaries when there are enough rows."""
    n = rows * cols
    if rows >= N_STREAMS:
        edges = [round(i * rows / N_STREAMS) * cols for i in range(N_STREAMS + 1)]
    else:
        edges = [round(i * n / N_STREAMS) for i in range(N_STREAMS + 1)]
    return list(itertools.pairwise(edges))


def _pieces(start: int, stop: int, cols: int) -> Iterator[tuple[int, int, int]]:
    """(row0, row1, offset) pieces: whole rows [row0, row1) when offset < 0, otherwise a part
    of row row0 from flat index ``offset`` to ``row1`` (a flat stop)."""
    pos = start
    per = max(1, CHUNK // cols)
    while pos < stop:
        row, col = divmod(pos, cols)
        if cols <= CHUNK and col == 0 and stop - pos >= cols:
            k = min(per, (stop - pos) // cols)
            yield row, row + k, -1
            pos += k * cols
        else:
            end = min(stop, (row + 1) * cols, pos + CHUNK)
            yield row, end, pos
            pos = end


def _fill_normal(rng: np.random.Generator, out: np.ndarray) -> None:
    """Box–Muller into the 1-D array ``out`` (float32 or float64).

    One float64 uniform (53 random bits) feeds a pair: its top 20 bits give the angle, its
    other 33 bits the radius (1 − U₁ ≥ 2⁻³³, so the tail reaches √(66·ln 2) ≈ 6.8σ; for
    float64 output both uniforms are drawn whole)."""
    n = out.size
    h = (n + 1) // 2
    if out.dtype == np.float32:
        radius = rng.random(h)
        radius *= _ANGLE_LEVELS
        level = np.floor(radius)  # np.modf is ~20 times slower (not vectorised)
        radius -= level
        level *= _TWO_PI / _ANGLE_LEVELS
        angle = level.astype(np.float32)
    else:
        radius = rng.random(h)
        angle = rng.random(h)
        angle *= _TWO_PI
    np.subtract(1.0, radius, out=radius)
    np.log(radius, out=radius)
    radius *= -2.0
    r = radius.astype(out.dtype, copy=False)
    np.sqrt(r, out=r)
    np.cos(angle, out=out[:h])
    out[:h] *= r
    np.sin(angle[: n - h], out=out[h:])
    out[h:] *= r[: n - h]


def _run(rows: int, cols: int, seed: int | np.random.SeedSequence, work) -> None:
    rngs = _streams(seed)
    jobs = [(rngs[i], a, b) for i, (a, b) in enumerate(_ranges(rows, cols)) if b > a]
    if rows * cols < 4 * CHUNK or _threads() == 1:
        for job in jobs:
            work(*job)
        return
    list(_executor().map(lambda job: work(*job), jobs))


def standard_normal(shape: tuple[int, ...] | int, seed: int | np.random.SeedSequence,
                    dtype: type = np.float32) -> np.ndarray:
    """An array of independent N(0, 1) deviates, reproducible from ``seed``."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    out = np.empty(shape, dtype=dtype)
    flat = out.reshape(-1)
    rows = shape[0] if len(shape) > 1 else 1
    cols = flat.size // rows if rows else 0

    def work(rng: np.random.Generator, start: int, stop: int) -> None:
        for piece_start in range(start, stop, CHUNK):
            _fill_normal(rng, flat[piece_start:min(stop, piece_start + CHUNK)])

    if flat.size:
        _run(rows, cols, seed, work)
    return out


def add_noise(x0: np.ndarray, signal: np.ndarray | float, noise: np.ndarray | float,
              seed: int | np.random.SeedSequence, *, return_noise: bool = False
              ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """x = signal·x0 + noise·ε with ε ~ N(0, I) drawn here, per row of ``x0``.

    ``x0`` has shape (B, …); ``signal`` and ``noise`` are scalars or arrays of length B in any
    float precision — they are computed in float64 by the caller and cast to ``x0.dtype`` here,
    last. With ``return_noise`` the ε used is returned too (it costs a copy).
    """
    x0 = np.ascontiguousarray(x0)
    if x0.dtype not in (np.float32, np.float64):
        raise TypeError(f"x0 must be float32 or float64, got {x0.dtype}")
    rows = x0.shape[0] if x0.ndim > 1 else 1
    cols = x0.size // rows if rows else 0
    a = np.broadcast_to(np.asarray(signal, dtype=np.float64), (rows,)).astype(x0.dtype)
    b = np.broadcast_to(np.asarray(noise, dtype=np.float64), (rows,)).astype(x0.dtype)
    out = np.empty_like(x0)
    eps = np.empty_like(x0) if return_noise else None
    src = x0.reshape(rows, cols)
    dst = out.reshape(rows, cols)
    flat_src, flat_dst = src.reshape(-1), dst.reshape(-1)

    def work(rng: np.random.Generator, start: int, stop: int) -> None:
        tmp = np.empty(min(CHUNK, stop - start) if cols <= CHUNK else CHUNK, dtype=x0.dtype)
        for r0, r1, offset in _pieces(start, stop, cols):
            if offset < 0:
                block = dst[r0:r1]
                _fill_normal(rng, block.reshape(-1))
                if eps is not None:
                    eps.reshape(rows, cols)[r0:r1] = block
                block *= b[r0:r1, None]
                t = tmp[: (r1 - r0) * cols].reshape(r1 - r0, cols)
                np.multiply(src[r0:r1], a[r0:r1, None], out=t)
                block += t
            else:
                seg = flat_dst[offset:r1]
                _fill_normal(rng, seg)
                if eps is not None:
                    eps.reshape(-1)[offset:r1] = seg
                seg *= b[r0]
                t = tmp[: r1 - offset]
                np.multiply(flat_src[offset:r1], a[r0], out=t)
                seg += t

    if out.size:
        _run(rows, cols, seed, work)
    return (out, eps) if return_noise else out
