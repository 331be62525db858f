"""Ensemble statistics of a scalar Itô SDE computed while its paths run: no path is stored.

For the scalar member of :class:`~medtransport.numerics.sde.AffineSDE`,

    dX = (a0 + a1 X) dt + √(c0 + c1 X + c2 X²) dW,

the paths advance in blocks of :data:`BLOCK` lanes (a block's states stay in L1), and at each
output step every block reduces its lanes to (n, mean, M₂, M₃, M₄, min, max) — Mₖ = Σ(x − x̄)ᵏ —
and to counts on a fine histogram. Blocks merge by Pébay's pairwise formulas (Pébay 2008,
Sandia SAND2008-6212; Chan, Golub & LeVeque 1979 for M₂):

    n = na + nb,  δ = x̄b − x̄a,  x̄ = x̄a + δ·nb/n,
    M₂ = M₂a + M₂b + δ²·na·nb/n,
    M₃ = M₃a + M₃b + δ³·na·nb·(na − nb)/n² + 3δ·(na·M₂b − nb·M₂a)/n,
    M₄ = M₄a + M₄b + δ⁴·na·nb·(na² − na·nb + nb²)/n³ + 6δ²·(na²·M₂b + nb²·M₂a)/n²
         + 4δ·(na·M₃b − nb·M₃a)/n,

in a fixed order (block within a fixed group of blocks, then group after group), so the result
does not depend on the number of threads. From them: the mean with SE s/√n, the variance s² with
the SE of :mod:`~medtransport.numerics.ensemble`, the histogram density on the reported cells
(sums of the fine counts), and quantiles read off the fine counts by linear interpolation within
a fine cell, whose width is their stated resolution (added in quadrature to the binomial SE).

**Random numbers.** The normals are :mod:`medtransport.numerics.normal`'s counter-based
*compact* float64 stream (one SplitMix64 word per Box–Muller pair, fused multiply–adds): the
increments of steps 2k + 1 and 2k + 2 of lane j in block b are pair ``b·2⁴⁰ + k·BLOCK + j``
(elements 2p and 2p + 1 of ``normal.compact_normal``), so a path's draws depend on the seed, the
path's number and the step alone — not on the number of paths nor of threads (bitwise, any
thread count). Block b owns words ``[b·2⁴⁰, (b + 1)·2⁴⁰)`` of the seed's SplitMix64 sequence, in
quarters of 2³⁸: the increments; CIR's Gamma normals (pair ``+ 2³⁸``); its uniforms (words
``+ 2·2³⁸ + 2(k·BLOCK + j)`` and ``+ 1``); and 2²⁸ words per lane for draws after a rejection
(normals from ``+ 3·2³⁸ + j·2²⁸``, uniforms ``+ 2²⁶`` beyond, the boost's ``+ 2²⁷``). The loop
over lanes has no call and no branch the compiler cannot turn into a select, so it runs in SIMD,
with 512-bit vectors where the CPU has them (:mod:`~medtransport.numerics.vector_width`).

**Schemes** (as :mod:`~medtransport.numerics.sde`): ``euler_maruyama`` and ``milstein`` with the
state-space fixes ``truncate`` (full truncation: coefficients at the clipped state, the clipped
state recorded), ``reflect`` and ``none``, every step that ends outside counted; ``exact``
transitions — Gaussian (OU, drifted BM), geometric Brownian motion advanced in logarithms
(ln X grows by (λ − μ²/2)h + μ√h·Z, the exact log-normal transition, exponentiated only at
outputs), and CIR's scaled non-central χ² for ν = 4κθ/σ² > 1 as k·((Z + √λ)² + 2·G),
G ~ Gamma((ν − 1)/2) by Marsaglia & Tsang (2000): their squeeze on each lane's first
candidate in SIMD; the lanes it leaves (8 % at shape 1.3) compacted into a list on which the
logarithmic test, then fresh candidates for the rejected, run in SIMD too (shape < 1 by the
boost G·U^{1/shape}). No walls: paths with walls run on the
path engine.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np

from medtransport.numerics.normal import (
    _LN2_HI,
    _LN2_LO,
    _MANT,
    _ONE_BITS,
    _S52,
    _SQRT2,
    _TWO52_BITS,
    _as_bits,
    _as_float,
    _fma,
    _pair_compact,
    _word,
    stream_key,
)

try:  # numba's count-trailing-zeros intrinsic (cttz), from a module numba calls unsafe
    from numba.cpython.unsafe.numbers import trailing_zeros
except ImportError:  # pragma: no cover - a numba without it: the same count, bit by bit
    @numba.njit(inline="always")
    def trailing_zeros(x: np.uint64) -> int:
        n = 0
        while (x & np.uint64(1)) == np.uint64(0):
            x >>= np.uint64(1)
            n += 1
        return n
from medtransport.numerics.sde import AffineSDE, exact_kinds
from medtransport.numerics.vector_width import prefer_wide_vectors

__all__ = ["BLOCK", "EnsembleRun", "run_ensemble", "supports"]

#: Lanes per block (even; a block's state, draws and flags: ~14 KiB).
BLOCK = 256
#: Fixed groups of blocks, merged in order: the unit of parallel work.
GROUPS = 64
_STRIDE = np.uint64(1 << 40)  # words reserved per block (a compact pair is one word)
_REGION = np.uint64(1 << 38)  # words per region: increments, Gamma normals, uniforms, fallback
_LANE = np.uint64(1 << 28)  # fallback words per lane: normals, uniforms (+2²⁶), boost (+2²⁷)
_LANE_U = np.uint64(1 << 26)
_LANE_B = np.uint64(1 << 27)
_U53 = 1.0 / 9007199254740992.0
_U_MIN = 2.0 ** -54  # stands in for u = 0 in ln u (the test then accepts either way)
_S11 = np.uint64(11)

_jit = {"nogil": True, "cache": True, "error_model": "numpy"}
_inline = numba.njit(inline="always", **_jit)


@_inline
def _uniform(key, c):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """A uniform on [0, 1) from word ``c`` of the stream (53 bits)."""
    return float(_word(key, c) >> _S11) * _U53


@_inline
def _fold(y, lo, hi):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """Mirror y into [lo, hi] (either side may be infinite); branch-free for SIMD."""
    length = hi - lo
    two = 2.0 * length
    t = y - lo
    r = t - two * math.floor(t / two)
    inside = lo + (two - r if r > length else r)
    one_lo = 2.0 * lo - y if y < lo else y
    one = 2.0 * hi - one_lo if one_lo > hi else one_lo
    return inside if (length < math.inf and length > 0.0) else one


@_inline
def _em(x, z, n, a0, a1, c0, c1, c2, h, sqh, t_lo, t_hi, ss_lo, ss_hi, viol, noise_case,
        milstein, reflect):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """One Euler–Maruyama (``milstein`` False) or Milstein (True) step of ``n`` lanes;
    ``milstein``, noise_case (0 additive, 1 proportional, 2 general) and ``reflect`` are
    constants at every call site, folded by the compiler."""
    b_add = math.sqrt(c0) if c0 > 0.0 else 0.0
    b_lin = math.sqrt(c2) if c2 > 0.0 else 0.0
    for j in range(n):
        xj = x[j]
        xv = min(max(xj, t_lo), t_hi)
        if noise_case == 0:
            b = b_add
        elif noise_case == 1:
            b = b_lin * abs(xv)
        else:
            var = c0 + (c1 + c2 * xv) * xv
            b = math.sqrt(max(var, 0.0))
        dw = sqh * z[j]
        y = xj + (a0 + a1 * xv) * h + b * dw
        if milstein:
            y += 0.25 * (c1 + 2.0 * c2 * xv) * (dw * dw - h)
        out = (y < ss_lo) | (y > ss_hi)
        viol[j] += 1 if out else 0
        if reflect:
            y = _fold(y, ss_lo, ss_hi) if out else y
        x[j] = y


@_inline
def _ln_parts(x):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """x = m·2ᵉ with m ∈ [√½, √2), for a positive normal float64: (m, e)."""
    bits = _as_bits(x)
    ef = _as_float((bits >> _S52) | _TWO52_BITS) - (4503599627370496.0 + 1023.0)
    m = _as_float((bits & _MANT) | _ONE_BITS)
    big = m > _SQRT2
    return (m * 0.5 if big else m), (ef + 1.0 if big else ef)


@_inline
def _ln_series(s, ef):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """e·ln 2 + 2·atanh(s) by the series of normal._log_unit (j ≤ 9, truncation < 1e-17),
    Horner steps as fused multiply–adds."""
    s2 = s * s
    p = _fma(_fma(_fma(_fma(1.0 / 19.0, s2, 1.0 / 17.0), s2, 1.0 / 15.0), s2, 1.0 / 13.0),
             s2, 1.0 / 11.0)
    p = _fma(_fma(_fma(_fma(p, s2, 1.0 / 9.0), s2, 1.0 / 7.0), s2, 1.0 / 5.0), s2, 1.0 / 3.0)
    p = _fma(p, s2, 1.0)
    return _fma(ef, _LN2_HI, _fma(2.0 * s, p, ef * _LN2_LO))


@_inline
def _ln_two(a, b):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """(ln a, ln b) for positive normal floats with ONE division: s = (m − 1)/(m + 1) of both
    from 1/((mₐ + 1)(m_b + 1)) — the divider, shared with the square roots, is this loop's
    bottleneck."""
    ma, ea = _ln_parts(a)
    mb, eb = _ln_parts(b)
    pa = ma + 1.0
    pb = mb + 1.0
    r = 1.0 / (pa * pb)
    return _ln_series((ma - 1.0) * pb * r, ea), _ln_series((mb - 1.0) * pa * r, eb)


@_inline
def _cir_exact(x, z, zg, ug, g, acc, n, ratio, d, c):  # type: ignore[no-untyped-def]  # pragma: no cover
    """The SIMD part of a CIR exact step: the non-central part (λ = X·``ratio``) and
    Marsaglia–Tsang's squeeze u < 1 − 0.0331·z⁴ on the lane's first (z, u), which accepts
    92 % of lanes at shape 1.3 without a logarithm; acc = 1 where it accepts (g = d·v,
    v = (1 + c·z)³). The others go through :func:`_cir_test` on a compacted list."""
    for j in range(n):
        nc = max(x[j], 0.0) * ratio
        t = z[j] + math.sqrt(nc)
        zz = zg[j]
        v = 1.0 + c * zz
        v3 = v * v * v
        z2 = zz * zz
        ok = (v > 0.0) & (ug[j] < 1.0 - 0.0331 * z2 * z2)
        acc[j] = 1 if ok else 0
        g[j] = d * v3 if ok else 0.0
        x[j] = t * t


@_inline
def _mt_test(zz, u, d, c):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """Marsaglia–Tsang's whole test of the candidate (z, u): (accepted, d·v) — the squeeze,
    or ln u < z²/2 + d − d·v + d·ln v (v = (1 + c·z)³), both logarithms by the core's
    polynomial ln with one division, so a loop of candidates runs in SIMD."""
    v = 1.0 + c * zz
    pos = v > 0.0
    vp = v if pos else 1.0
    v3 = vp * vp * vp
    z2 = zz * zz
    squeeze = u < 1.0 - 0.0331 * z2 * z2
    ln_u, ln_v = _ln_two(max(u, _U_MIN), v3)
    full = ln_u < 0.5 * z2 + d - d * v3 + d * ln_v
    return pos & (squeeze | full), d * v3


#: Candidates per chunk of the compacted lists (a multiple of the widest SIMD vector, so the
#: vector loop has no scalar remainder).
_CHUNK = 8


@_inline
def _cir_test(key, base, idx, m, fresh, zg, ug, gg, cnt, cw, cz, cu, cok, cg, d, c):  # type: ignore[no-untyped-def]  # pragma: no cover
    """Marsaglia–Tsang on the ``m`` lanes listed in ``idx``: with ``fresh`` False the whole
    test on each lane's first (z, u) (its squeeze failed), with ``fresh`` True on a new
    candidate from the lane's own fallback words (``cnt`` counts them). Candidates are
    gathered into contiguous chunks padded to a multiple of :data:`_CHUNK`, tested in SIMD,
    accepted ones scattered into ``gg``; the lanes still rejected are compacted to the front
    of ``idx`` and their number returned."""
    mp = (m + _CHUNK - 1) // _CHUNK * _CHUNK
    if fresh:
        for i in range(m):
            j = idx[i]
            cw[i] = base + np.uint64(3) * _REGION + np.uint64(j) * _LANE + np.uint64(cnt[j])
            cnt[j] += 1
        for i in range(m, mp):
            cw[i] = np.uint64(0)
        for i in range(mp):
            w = cw[i]
            zz = _pair_compact(key, w)[0]
            u = _uniform(key, w + _LANE_U)
            ok, gv = _mt_test(zz, u, d, c)
            cok[i] = 1 if ok else 0
            cg[i] = gv
    else:
        for i in range(m):
            j = idx[i]
            cz[i] = zg[j]
            cu[i] = ug[j]
        for i in range(m, mp):
            cz[i] = 0.0
            cu[i] = 0.5
        for i in range(mp):
            ok, gv = _mt_test(cz[i], cu[i], d, c)
            cok[i] = 1 if ok else 0
            cg[i] = gv
    r = 0
    for i in range(m):
        j = idx[i]
        gg[j] = cg[i]
        idx[r] = j
        r += 1 - cok[i]
    return r


@_inline
def _merge(st, n_b, m_b, m2_b, m3_b, m4_b, lo_b, hi_b):  # type: ignore[no-untyped-def]  # pragma: no cover
    """Merge a block's (n, mean, M2, M3, M4, min, max) into ``st`` (Pébay 2008)."""
    n_a = st[0]
    if n_b == 0.0:
        return
    if n_a == 0.0:
        st[0], st[1], st[2], st[3], st[4], st[5], st[6] = n_b, m_b, m2_b, m3_b, m4_b, lo_b, hi_b
        return
    m_a, m2_a, m3_a, m4_a = st[1], st[2], st[3], st[4]
    nn = n_a + n_b
    de = m_b - m_a
    dn = de / nn
    st[0] = nn
    st[1] = m_a + dn * n_b
    st[2] = m2_a + m2_b + de * dn * n_a * n_b
    st[3] = (m3_a + m3_b + de * dn * dn * n_a * n_b * (n_a - n_b)
             + 3.0 * dn * (n_a * m2_b - n_b * m2_a))
    st[4] = (m4_a + m4_b + de * dn * dn * dn * n_a * n_b * (n_a * n_a - n_a * n_b + n_b * n_b)
             + 6.0 * dn * dn * (n_a * n_a * m2_b + n_b * n_b * m2_a)
             + 4.0 * dn * (n_a * m3_b - n_b * m3_a))
    st[5] = min(st[5], lo_b)
    st[6] = max(st[6], hi_b)


