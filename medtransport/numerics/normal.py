"""Seeded standard-normal deviates, bitwise reproducible per seed for any thread count.

Public: :func:`standard_normal` (a new array), :func:`fill_standard_normal` (into an array) and
:func:`add_noise` (the fused affine combination ``signal·x₀ + noise·ε`` per row, ε drawn here).

**The random bits.** Element ``g`` of the (conceptually infinite) stream of a seed is a
function of the seed and ``g`` alone — a counter-based generator, so any split of an array into
blocks, and any number of threads, gives the same bits. The 64-bit words are the SplitMix64
sequence (Steele, Lea & Flood 2014, OOPSLA; passes TestU01's BigCrush)

    w_c = mix(k + (c + 1)·γ),   γ = 0x9E3779B97F4A7C15,
    mix(z) = h₃(h₂(h₁(z))),  h₁: z ← (z ⊕ z≫30)·0xBF58476D1CE4E5B9,
                             h₂: z ← (z ⊕ z≫27)·0x94D049BB133111EB,  h₃: z ← z ⊕ z≫31,

with the start ``k`` one 64-bit word of ``numpy.random.SeedSequence(seed).generate_state`` (so
a spawned SeedSequence gives an independent stream), everything modulo 2⁶⁴. ``offset`` starts an
array at element ``g = offset`` of the stream, so a long stream can be drawn in pieces: pieces
``[0, n)`` and ``[n, 2n)`` (``offset=n``) concatenate to the ``2n`` draw bit for bit.

**The transform.** Box–Muller (Box & Muller 1958, Ann. Math. Stat. 29:610): for independent
U₁ ∈ (0, 1] and uniform angle θ,

    R = √(−2·ln U₁),   Z₁ = R·cos θ,   Z₂ = R·sin θ

are independent N(0, 1); elements ``2p`` and ``2p + 1`` of the stream are pair ``p``. θ is
``2π·t − π/4`` for a uniform t (a fixed rotation does not change the law): the top 2 bits of t
pick the quadrant, the rest give φ ∈ [−π/4, π/4) whose sine and cosine are Taylor polynomials,
and ln U₁ is ``e·ln 2 + 2·atanh(s)``, ``s = (m − 1)/(m + 1)`` for ``U₁ = m·2ᵉ``,
``m ∈ [√½, √2)`` (|s| ≤ 0.172), as an odd series. No libm or numpy transcendental is called, so
the loop vectorises with whatever SIMD LLVM finds (AVX2 is enough) and no fast-math is used, so
vector and scalar code give the same bits.

* float32 output: one word per pair — 40 bits for U₁ (its smallest value 2⁻⁴⁰: the tail reaches
  √(80·ln 2) = 7.4σ), 24 for t; polynomials truncated where their error is below 10⁻¹⁰.
* float64 output: two words per pair — 52 bits for U₁ (tail 8.5σ), 54 for t; polynomial
  truncation below 10⁻¹⁶ (a few ulp in all).

The arithmetic is in float64; a float32 result is rounded once, on the store.

**The compact float64 stream** (:func:`compact_normal`, :func:`fill_compact_normal`; what
:mod:`~medtransport.numerics.sde_ensemble` draws): another stream of the same seed, for hot
loops that need many float64 deviates — pair ``p`` is made from the ONE word ``w_p`` with the
float32 layout above (40 bits for U₁, tail 7.4σ; 24 bits for t), its polynomials those of the
float32 stream (relative error below 10⁻¹⁰), evaluated with fused multiply–adds and kept in
float64. Its elements are therefore not those of :func:`standard_normal` in float64 (which
keep their bits), but its guarantees are the same: element ``g`` is a function of the seed and
``g`` alone — bitwise the same for any thread count, block split or ``offset`` — and an fma is
correctly rounded wherever it runs (vector or scalar, with or without FMA hardware), so no
fast-math is involved. One word and FMAs make a pair ~1.6× cheaper than the float64 stream's.
"""

from __future__ import annotations

import types as types_module

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from medtransport.numerics import threads

__all__ = ["add_noise", "compact_normal", "fill_compact_normal", "fill_standard_normal",
           "standard_normal", "stream_key"]

