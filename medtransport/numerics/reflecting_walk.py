"""Off-lattice walkers in pores with exact reflection, per-walker random streams, and weighted
time integrals of their paths.

Each walker takes Gaussian steps ΔX ~ N(0, 2D·Δt) per axis (Var(x_t) = 2Dt in free space;
REFERENCES §0) in one of these geometries (the pore's own frame):

- ``free`` — unbounded;
- ``planes`` — between two parallel reflecting planes at x = ±a (folding the end point at the
  walls is the exact mirror image of the path, the reflection principle);
- ``cylinder`` — inside x² + y² ≤ R² (axis z), free along z;
- ``sphere`` — inside |x| ≤ R;
- ``cylinder_lattice`` / ``sphere_lattice`` — a periodic square (cubic) lattice of such pores in
  cells of side ``cell``; walkers start uniformly in the cell, inside (compartment 0) or outside
  (compartment 1) a pore, diffuse with D_in or D_out, and cross the membrane with probability
  p = min(1, κ·√(πΔt/D)) per hit, otherwise reflect (κ the permeability; κ = 0 is an
  impermeable membrane). Why this p: with Gaussian steps of s.d. σ = √(2DΔt) the straight
  segments of walkers at density ρ hit a flat wall ρσ/√(2π) times per unit area per step; the
  membrane's flux κρ per unit time (Tanner, J Chem Phys 69:1748, 1978) then needs
  p·ρσ/√(2π) = κρΔt. (The often quoted 2κ·√(2DΔt)/D is 1.6 times larger for these steps.)

A step that crosses a curved wall is mirrored specularly at the point where the segment meets
it (the remaining segment is reflected in the tangent plane there) until its end lies on the
walker's side; a step that crosses a permeable wall continues on the other side, its remaining
length scaled by √(D_other/D_this) so that the other side's diffusivity applies (validated for
equal diffusivities; with unequal ones this simple transit rule is only approximately
consistent — Alemany et al., Sci Rep 12:10759, 2022). A walker whose
step cannot be resolved in ``MAX_REFLECTIONS`` mirror images is reported as an error — never
dropped.

While walking, each walker accumulates for each of W weight sequences c_w (one per output
"shape") the integrals

    I_w = Σ_k c_w[k] · x(t_k)          (x unwrapped, k = 0 … n_steps)

which, with c_w[k] the trapezoidal weights of a function f_w(t), approximate ∫ f_w(t) x(t) dt.
(An MRI phase is γ·g·I_w; the numerics do not need to know that.)

Reproducibility: walker i draws from its own xoshiro256** stream (Blackman & Vigna, ACM TOMS
47:36, 2021) seeded by SplitMix64 from (seed, i). Walkers are independent, so the results are
bit-identical whatever the number of threads that share them out.

Normals come from the ziggurat method (Marsaglia & Tsang, J Stat Softw 5(8), 2000) in Doornik's
form (2005: the layer index and the uniform from disjoint bits of one 64-bit word), with
Marsaglia's (1964) tail; one 64-bit draw per normal on the fast path.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numba
import numpy as np

from medtransport.errors import ModelError
from medtransport.numerics import threads

__all__ = ["GEOMETRIES", "MAX_REFLECTIONS", "PoreWalk", "WalkResult", "transmission_probability",
           "walk_in_pore"]

Geometry = Literal["free", "planes", "cylinder", "sphere", "cylinder_lattice", "sphere_lattice"]
GEOMETRIES: tuple[str, ...] = ("free", "planes", "cylinder", "sphere", "cylinder_lattice",
                               "sphere_lattice")
_KIND = {name: i for i, name in enumerate(GEOMETRIES)}
#: Mirror images tried for one step before the walker is reported as unresolvable.
MAX_REFLECTIONS = 1000


def transmission_probability(permeability: float, diffusivity: float, dt: float) -> float:
    """p = min(1, κ·√(πΔt/D)), the chance that a walker hitting the membrane crosses it
    (module docstring)."""
    if permeability <= 0:
        return 0.0
    return min(1.0, permeability * math.sqrt(math.pi * dt / diffusivity))


@dataclass(frozen=True)
class PoreWalk:
    """What to simulate: all lengths in metres, diffusivities in m²/s, ``dt`` in s."""

    geometry: Geometry
    diffusivity: float
    dt: float
    n_steps: int
    size: float = 0.0  # half-width a (planes) or radius R (cylinder, sphere, lattices)
    cell: float = 0.0  # lattice cell side
    diffusivity_out: float = 0.0  # lattices: outside the pores
    permeability: float = 0.0  # lattices: membrane permeability κ, m/s
    #: free walks only: per-axis factors on √(2DΔt) (an anisotropic Gaussian, D_a = s_a²·D)
    axis_scale: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def check(self) -> None:
        if self.geometry not in _KIND:
            raise ValueError(f"geometry must be one of {GEOMETRIES}, got {self.geometry!r}")
        if not (self.diffusivity > 0 and self.dt > 0 and self.n_steps >= 1):
            raise ValueError("diffusivity and dt must be > 0 and n_steps ≥ 1")
        if self.geometry != "free" and not self.size > 0:
            raise ValueError(f"a {self.geometry} needs a size (half-width or radius) > 0")
        if self.geometry.endswith("lattice"):
            if not self.cell > 2 * self.size:
                raise ValueError("the lattice cell must be wider than a pore's diameter")
            if not self.diffusivity_out > 0:
                raise ValueError("a lattice needs the diffusivity outside the pores > 0")
            if self.permeability < 0:
                raise ValueError("permeability cannot be negative")


@dataclass
class WalkResult:
    """``integrals`` (n_walkers, W, 3); ``start`` and ``end`` positions (n_walkers, 3),
    unwrapped; ``compartment`` (n_outputs, n_walkers) int8: 0 inside a pore (or everywhere for
    a single pore), 1 outside; ``crossings`` per walker."""

    integrals: np.ndarray
    start: np.ndarray
    end: np.ndarray
    compartment: np.ndarray
    crossings: np.ndarray

    @property
    def n_walkers(self) -> int:
        return int(self.start.shape[0])


# ------------------------------------------------------------------------------ the kernel
# numba compiles these on first use (cached on disk afterwards); walkers are independent, so
# the parallel loop over them gives the same bits whatever the thread count.

_M64 = (1 << 64) - 1


@numba.njit(nogil=True, cache=True, error_model="numpy")
def _splitmix(x):
    x = (x + np.uint64(0x9E3779B97F4A7C15))
    z = x
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x, z ^ (z >> np.uint64(31))


_INLINE = {"nogil": True, "cache": True, "error_model": "numpy", "inline": "always"}


@numba.njit(**_INLINE)
def _rotl(x, k):
    return (x << np.uint64(k)) | (x >> np.uint64(64 - k))


# The generator's state is four scalars threaded through the calls (no arrays: scalars stay in
# registers, and the compiled loop does no reference counting).

@numba.njit(**_INLINE)
def _next(s0, s1, s2, s3):
    """xoshiro256**: (new state, one 64-bit output)."""
    result = _rotl(s1 * np.uint64(5), 7) * np.uint64(9)
    t = s1 << np.uint64(17)
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = _rotl(s3, 45)
    return s0, s1, s2, s3, result


@numba.njit(**_INLINE)
def _uniform(s0, s1, s2, s3):
    """(new state, a uniform double in [0, 1))."""
    s0, s1, s2, s3, w = _next(s0, s1, s2, s3)
    return s0, s1, s2, s3, np.float64(w >> np.uint64(11)) * 1.1102230246251565e-16


@numba.njit(nogil=True, cache=True, error_model="numpy")
def _seed(seed, walker):
    """Walker ``walker``'s initial state, SplitMix64-hashed from (seed, walker)."""
    x, a = _splitmix(np.uint64(seed))
    x = x ^ np.uint64(walker) * np.uint64(0xD1B54A32D192ED03)
    x, s0 = _splitmix(x)
    x, s1 = _splitmix(x)
    x, s2 = _splitmix(x)
    x, s3 = _splitmix(x)
    return s0, s1, s2, s3 ^ a