@_inline
def _record(xs, lanes, path0, st, counts, nonfinite, samples, o, lo, inv_w, n_fine):  # type: ignore[no-untyped-def]  # pragma: no cover
    """Reduce the block's ``lanes`` states into the group's statistics at output ``o``."""
    s = 0.0
    nf = 0
    for j in range(lanes):
        v = xs[j]
        fin = math.isfinite(v)
        s += v if fin else 0.0
        nf += 1 if fin else 0
    nonfinite[o] += lanes - nf
    if nf == 0:
        return
    m = s / nf
    m2 = 0.0
    m3 = 0.0
    m4 = 0.0
    vlo = math.inf
    vhi = -math.inf
    for j in range(lanes):
        v = xs[j]
        if math.isfinite(v):
            e = v - m
            e2 = e * e
            m2 += e2
            m3 += e2 * e
            m4 += e2 * e2
            vlo = min(vlo, v)
            vhi = max(vhi, v)
            f = (v - lo) * inv_w
            # cell 0: below; n_fine + 1: above; the upper edge belongs to the last cell
            idx = 0 if f < 0.0 else (int(f) + 1 if f < n_fine else
                                     (n_fine if f == n_fine else n_fine + 1))
            counts[o, idx] += 1
    _merge(st[o], float(nf), m, m2, m3, m4, vlo, vhi)
    keep = samples.shape[1]
    for j in range(lanes):
        if path0 + j < keep:
            samples[o, path0 + j] = xs[j]