#: Elements per parallel block (even, so pairs never straddle blocks); a block's buffer for the
#: fused kernel (128 KiB in float64) stays in L2.
BLOCK = 16384
#: Below this many elements one thread does the whole array (same bits either way).
PARALLEL_MIN = 4 * BLOCK

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_ONE_BITS = np.uint64(0x3FF0000000000000)  # bits of 1.0
_MANT = np.uint64(0x000FFFFFFFFFFFFF)
_TWO52_BITS = np.uint64(0x4330000000000000)  # bits of 2⁵²
_U1 = np.uint64(1)
_S12, _S22, _S24, _S27, _S30, _S31, _S52, _S62, _S63 = (
    np.uint64(k) for k in (12, 22, 24, 27, 30, 31, 52, 62, 63))
_LOW22 = np.uint64((1 << 22) - 1)
_LOW24 = np.uint64((1 << 24) - 1)
_LN2_HI = 6.93147180369123816490e-01  # fdlibm's split of ln 2: e·LN2_HI is exact
_LN2_LO = 1.90821492927058770002e-10
_SQRT2 = 1.4142135623730951
_HALF_PI = 1.5707963267948966


@intrinsic
def _as_float(typingctx, bits):  # type: ignore[no-untyped-def]
    """The float64 whose IEEE bits are the uint64 ``bits`` (a register bitcast)."""
    if not isinstance(bits, types.Integer) or bits.bitwidth != 64:
        return None

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(bits), codegen


@intrinsic
def _as_bits(typingctx, value):  # type: ignore[no-untyped-def]
    """The IEEE bits of a float64, as uint64."""
    if not isinstance(value, types.Float) or value.bitwidth != 64:
        return None

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.bitcast(args[0], ir.IntType(64))

    return types.uint64(value), codegen


@intrinsic
def _fma(typingctx, a, b, c):  # type: ignore[no-untyped-def]
    """a·b + c rounded once (LLVM's llvm.fma: the same bits in vector and scalar code; numba
    does not contract a*b + c by itself without fast-math)."""
    if not all(isinstance(v, types.Float) and v.bitwidth == 64 for v in (a, b, c)):
        return None

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        f64 = ir.DoubleType()
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(f64, [f64] * 3),
                                            "llvm.fma.f64")
        return builder.call(fn, args)

    return types.float64(types.float64, types.float64, types.float64), codegen


_jit = numba.njit(nogil=True, cache=True, error_model="numpy")
# helpers are inlined in numba's IR: LLVM does not inline across numba functions, and a call
# in the loop would stop it from vectorising
_inline = numba.njit(inline="always", nogil=True, cache=True, error_model="numpy")


@_inline
def _word(key: np.uint64, c: np.uint64) -> np.uint64:
    z = key + (c + _U1) * _GAMMA
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@_inline
def _log_unit(u: float, wide: bool) -> float:
    """ln u for u ∈ (0, 1] normal (no subnormals reach here)."""
    bits = _as_bits(u)
    # the biased exponent as a float by the 2⁵² trick (no integer conversion in the loop)
    ef = _as_float((bits >> _S52) | _TWO52_BITS) - (4503599627370496.0 + 1023.0)
    m = _as_float((bits & _MANT) | _ONE_BITS)
    big = m > _SQRT2
    m = m * 0.5 if big else m
    ef = ef + 1.0 if big else ef
    s = (m - 1.0) / (m + 1.0)
    s2 = s * s
    if wide:  # 2·atanh(s) = 2s·Σ s²ʲ/(2j + 1), j ≤ 9: truncation < 1e-17
        p = 1.0 / 19.0
        p = p * s2 + 1.0 / 17.0
        p = p * s2 + 1.0 / 15.0
        p = p * s2 + 1.0 / 13.0
        p = p * s2 + 1.0 / 11.0
    else:  # j ≤ 5: truncation < 2e-11
        p = 1.0 / 11.0
    p = p * s2 + 1.0 / 9.0
    p = p * s2 + 1.0 / 7.0
    p = p * s2 + 1.0 / 5.0
    p = p * s2 + 1.0 / 3.0
    p = p * s2 + 1.0
    return ef * _LN2_HI + (2.0 * s * p + ef * _LN2_LO)