def _ziggurat_tables() -> tuple[np.ndarray, np.ndarray]:
    """Doornik's (2005) 128-layer ziggurat for N(0, 1): layer edges X and ratios X[i+1]/X[i]."""
    c, r, v = 128, 3.442619855899, 9.91256303526217e-3
    x = np.zeros(c + 1)
    f = math.exp(-0.5 * r * r)
    x[0] = v / f
    x[1] = r
    for i in range(2, c):
        x[i] = math.sqrt(-2.0 * math.log(v / x[i - 1] + f))
        f = math.exp(-0.5 * x[i] * x[i])
    return x, x[1:] / x[:-1]


_ZIG_X, _ZIG_R = _ziggurat_tables()


@numba.njit(nogil=True, cache=True, error_model="numpy")
def _normal_slow(s0, s1, s2, s3, zx, u, i):
    """The ziggurat's rare path: the tail beyond R (Marsaglia 1964) or a layer's wedge;
    NaN asks the caller to draw again."""
    if i == 0:
        r = zx[1]
        while True:
            s0, s1, s2, s3, a = _uniform(s0, s1, s2, s3)
            s0, s1, s2, s3, b = _uniform(s0, s1, s2, s3)
            xt = np.log(a + 1e-300) / r
            yt = np.log(b + 1e-300)
            if -2.0 * yt >= xt * xt:
                break
        return s0, s1, s2, s3, (xt - r if u < 0.0 else r - xt)
    xx = u * zx[i]
    f0 = np.exp(-0.5 * (zx[i] * zx[i] - xx * xx))
    f1 = np.exp(-0.5 * (zx[i + 1] * zx[i + 1] - xx * xx))
    s0, s1, s2, s3, a = _uniform(s0, s1, s2, s3)
    if f1 + a * (f0 - f1) < 1.0:
        return s0, s1, s2, s3, xx
    return s0, s1, s2, s3, np.nan