@numba.njit(parallel=True, **_jit)
def _ensemble(n_paths, x0, n_steps, h, out_index, a0, a1, c0, c1, c2, scheme, kind,
              noise_case, ex_mult, ex_shift, ex_sd, ss_lo, ss_hi, fix, key, lo, inv_w, n_fine,
              gstats, gcounts, gnonfinite, gviol, samples):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    n_blocks = (n_paths + BLOCK - 1) // BLOCK
    n_groups = gstats.shape[0]
    per = (n_blocks + n_groups - 1) // n_groups
    sqh = math.sqrt(h)
    t_lo = ss_lo if fix == 1 else -math.inf
    t_hi = ss_hi if fix == 1 else math.inf
    # CIR exact: ν = ex_shift, Gamma shape (ν − 1)/2, boosted below 1
    shape = 0.5 * (ex_shift - 1.0)
    boost = shape < 1.0
    gd = (shape + 1.0 if boost else shape) - 1.0 / 3.0
    gc = 1.0 / math.sqrt(9.0 * gd)
    cir_exact = scheme == 2 and kind == 3
    ratio = ex_mult / ex_sd if cir_exact else 0.0  # λ per unit state
    for grp in numba.prange(n_groups):
        prefer_wide_vectors()  # 512-bit SIMD where the CPU has it (the loop body is outlined)
        x = np.empty(BLOCK)
        xs = np.empty(BLOCK)
        z1 = np.empty(BLOCK)
        z2 = np.empty(BLOCK)
        zg1 = np.empty(BLOCK)
        zg2 = np.empty(BLOCK)
        ug1 = np.empty(BLOCK)
        ug2 = np.empty(BLOCK)
        gg = np.empty(BLOCK)
        acc = np.ones(BLOCK, np.int64)
        idx = np.empty(BLOCK, np.int64)
        cw = np.empty(BLOCK + _CHUNK, np.uint64)
        cz = np.empty(BLOCK + _CHUNK)
        cu = np.empty(BLOCK + _CHUNK)
        cok = np.empty(BLOCK + _CHUNK, np.int64)
        cg = np.empty(BLOCK + _CHUNK)
        viol = np.zeros(BLOCK, np.int64)
        cnt = np.zeros(BLOCK, np.int64)
        st = gstats[grp]
        counts = gcounts[grp]
        nonfinite = gnonfinite[grp]
        for b in range(grp * per, min(n_blocks, (grp + 1) * per)):
            lanes = min(BLOCK, n_paths - b * BLOCK)
            path0 = b * BLOCK
            base = np.uint64(b) * _STRIDE
            for j in range(BLOCK):
                x[j] = 0.0 if (scheme == 2 and kind == 2) else x0
                viol[j] = 0
                cnt[j] = 0
            if out_index[0] >= 0:
                for j in range(BLOCK):
                    xs[j] = x0
                _record(xs, lanes, path0, st, counts, nonfinite, samples, out_index[0], lo,
                        inv_w, n_fine)
            for k2 in range((n_steps + 1) // 2):
                pb = base + np.uint64(k2 * BLOCK)
                for j in range(BLOCK):
                    p, q = _pair_compact(key, pb + np.uint64(j))
                    z1[j] = p
                    z2[j] = q
                if cir_exact:  # Gamma normals (region 1), uniforms (words of region 2)
                    gb = base + _REGION + np.uint64(k2 * BLOCK)
                    ub = base + np.uint64(2) * _REGION + np.uint64(2 * k2 * BLOCK)
                    for j in range(BLOCK):
                        p, q = _pair_compact(key, gb + np.uint64(j))
                        zg1[j] = p
                        zg2[j] = q
                        ug1[j] = _uniform(key, ub + np.uint64(2 * j))
                        ug2[j] = _uniform(key, ub + np.uint64(2 * j + 1))
                for half in range(2):
                    step = 2 * k2 + 1 + half
                    if step > n_steps:
                        break
                    z = z1 if half == 0 else z2
                    if scheme == 2:
                        if kind == 1:
                            for j in range(BLOCK):
                                x[j] = ex_mult * x[j] + ex_shift + ex_sd * z[j]
                        elif kind == 2:  # ln X / X0
                            for j in range(BLOCK):
                                x[j] += ex_shift + ex_sd * z[j]
                        else:
                            zg = zg1 if half == 0 else zg2
                            ug = ug1 if half == 0 else ug2
                            _cir_exact(x, z, zg, ug, gg, acc, BLOCK, ratio, gd, gc)
                            # the lanes the squeeze left (~21 of 256), listed from a bit mask
                            # per 64 lanes (an OR reduction in SIMD), one set bit at a time
                            for j in range(lanes, BLOCK):
                                acc[j] = 1
                            m = 0
                            for w64 in range(BLOCK // 64):
                                bits = np.uint64(0)
                                for j in range(64):
                                    bits |= np.uint64(1 - acc[64 * w64 + j]) << np.uint64(j)
                                while bits != np.uint64(0):
                                    idx[m] = 64 * w64 + trailing_zeros(bits)
                                    m += 1
                                    bits &= bits - np.uint64(1)
                            fresh = False
                            while m > 0:
                                m = _cir_test(key, base, idx, m, fresh, zg, ug, gg, cnt, cw,
                                              cz, cu, cok, cg, gd, gc)
                                fresh = True
                            if boost:  # G·U^{1/shape}, after the lane's fresh candidates
                                for j in range(lanes):
                                    w = (base + np.uint64(3) * _REGION + np.uint64(j) * _LANE
                                         + _LANE_B + np.uint64(cnt[j]))
                                    cnt[j] += 1
                                    gg[j] *= math.exp(math.log(_uniform(key, w) + 1e-300)
                                                      / shape)
                            for j in range(BLOCK):
                                x[j] = ex_sd * (x[j] + 2.0 * gg[j])
                    else:
                        # scheme, noise case and reflection fixed at each call: SIMD loops
                        # without a runtime test inside
                        if scheme == 1:
                            if fix == 2:
                                _em(x, z, BLOCK, a0, a1, c0, c1, c2, h, sqh, t_lo, t_hi, ss_lo,
                                    ss_hi, viol, 2, True, True)
                            elif noise_case == 0:
                                _em(x, z, BLOCK, a0, a1, c0, c1, c2, h, sqh, t_lo, t_hi, ss_lo,
                                    ss_hi, viol, 0, True, False)
                            elif noise_case == 1:
                                _em(x, z, BLOCK, a0, a1, c0, c1, c2, h, sqh, t_lo, t_hi, ss_lo,
                                    ss_hi, viol, 1, True, False)
                            else:
                                _em(x, z, BLOCK, a0, a1, c0, c1, c2, h, sqh, t_lo, t_hi, ss_lo,
                                    ss_hi, viol, 2, True, False)
                        elif fix == 2:
                            _em(x, z, BLOCK, a0, a1, c0, c1, c2, h, sqh, t_lo, t_hi, ss_lo,
                                ss_hi, viol, 2, False, True)
                        elif noise_case == 0:
                            _em(x, z, BLOCK, a0, a1, c0, c1, c2, h, sqh, t_lo, t_hi, ss_lo,
                                ss_hi, viol, 0, False, False)
                        elif noise_case == 1:
                            _em(x, z, BLOCK, a0, a1, c0, c1, c2, h, sqh, t_lo, t_hi, ss_lo,
                                ss_hi, viol, 1, False, False)
                        else:
                            _em(x, z, BLOCK, a0, a1, c0, c1, c2, h, sqh, t_lo, t_hi, ss_lo,
                                ss_hi, viol, 2, False, False)
                    o = out_index[step]
                    if o >= 0:
                        if scheme == 2 and kind == 2:
                            for j in range(BLOCK):
                                xs[j] = x0 * math.exp(x[j])
                        else:
                            for j in range(BLOCK):
                                xs[j] = min(max(x[j], t_lo), t_hi)
                        _record(xs, lanes, path0, st, counts, nonfinite, samples, o, lo, inv_w,
                                n_fine)
            for j in range(lanes):
                gviol[grp] += viol[j]


# ------------------------------------------------------------------------------ the driver

@dataclass(frozen=True)
class EnsembleRun:
    """Statistics per output step (T outputs): ``alive`` (T,) finite states counted,
    ``non_finite`` (T,) states that overflowed; ``mean``/``mean_se``,
    ``variance``/``variance_se``, ``minimum``/``maximum`` (T,); ``quantiles``/``quantile_se``
    (T, Q) at ``levels``, read off the fine histogram (resolution ``fine_width``);
    ``counts`` (T, cells) on ``edges``, ``below``/``above`` (T,) beyond them;
    ``samples`` (T, keep) the first paths; ``violations`` steps that left the state space."""

    steps: np.ndarray
    times: np.ndarray
    n_paths: int
    alive: np.ndarray
    non_finite: np.ndarray
    mean: np.ndarray
    mean_se: np.ndarray
    variance: np.ndarray
    variance_se: np.ndarray
    minimum: np.ndarray
    maximum: np.ndarray
    levels: np.ndarray
    quantiles: np.ndarray
    quantile_se: np.ndarray
    fine_width: float
    edges: np.ndarray
    counts: np.ndarray
    below: np.ndarray
    above: np.ndarray
    samples: np.ndarray
    violations: int
    scheme: str
    bounds_fix: str
    seed: int
    dt: float


def supports(sde: AffineSDE, scheme: str) -> str | None:
    """None if :func:`run_ensemble` runs this SDE and scheme, else the reason it does not."""
    if sde.dim != 1:
        return "only scalar SDEs run without stored paths"
    if scheme == "exact":
        kind = exact_kinds(sde)[0]
        if kind == 0:
            return "no exact transition"
        if kind == 3 and 4.0 * float(sde.drift_constant[0]) / float(sde.noise[0, 1]) <= 1.0:
            return "CIR with ν = 4κθ/σ² ≤ 1 (Poisson mixture) runs on the path engine"
    return None


def _merge_np(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pébay's merge of statistics rows (..., 7), vectorised over leading axes."""
    na, nb = a[..., 0], b[..., 0]
    nn = na + nb
    with np.errstate(invalid="ignore", divide="ignore"):
        de = b[..., 1] - a[..., 1]
        dn = np.where(nn > 0, de / np.where(nn > 0, nn, 1.0), 0.0)
        out = np.empty_like(a)
        out[..., 0] = nn
        out[..., 1] = a[..., 1] + dn * nb
        out[..., 2] = a[..., 2] + b[..., 2] + de * dn * na * nb
        out[..., 3] = (a[..., 3] + b[..., 3] + de * dn * dn * na * nb * (na - nb)
                       + 3.0 * dn * (na * b[..., 2] - nb * a[..., 2]))
        out[..., 4] = (a[..., 4] + b[..., 4]
                       + de * dn * dn * dn * na * nb * (na * na - na * nb + nb * nb)
                       + 6.0 * dn * dn * (na * na * b[..., 2] + nb * nb * a[..., 2])
                       + 4.0 * dn * (na * b[..., 3] - nb * a[..., 3]))
        out[..., 5] = np.minimum(a[..., 5], b[..., 5])
        out[..., 6] = np.maximum(a[..., 6], b[..., 6])
    empty_a, empty_b = na == 0, nb == 0
    out[empty_a] = b[empty_a]
    out[empty_b & ~empty_a] = a[empty_b & ~empty_a]
    return out


def _quantiles(fine: np.ndarray, lo: float, width: float, n: np.ndarray, levels: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """Quantiles (T, Q) from fine counts (T, cells + 2) by linear interpolation of the empirical
    distribution within a cell, and their SE: half the distance between the quantiles at ranks
    n·p ± √(n·p(1 − p)), with the cell width's uniform rounding error w/√12 in quadrature. A
    quantile below or above the cells is NaN."""
    t_n = fine.shape[0]
    q = np.full((t_n, levels.size), np.nan)
    se = np.full((t_n, levels.size), np.nan)
    cum = np.cumsum(fine, axis=1)  # cum[i]: states below the top of slot i

    def at(k: int, rank: float) -> float:
        c = cum[k]
        i = int(np.searchsorted(c, rank, side="left"))
        if i == 0 or i >= c.size - 1:
            return math.nan
        before = c[i - 1]
        inside = c[i] - before
        frac = (rank - before) / inside if inside else 0.0
        return lo + (i - 1 + frac) * width

    for k in range(t_n):
        nk = float(n[k])
        if nk < 1:
            continue
        for j, p in enumerate(levels):
            half = math.sqrt(nk * p * (1 - p))
            q[k, j] = at(k, nk * p)
            a, b = at(k, max(nk * p - half, 0.0)), at(k, min(nk * p + half, nk))
            se[k, j] = math.hypot(0.5 * (b - a), width / math.sqrt(12.0))
    return q, se


def run_ensemble(sde: AffineSDE, x0: float, dt: float, n_steps: int,
                 output_steps: Sequence[int] | np.ndarray, *, n_paths: int, seed: int,
                 edges: tuple[float, float, int], scheme: str = "euler_maruyama",
                 bounds_fix: str = "truncate", refine: int | None = None,
                 levels: Sequence[float] = (0.05, 0.5, 0.95), keep: int = 0) -> EnsembleRun:
    """Run ``n_paths`` paths of a scalar SDE from ``x0`` and return their statistics at the
    output steps, without storing the paths (module docstring). ``edges``: (lower, upper,
    cells) of the reported histogram; ``refine`` fine cells per cell for the quantiles (default:
    as many as keep the fine grid ≤ 8192 cells); ``keep``: paths returned whole."""
    why = supports(sde, scheme)
    if why is not None:
        raise ValueError(f"run_ensemble: {why}")
    if scheme not in ("euler_maruyama", "milstein", "exact"):
        raise ValueError(f"scheme must be euler_maruyama, milstein or exact, got {scheme!r}")
    if bounds_fix not in ("truncate", "reflect", "none"):
        raise ValueError(f"bounds_fix must be truncate, reflect or none, got {bounds_fix!r}")
    if not (math.isfinite(dt) and dt > 0):
        raise ValueError(f"the time step must be positive and finite, got {dt}")
    if isinstance(seed, bool) or not 0 <= int(seed) < 2**64:
        raise ValueError(f"seed must be a non-negative 64-bit integer, got {seed!r}")
    if n_paths < 1 or n_steps < 0 or keep < 0:
        raise ValueError("n_paths must be ≥ 1, n_steps and keep ≥ 0")
    # the stream's reserved ranges (module docstring): a lane's fallback count stays < 2²⁶
    if n_steps >= 2**24 or n_paths >= 2**32:
        raise ValueError("run_ensemble takes fewer than 2²⁴ steps and 2³² paths")
    lo, hi, cells = float(edges[0]), float(edges[1]), int(edges[2])
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo and cells >= 1):
        raise ValueError("edges must be (lower, upper, cells) with lower < upper, cells ≥ 1")
    if not (float(sde.lower[0]) <= x0 <= float(sde.upper[0])) or not math.isfinite(x0):
        raise ValueError("the initial state must lie in the state space")
    steps = np.asarray(output_steps, dtype=np.int64)
    if steps.ndim != 1 or steps.size == 0 or steps[0] < 0 or np.any(np.diff(steps) <= 0) \
            or steps[-1] > n_steps:
        raise ValueError("output_steps must increase strictly within 0 … n_steps")
    refine = refine or max(1, 8192 // cells)
    n_fine = cells * refine
    out_index = np.full(n_steps + 1, -1, np.int64)
    out_index[steps] = np.arange(steps.size)
    kind = exact_kinds(sde)[0] if scheme == "exact" else 0
    mult = shift = sd = 0.0
    if scheme == "exact":
        from medtransport.numerics.sde import _exact_coefficients

        m_, s_, d_ = _exact_coefficients(sde, dt, [kind])
        mult, shift, sd = float(m_[0]), float(s_[0]), float(d_[0])
    a0, a1 = float(sde.drift_constant[0]), float(sde.drift_matrix[0, 0])
    c0, c1, c2 = (float(v) for v in sde.noise[0])
    noise_case = 0 if (c1 == 0.0 and c2 == 0.0) else (1 if (c0 == 0.0 and c1 == 0.0) else 2)
    fix = 0 if scheme == "exact" else {"none": 0, "truncate": 1, "reflect": 2}[bounds_fix]
    n_blocks = (n_paths + BLOCK - 1) // BLOCK
    groups = min(GROUPS, n_blocks)
    t_n = steps.size
    gstats = np.zeros((groups, t_n, 7))
    gcounts = np.zeros((groups, t_n, n_fine + 2), np.int64)
    gnonfinite = np.zeros((groups, t_n), np.int64)
    gviol = np.zeros(groups, np.int64)
    samples = np.full((t_n, min(keep, n_paths)), np.nan)
    _ensemble(int(n_paths), float(x0), int(n_steps), float(dt), out_index, a0, a1, c0, c1, c2,
              {"euler_maruyama": 0, "milstein": 1, "exact": 2}[scheme], int(kind), noise_case,
              mult, shift, sd, float(sde.lower[0]), float(sde.upper[0]), fix, stream_key(seed),
              lo, n_fine / (hi - lo), n_fine, gstats, gcounts, gnonfinite, gviol, samples)
    st = gstats[0]
    for g in range(1, groups):  # fixed order: the same bits for any number of threads
        st = _merge_np(st, gstats[g])
    fine = gcounts.sum(axis=0)
    n = st[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        var = np.where(n > 1, st[:, 2] / np.maximum(n - 1, 1), np.nan)
        m4 = st[:, 4] / np.maximum(n, 1)
        mean_se = np.where(n > 1, np.sqrt(var / np.maximum(n, 1)), np.nan)
        var_se = np.where(n > 1, np.sqrt(np.maximum(m4 - var * var * (n - 3) / np.maximum(
            n - 1, 1), 0.0) / np.maximum(n, 1)), np.nan)
    mean = np.where(n > 0, st[:, 1], np.nan)
    lv = np.asarray(levels, float)
    width = (hi - lo) / n_fine
    q, q_se = _quantiles(fine, lo, width, n, lv)
    inner = fine[:, 1:-1].reshape(t_n, cells, refine).sum(axis=2)
    return EnsembleRun(steps, steps * dt, int(n_paths), n.astype(np.int64),
                       gnonfinite.sum(axis=0), mean, mean_se, var, var_se,
                       np.where(n > 0, st[:, 5], np.nan), np.where(n > 0, st[:, 6], np.nan),
                       lv, q, q_se, width, np.linspace(lo, hi, cells + 1), inner, fine[:, 0],
                       fine[:, -1], samples, int(gviol.sum()), scheme,
                       "exact" if scheme == "exact" else bounds_fix, int(seed), float(dt))