@_inline
def _sincos(phi: float, wide: bool) -> tuple[float, float]:
    """(cos φ, sin φ) for |φ| ≤ π/4 by Taylor polynomials."""
    x2 = phi * phi
    if wide:  # through φ¹⁶/16! and φ¹⁵/15!: next terms < 5e-17
        c = 1.0 / 20922789888000.0
        c = c * x2 - 1.0 / 87178291200.0
        c = c * x2 + 1.0 / 479001600.0
        sn = -1.0 / 1307674368000.0
        sn = sn * x2 + 1.0 / 6227020800.0
        sn = sn * x2 - 1.0 / 39916800.0
    else:  # through φ¹²/12! and φ¹¹/11!: next terms < 1e-11
        c = 1.0 / 479001600.0
        sn = -1.0 / 39916800.0
    c = c * x2 - 1.0 / 3628800.0
    c = c * x2 + 1.0 / 40320.0
    c = c * x2 - 1.0 / 720.0
    c = c * x2 + 1.0 / 24.0
    c = c * x2 - 0.5
    c = c * x2 + 1.0
    sn = sn * x2 + 1.0 / 362880.0
    sn = sn * x2 - 1.0 / 5040.0
    sn = sn * x2 + 1.0 / 120.0
    sn = sn * x2 - 1.0 / 6.0
    sn = sn * x2 + 1.0
    return c, sn * phi


@_inline
def _pair(key: np.uint64, p: np.uint64, wide: bool) -> tuple[float, float]:
    """Box–Muller pair ``p`` of the stream: elements 2p and 2p + 1."""
    if wide:
        w0 = _word(key, p + p)
        w1 = _word(key, p + p + _U1)
        u1 = 2.0 - _as_float((w0 >> _S12) | _ONE_BITS)  # (0, 1], step 2⁻⁵²
        q = w1 >> _S62
        f = _as_float(((w1 << np.uint64(2)) >> _S12) | _ONE_BITS) - 1.0
    else:
        w = _word(key, p)
        u1 = 2.0 - _as_float(((w >> _S24) << _S12) | _ONE_BITS)  # (0, 1], step 2⁻⁴⁰
        t = w & _LOW24
        q = t >> _S22
        f = _as_float(((t & _LOW22) << _S30) | _ONE_BITS) - 1.0
    r = np.sqrt(-2.0 * _log_unit(u1, wide))
    c, s = _sincos((f - 0.5) * _HALF_PI, wide)
    return _rotated(r, c, s, q)


@_inline
def _rotated(r: float, c: float, s: float, q: np.uint64) -> tuple[float, float]:
    """r·(cos, sin) of φ + q·π/2 from (cos φ, sin φ) = (c, s): swap when q is odd, then flip
    signs (by the sign bit, branch-free) of the cosine for q = 1, 2 and of the sine for
    q = 2, 3."""
    odd = (q & _U1) == _U1
    a1 = s if odd else c
    a2 = c if odd else s
    hi = (q >> _U1) & _U1
    z1 = _as_float(_as_bits(a1) ^ (((q & _U1) ^ hi) << _S63))
    z2 = _as_float(_as_bits(a2) ^ (hi << _S63))
    return r * z1, r * z2


@_inline
def _pair_compact(key: np.uint64, p: np.uint64) -> tuple[float, float]:
    """Pair ``p`` of the compact float64 stream (module docstring): one word, the float32
    layout and polynomials, Horner steps as fused multiply–adds."""
    return _pair_compact_at(key + (p + _U1) * _GAMMA)