@numba.njit(**_INLINE)
def _normal(s0, s1, s2, s3, zx, zr):
    """(new state, one N(0, 1) draw): one 64-bit word on the fast path (97 % of draws)."""
    out = np.nan
    while out != out:
        s0, s1, s2, s3, w = _next(s0, s1, s2, s3)
        u = 2.0 * (np.float64(w >> np.uint64(11)) * 1.1102230246251565e-16) - 1.0
        i = np.int64(w & np.uint64(127))
        if abs(u) < zr[i]:
            out = u * zx[i]
        else:
            s0, s1, s2, s3, out = _normal_slow(s0, s1, s2, s3, zx, u, i)
    return s0, s1, s2, s3, out


@numba.njit(nogil=True, cache=True, error_model="numpy")
def _hit(px, py, pz, dx, dy, dz, radius, ndim, inside):
    """First t in (0, 1] where p + t·d meets the wall, or -1."""
    if ndim == 2:
        a = dx * dx + dy * dy
        b = px * dx + py * dy
        c = px * px + py * py - radius * radius
    else:
        a = dx * dx + dy * dy + dz * dz
        b = px * dx + py * dy + pz * dz
        c = px * px + py * py + pz * pz - radius * radius
    if a <= 0.0:
        return -1.0
    disc = b * b - a * c
    if disc < 0.0:
        return -1.0
    sq = np.sqrt(disc)
    eps = 1e-12
    if inside:
        t = (-b + sq) / a
        if t > eps and t <= 1.0:
            return t
        return -1.0
    t = (-b - sq) / a
    if t > eps and t <= 1.0:
        return t
    return -1.0