@_inline
def _pair_compact_at(state: np.uint64) -> tuple[float, float]:
    """The compact pair whose SplitMix64 state is ``key + (p + 1)·γ``: a loop over
    consecutive p passes ``state₀ + i·γ``, which the compiler turns into an addition per lane
    instead of a 64-bit multiply (costly in SIMD)."""
    z = (state ^ (state >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    w = z ^ (z >> _S31)
    u1 = 2.0 - _as_float(((w >> _S24) << _S12) | _ONE_BITS)  # (0, 1], step 2⁻⁴⁰
    t = w & _LOW24
    q = t >> _S22
    f = _as_float(((t & _LOW22) << _S30) | _ONE_BITS) - 1.0
    # ln U₁ as in _log_unit (j ≤ 5)
    bits = _as_bits(u1)
    ef = _as_float((bits >> _S52) | _TWO52_BITS) - (4503599627370496.0 + 1023.0)
    m = _as_float((bits & _MANT) | _ONE_BITS)
    big = m > _SQRT2
    m = m * 0.5 if big else m
    ef = ef + 1.0 if big else ef
    s = (m - 1.0) / (m + 1.0)
    s2 = s * s
    p5 = _fma(_fma(_fma(_fma(1.0 / 11.0, s2, 1.0 / 9.0), s2, 1.0 / 7.0), s2, 1.0 / 5.0), s2,
              1.0 / 3.0)
    p5 = _fma(p5, s2, 1.0)
    ln_u = _fma(ef, _LN2_HI, _fma(2.0 * s, p5, ef * _LN2_LO))
    r = np.sqrt(-2.0 * ln_u)
    # cos φ, sin φ as in _sincos (through φ¹²/12! and φ¹¹/11!)
    phi = (f - 0.5) * _HALF_PI
    x2 = phi * phi
    c = _fma(_fma(_fma(1.0 / 479001600.0, x2, -1.0 / 3628800.0), x2, 1.0 / 40320.0), x2,
             -1.0 / 720.0)
    c = _fma(_fma(_fma(c, x2, 1.0 / 24.0), x2, -0.5), x2, 1.0)
    sn = _fma(_fma(_fma(-1.0 / 39916800.0, x2, 1.0 / 362880.0), x2, -1.0 / 5040.0), x2,
              1.0 / 120.0)
    sn = _fma(_fma(sn, x2, -1.0 / 6.0), x2, 1.0) * phi
    return _rotated(r, c, sn, q)


#: Streams a fill loop can draw from (compile-time constants of :func:`_fill_range_py`).
_NARROW, _WIDE, _COMPACT = 0, 1, 2


@_inline
def _pair_of(key: np.uint64, p: np.uint64, stream: int) -> tuple[float, float]:
    """Pair ``p`` of the float32 (narrow), float64 (wide) or compact stream."""
    if stream == _COMPACT:
        return _pair_compact(key, p)
    return _pair(key, p, stream == _WIDE)


@_inline
def _fill_range_py(buf, lo, hi, key, g0, stream):  # type: ignore[no-untyped-def]
    """buf[lo + k] = element g0 + k of the stream for lo + k < hi (``stream`` a compile-time
    constant; the whole array is passed, not a slice, so it stays C-contiguous to numba)."""
    n = hi - lo
    if n <= 0:
        return
    k = 0
    if g0 % 2 == 1:  # starts on the second half of a pair
        buf[lo] = _pair_of(key, np.uint64((g0 - 1) // 2), stream)[1]
        k = 1
    p0 = np.uint64((g0 + k) // 2)
    npairs = (n - k) // 2
    base = np.uint64(lo + k)  # unsigned indices: numba adds no negative-index wraparound,
    for i in range(npairs):  # which would stop LLVM from vectorising the stores
        z1, z2 = _pair_of(key, p0 + np.uint64(i), stream)
        j = base + np.uint64(2 * i)
        buf[j] = z1
        buf[j + _U1] = z2
    k += 2 * npairs
    if k < n:
        buf[lo + k] = _pair_of(key, p0 + np.uint64(npairs), stream)[0]


@_jit
def _fill_narrow(buf, lo: int, hi: int, key: np.uint64, g0: int) -> None:  # type: ignore[no-untyped-def]
    _fill_range_py(buf, lo, hi, key, g0, _NARROW)


@_jit
def _fill_wide(buf, lo: int, hi: int, key: np.uint64, g0: int) -> None:  # type: ignore[no-untyped-def]
    _fill_range_py(buf, lo, hi, key, g0, _WIDE)


@_jit
def _fill_compact(buf, lo: int, hi: int, key: np.uint64, g0: int) -> None:  # type: ignore[no-untyped-def]
    _fill_range_py(buf, lo, hi, key, g0, _COMPACT)


def _fill_blocks_compact_py(out, key, offset):  # type: ignore[no-untyped-def]
    n = out.shape[0]
    for blk in numba.prange((n + BLOCK - 1) // BLOCK):
        lo = blk * BLOCK
        _fill_compact(out, lo, min(n, lo + BLOCK), key, offset + lo)


def _fill_blocks_narrow_py(out, key, offset):  # type: ignore[no-untyped-def]
    n = out.shape[0]
    for blk in numba.prange((n + BLOCK - 1) // BLOCK):
        lo = blk * BLOCK
        _fill_narrow(out, lo, min(n, lo + BLOCK), key, offset + lo)


def _fill_blocks_wide_py(out, key, offset):  # type: ignore[no-untyped-def]
    n = out.shape[0]
    for blk in numba.prange((n + BLOCK - 1) // BLOCK):
        lo = blk * BLOCK
        _fill_wide(out, lo, min(n, lo + BLOCK), key, offset + lo)


@_inline
def _affine_block(x0, out, z, a, b, cols, lo, hi):  # type: ignore[no-untyped-def]
    """out[j] = a[row]·x0[j] + b[row]·z[j − lo] in the array's dtype, row = j // cols."""
    j = lo
    while j < hi:
        row = j // cols
        end = min(hi, (row + 1) * cols)
        ar = a[row]
        br = b[row]
        for i in range(np.uint64(j), np.uint64(end)):  # unsigned: see _fill_range_py
            out[i] = ar * x0[i] + br * z[i - np.uint64(lo)]
        j = end


def _noise_blocks_narrow_py(x0, out, eps, a, b, cols, key, offset, keep):  # type: ignore[no-untyped-def]
    n = out.shape[0]
    for blk in numba.prange((n + BLOCK - 1) // BLOCK):
        lo = blk * BLOCK
        hi = min(n, lo + BLOCK)
        z = np.empty(hi - lo, dtype=out.dtype)
        _fill_narrow(z, 0, hi - lo, key, offset + lo)
        _affine_block(x0, out, z, a, b, cols, lo, hi)
        if keep:
            eps[lo:hi] = z


def _noise_blocks_wide_py(x0, out, eps, a, b, cols, key, offset, keep):  # type: ignore[no-untyped-def]
    n = out.shape[0]
    for blk in numba.prange((n + BLOCK - 1) // BLOCK):
        lo = blk * BLOCK
        hi = min(n, lo + BLOCK)
        z = np.empty(hi - lo, dtype=out.dtype)
        _fill_wide(z, 0, hi - lo, key, offset + lo)
        _affine_block(x0, out, z, a, b, cols, lo, hi)
        if keep:
            eps[lo:hi] = z


def _compile(py):  # type: ignore[no-untyped-def]
    """(serial, parallel) dispatchers of one kernel: the same arithmetic, so the same bits;
    each compiles on first use only (a float32 user never compiles the float64 path).

    The parallel one compiles a copy of the function under its own name: numba's cache files
    are named by the function, not by its flags, so two dispatchers of one function load each
    other's machine code (the serial one then starts the thread pool)."""
    twin = types_module.FunctionType(py.__code__, py.__globals__, py.__name__ + "_parallel",
                                     py.__defaults__, py.__closure__)
    twin.__qualname__ = py.__qualname__ + "_parallel"
    twin.__module__ = py.__module__
    return (numba.njit(nogil=True, cache=True, error_model="numpy")(py),
            numba.njit(parallel=True, nogil=True, cache=True, error_model="numpy")(twin))


# [wide][parallel]: float32 → narrow (one word per pair), float64 → wide (two words)
_FILL = (_compile(_fill_blocks_narrow_py), _compile(_fill_blocks_wide_py))
_NOISE = (_compile(_noise_blocks_narrow_py), _compile(_noise_blocks_wide_py))


_FILL_COMPACT = _compile(_fill_blocks_compact_py)


def _call(kernels, size: int, *args) -> None:  # type: ignore[no-untyped-def]
    """Run the serial or the parallel kernel of a pair, as many threads as
    :func:`medtransport.numerics.threads.choose` gives (the same bits either way)."""
    n = threads.choose(size, PARALLEL_MIN)
    if n == 1:
        kernels[0](*args)
        return
    with threads.limited(n, blas=False):
        kernels[1](*args)


def _fill_serial(out, key, offset, wide):  # type: ignore[no-untyped-def]
    """The one-thread fill (tests compare it with the parallel one)."""
    _FILL[int(wide)][0](out, key, offset)


def stream_key(seed: int | np.random.SeedSequence) -> np.uint64:
    """The 64-bit start ``k`` of a seed's stream (from ``SeedSequence(seed)``)."""
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    return np.uint64(ss.generate_state(1, np.uint64)[0])


def _check_dtype(dtype: np.dtype, what: str) -> None:
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"{what} must be float32 or float64, got {dtype}")


def _check_offset(offset: int) -> int:
    offset = int(offset)
    if offset < 0:
        raise ValueError(f"offset must be a non-negative element index, got {offset}")
    return offset


def fill_standard_normal(out: np.ndarray, seed: int | np.random.SeedSequence, *,
                         offset: int = 0) -> np.ndarray:
    """Fill the C-contiguous float32/float64 array ``out`` with elements ``offset …`` of the
    seed's stream (in C order) and return it."""
    _check_dtype(out.dtype, "out")
    if not out.flags.c_contiguous:
        raise ValueError("out must be C-contiguous")
    offset = _check_offset(offset)
    flat = out.reshape(-1)
    if flat.size:
        _call(_FILL[int(out.dtype == np.float64)], flat.size, flat, stream_key(seed), offset)
    return out


def standard_normal(shape: tuple[int, ...] | int, seed: int | np.random.SeedSequence,
                    dtype: type | np.dtype = np.float32, *, offset: int = 0) -> np.ndarray:
    """An array of independent N(0, 1) deviates: elements ``offset …`` of the seed's stream."""
    dt = np.dtype(dtype)
    _check_dtype(dt, "dtype")
    shape = (shape,) if isinstance(shape, int | np.integer) else tuple(shape)
    return fill_standard_normal(np.empty(shape, dtype=dt), seed, offset=offset)


def add_noise(x0: np.ndarray, signal: np.ndarray | float, noise: np.ndarray | float,
              seed: int | np.random.SeedSequence, *, return_noise: bool = False,
              offset: int = 0) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """x = signal·x₀ + noise·ε per row of ``x0``, ε = ``standard_normal(x0.shape, seed, …)``.

    ``x0`` has shape (B, …) (a 0-/1-D array is one row); ``signal`` and ``noise`` are scalars or
    length-B arrays, cast to ``x0.dtype`` once; the combination is then done in that dtype,
    ``(signal·x₀) + (noise·ε)``, so it equals the same numpy expression bit for bit. With
    ``return_noise`` the ε used is returned too.
    """
    x0 = np.ascontiguousarray(x0)
    _check_dtype(x0.dtype, "x0")
    offset = _check_offset(offset)
    rows = x0.shape[0] if x0.ndim > 1 else 1
    cols = x0.size // rows if rows else 0
    a = np.broadcast_to(np.asarray(signal, dtype=np.float64), (rows,)).astype(x0.dtype)
    b = np.broadcast_to(np.asarray(noise, dtype=np.float64), (rows,)).astype(x0.dtype)
    out = np.empty_like(x0)
    eps = np.empty_like(x0) if return_noise else np.empty(0, dtype=x0.dtype)
    if out.size:
        _call(_NOISE[int(x0.dtype == np.float64)], out.size, x0.reshape(-1), out.reshape(-1),
              eps.reshape(-1), a, b, cols, stream_key(seed), offset, return_noise)
    return (out, eps) if return_noise else out


def fill_compact_normal(out: np.ndarray, seed: int | np.random.SeedSequence, *,
                        offset: int = 0) -> np.ndarray:
    """Fill the C-contiguous float64 array ``out`` with elements ``offset …`` of the seed's
    compact stream (module docstring; C order) and return it. Element ``g`` depends on the
    seed and ``g`` only: the same bits for any thread count, split or offset."""
    if out.dtype != np.float64:
        raise TypeError(f"out must be float64 (the compact stream is float64), got {out.dtype}")
    if not out.flags.c_contiguous:
        raise ValueError("out must be C-contiguous")
    offset = _check_offset(offset)
    flat = out.reshape(-1)
    if flat.size:
        _call(_FILL_COMPACT, flat.size, flat, stream_key(seed), offset)
    return out


def compact_normal(shape: tuple[int, ...] | int, seed: int | np.random.SeedSequence, *,
                   offset: int = 0) -> np.ndarray:
    """A float64 array of independent N(0, 1) deviates: elements ``offset …`` of the seed's
    compact stream (not the elements of :func:`standard_normal`)."""
    shape = (shape,) if isinstance(shape, int | np.integer) else tuple(shape)
    return fill_compact_normal(np.empty(shape, dtype=np.float64), seed, offset=offset)