@numba.njit(parallel=True, nogil=True, cache=True, error_model="numpy")
def _walk(kind, n_walkers, n_steps, sig_in, sig_out, size, cell, p_in, p_out, ratio_in,
          ratio_out, seed, weights, out_steps, max_refl, scale, zx, zr,
          integrals, start, end, comp_out, crossings, errors):
    n_w = weights.shape[0]
    n_out = out_steps.shape[0]
    for i in numba.prange(n_walkers):
        s0, s1, s2, s3 = _seed(seed, i)
        x0 = 0.0
        x1 = 0.0
        x2 = 0.0
        ndim = 2 if (kind == 2 or kind == 4) else 3
        lattice = kind >= 4
        # placement: uniform in the pore, or in the lattice cell
        if kind == 1:
            s0, s1, s2, s3, v = _uniform(s0, s1, s2, s3)
            x0 = size * (2.0 * v - 1.0)
        elif kind == 2 or kind == 3:
            while True:
                s0, s1, s2, s3, v = _uniform(s0, s1, s2, s3)
                x0 = size * (2.0 * v - 1.0)
                s0, s1, s2, s3, v = _uniform(s0, s1, s2, s3)
                x1 = size * (2.0 * v - 1.0)
                if ndim == 3:
                    s0, s1, s2, s3, v = _uniform(s0, s1, s2, s3)
                    x2 = size * (2.0 * v - 1.0)
                if x0 * x0 + x1 * x1 + x2 * x2 <= size * size:
                    break
        elif lattice:
            s0, s1, s2, s3, v = _uniform(s0, s1, s2, s3)
            x0 = cell * (v - 0.5)
            s0, s1, s2, s3, v = _uniform(s0, s1, s2, s3)
            x1 = cell * (v - 0.5)
            if ndim == 3:
                s0, s1, s2, s3, v = _uniform(s0, s1, s2, s3)
                x2 = cell * (v - 0.5)
        comp = 0
        if lattice:
            r2 = x0 * x0 + x1 * x1
            if ndim == 3:
                r2 += x2 * x2
            if r2 > size * size:
                comp = 1
        start[i, 0] = x0
        start[i, 1] = x1
        start[i, 2] = x2
        for w in range(n_w):
            c = weights[w, 0]
            integrals[i, w, 0] += c * x0
            integrals[i, w, 1] += c * x1
            integrals[i, w, 2] += c * x2
        o = 0
        while o < n_out and out_steps[o] == 0:
            comp_out[o, i] = comp
            o += 1
        n_cross = 0
        acc0 = 0.0
        acc1 = 0.0
        acc2 = 0.0
        for k in range(n_steps):
            s0, s1, s2, s3, d0 = _normal(s0, s1, s2, s3, zx, zr)
            s0, s1, s2, s3, d1 = _normal(s0, s1, s2, s3, zx, zr)
            s0, s1, s2, s3, d2 = _normal(s0, s1, s2, s3, zx, zr)
            sig = sig_in if comp == 0 else sig_out
            d0 *= sig
            d1 *= sig
            d2 *= sig
            if kind == 0:
                x0 += d0 * scale[0]
                x1 += d1 * scale[1]
                x2 += d2 * scale[2]
            elif kind == 1:
                y = x0 + d0
                n_fold = 0
                while y > size or y < -size:
                    if y > size:
                        y = 2.0 * size - y
                    else:
                        y = -2.0 * size - y
                    n_fold += 1
                    if n_fold > max_refl:
                        errors[i] = 1
                        break
                x0 = y
                x1 += d1
                x2 += d2
            else:
                if comp == 0 and not lattice:
                    # a convex pore: an end point inside means the whole segment is inside
                    ex = x0 + d0
                    ey = x1 + d1
                    r2 = ex * ex + ey * ey
                    if ndim == 3:
                        ez = x2 + d2
                        r2 += ez * ez
                    if r2 < size * size:
                        x0 = ex
                        x1 = ey
                        x2 += d2
                        d0 = 0.0
                        d1 = 0.0
                        d2 = 0.0
                n_refl = 0
                while d0 != 0.0 or d1 != 0.0 or d2 != 0.0:
                    # the pore nearest the start of the (remaining) segment
                    cx = 0.0
                    cy = 0.0
                    cz = 0.0
                    if lattice:
                        cx = cell * np.floor(x0 / cell + 0.5)
                        cy = cell * np.floor(x1 / cell + 0.5)
                        if ndim == 3:
                            cz = cell * np.floor(x2 / cell + 0.5)
                    px = x0 - cx
                    py = x1 - cy
                    pz = x2 - cz
                    t = _hit(px, py, pz, d0, d1, d2, size, ndim, comp == 0)
                    if t < 0.0 and lattice and comp == 1:
                        # the step may reach the pore of a neighbouring cell
                        ex = x0 + d0
                        ey = x1 + d1
                        ez = x2 + d2
                        nx = cell * np.floor(ex / cell + 0.5)
                        ny = cell * np.floor(ey / cell + 0.5)
                        nz = cz
                        if ndim == 3:
                            nz = cell * np.floor(ez / cell + 0.5)
                        if nx != cx or ny != cy or nz != cz:
                            cx = nx
                            cy = ny
                            cz = nz
                            px = x0 - cx
                            py = x1 - cy
                            pz = x2 - cz
                            t = _hit(px, py, pz, d0, d1, d2, size, ndim, False)
                    if t < 0.0:
                        x0 += d0
                        x1 += d1
                        x2 += d2
                        break
                    n_refl += 1
                    if n_refl > max_refl:
                        errors[i] = 1
                        break
                    # the point on the wall, its outward normal, the rest of the segment
                    hx = px + t * d0
                    hy = py + t * d1
                    hz = pz + t * d2
                    if ndim == 2:
                        hz = 0.0
                        nrm = np.sqrt(hx * hx + hy * hy)
                    else:
                        nrm = np.sqrt(hx * hx + hy * hy + hz * hz)
                    nx_ = hx / nrm
                    ny_ = hy / nrm
                    nz_ = hz / nrm
                    x0 += t * d0
                    x1 += t * d1
                    x2 += t * d2
                    r0 = (1.0 - t) * d0
                    r1 = (1.0 - t) * d1
                    r2_ = (1.0 - t) * d2
                    crossed = False
                    if lattice:
                        p = p_in if comp == 0 else p_out
                        if p > 0.0:
                            s0, s1, s2, s3, v = _uniform(s0, s1, s2, s3)
                            crossed = v < p
                    if crossed:
                        f = ratio_in if comp == 0 else ratio_out
                        d0 = r0 * f
                        d1 = r1 * f
                        d2 = r2_ * f
                        comp = 1 - comp
                        n_cross += 1
                    else:
                        dot = r0 * nx_ + r1 * ny_ + r2_ * nz_
                        d0 = r0 - 2.0 * dot * nx_
                        d1 = r1 - 2.0 * dot * ny_
                        d2 = r2_ - 2.0 * dot * nz_
            if n_w == 1:
                # one shape (the common case): the integral stays in registers
                c = weights[0, k + 1]
                acc0 += c * x0
                acc1 += c * x1
                acc2 += c * x2
            else:
                for w in range(n_w):
                    c = weights[w, k + 1]
                    if c != 0.0:
                        integrals[i, w, 0] += c * x0
                        integrals[i, w, 1] += c * x1
                        integrals[i, w, 2] += c * x2
            while o < n_out and out_steps[o] == k + 1:
                comp_out[o, i] = comp
                o += 1
        if n_w == 1:
            integrals[i, 0, 0] += acc0
            integrals[i, 0, 1] += acc1
            integrals[i, 0, 2] += acc2
        end[i, 0] = x0
        end[i, 1] = x1
        end[i, 2] = x2
        crossings[i] = n_cross


def walk_in_pore(spec: PoreWalk, n_walkers: int, seed: int, weights: np.ndarray, *,
                 output_steps: Sequence[int] | np.ndarray = (0,)) -> WalkResult:
    """Walk ``n_walkers`` walkers for ``spec.n_steps`` steps and return their weighted path
    integrals (``weights`` has shape (W, n_steps + 1)).

    Raises :class:`ModelError` naming the walkers whose steps could not be resolved.
    """
    spec.check()
    if isinstance(seed, bool) or not 0 <= int(seed) < 2**64:
        raise ValueError(f"seed must be a non-negative 64-bit integer, got {seed!r}")
    if n_walkers < 1:
        raise ValueError("at least one walker is needed")
    weights = np.ascontiguousarray(weights, dtype=np.float64)
    if weights.ndim != 2 or weights.shape[1] != spec.n_steps + 1:
        raise ValueError(f"weights must have shape (W, n_steps + 1 = {spec.n_steps + 1}), "
                         f"got {weights.shape}")
    steps = np.asarray(output_steps, dtype=np.int64)
    if steps.ndim != 1 or np.any(np.diff(steps) <= 0) or steps[0] < 0 or \
            steps[-1] > spec.n_steps:
        raise ValueError("output_steps must increase strictly within 0 … n_steps")
    lattice = spec.geometry.endswith("lattice")
    d_in, d_out = spec.diffusivity, (spec.diffusivity_out if lattice else spec.diffusivity)
    sig_in, sig_out = math.sqrt(2 * d_in * spec.dt), math.sqrt(2 * d_out * spec.dt)
    p_in = transmission_probability(spec.permeability, d_in, spec.dt) if lattice else 0.0
    p_out = transmission_probability(spec.permeability, d_out, spec.dt) if lattice else 0.0
    integrals = np.zeros((n_walkers, weights.shape[0], 3))
    start = np.empty((n_walkers, 3))
    end = np.empty((n_walkers, 3))
    comp = np.zeros((len(steps), n_walkers), dtype=np.int8)
    crossings = np.zeros(n_walkers, dtype=np.int64)
    errors = np.zeros(n_walkers, dtype=np.int8)
    scale = np.asarray(spec.axis_scale, dtype=np.float64)
    if spec.geometry != "free" and np.any(scale != 1.0):
        raise ValueError("axis_scale applies to free walks only")
    # walkers have their own streams: the bits do not depend on the thread count
    with threads.limited(threads.choose(n_walkers * spec.n_steps, 100_000), blas=False):
        _walk(_KIND[spec.geometry], n_walkers, spec.n_steps, sig_in, sig_out,
              float(spec.size), float(spec.cell), p_in, p_out, math.sqrt(d_out / d_in),
              math.sqrt(d_in / d_out), np.uint64(int(seed) & _M64), weights, steps,
              MAX_REFLECTIONS, scale, _ZIG_X, _ZIG_R, integrals, start, end, comp, crossings,
              errors)
    if errors.any():
        bad = np.flatnonzero(errors)
        raise ModelError(f"{bad.size} walker(s) (first: {bad[:5].tolist()}) took a step that "
                         f"{MAX_REFLECTIONS} mirror images could not bring back inside their "
                         "pore; use a smaller time step — no walker is dropped")
    return WalkResult(integrals, start, end, comp, crossings)
