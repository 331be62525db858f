"""Itô SDEs with affine drift and square-root-quadratic noise, vectorised over paths.

The family (d = 1–3 components, one independent Wiener process per component — diagonal noise):

    dX_i = (a_i + Σ_j A_ij X_j) dt + √(c0_i + c1_i X_i + c2_i X_i²) dW_i

covers the processes with medical meaning the ``sde`` plugin names (REFERENCES §8):

=========================  =========================  ==============================
process                    drift a + A x              b² = c0 + c1 x + c2 x²
=========================  =========================  ==============================
Brownian motion with drift μ                          σ²
Ornstein–Uhlenbeck         θ(m − x)                   σ²
geometric Brownian motion  λx                         μ²x²
Cox–Ingersoll–Ross         κ(θ − x)                   σ²x
Jacobi (bounded mixing)    −ω(x − μ)                  2ωκx(1 − x) = 2ωκx − 2ωκx²
=========================  =========================  ==============================

Schemes (Kloeden & Platen 1992; Higham 2001), step h, ΔW_i = √h·Z_i:

- ``euler_maruyama``: X ← X + a(X)h + b(X)ΔW (strong order ½, weak order 1);
- ``milstein``: adds ½b b′(ΔW² − h) = ¼(c1 + 2c2 X)(ΔW² − h) per component (strong order 1;
  exact Milstein for diagonal noise, where b_i depends on X_i only, hence commutative);
- ``exact``: the transition law, where it exists (A diagonal): Gaussian for OU and drifted
  Brownian motion, log-normal for GBM, and for CIR the scaled non-central χ²
  X_{t+h} = k·χ'²(ν, X_t e^{−κh}/k), k = σ²(1 − e^{−κh})/(4κ), ν = 4κθ/σ² (Cox, Ingersoll &
  Ross 1985), drawn as (Z + √λ)² + χ²(ν − 1) for ν > 1 and as a Poisson(λ/2) mixture of χ²
  otherwise (Gamma by Marsaglia & Tsang 2000, Poisson by Hörmann's PTRS 1993).

**State space** ``[lower, upper]`` per component (CIR: [0, ∞); Jacobi: [0, 1]). A scheme that
can leave it is told what to do with a step that would: ``truncate`` — full truncation (Lord,
Koekkoek & van Dijk 2010): the coefficients are evaluated at the state clipped into the state
space, the recorded state is the clipped one; ``reflect`` — mirror the step back inside;
``none`` — let it leave (only for audits that must see the violation). Every step that ends
outside the state space is counted, per path, whichever fix is applied: the violations the
raw scheme would have had.

**Walls** for paths, per component and side: ``reflecting`` (mirror image, folded into the
interval when both sides reflect — the interval [0, 1] for bounded variables) or ``absorbing``:
a path ending a step beyond the wall is absorbed there, and with the Brownian-bridge correction
(as :mod:`~medtransport.numerics.random_walk` does) also one that crossed within the step and
came back, with probability exp(−2·d₀d₁/(b²h)) for start and end distances d₀, d₁ and the local
noise b² at the start of the step (exact for Brownian motion at a plane).

Reproducibility: path p draws from its own xoshiro256** stream seeded from (seed, p), with the
ziggurat normals of :mod:`~medtransport.numerics.reflecting_walk` (whose generator this module
reuses). Paths are independent, so the result is bit-identical whatever the number of threads.
The hot loop is compiled by numba (on first use, cached on disk).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numba
import numpy as np

from medtransport.errors import ScenarioError
from medtransport.numerics.reflecting_walk import (
    _M64,
    _ZIG_R,
    _ZIG_X,
    _normal,
    _seed,
    _uniform,
)

__all__ = ["SCHEMES", "AffineSDE", "SDEResult", "exact_kinds", "simulate"]

Scheme = Literal["euler_maruyama", "milstein", "exact"]
SCHEMES: tuple[str, ...] = ("euler_maruyama", "milstein", "exact")
BoundsFix = Literal["truncate", "reflect", "none"]
WallKind = Literal["none", "reflecting", "absorbing"]

_SCHEME_CODE = {"euler_maruyama": 0, "milstein": 1, "exact": 2}
_FIX_CODE = {"none": 0, "truncate": 1, "reflect": 2}
_WALL_CODE = {"none": 0, "reflecting": 1, "absorbing": 2}
#: exact-transition kinds per component: 0 none, 1 Gaussian (OU, drifted BM), 2 GBM, 3 CIR
EXACT_NAMES = {0: "none", 1: "gaussian", 2: "log-normal", 3: "non-central chi-square"}
#: exp(−x) underflows for x > 745: no bridge crossing is possible then.
_EXP_UNDERFLOW = 745.0


@dataclass(frozen=True)
class AffineSDE:
    """dX_i = (a_i + Σ_j A_ij X_j) dt + √(c0_i + c1_i X_i + c2_i X_i²) dW_i (module docstring).

    Plain float64 magnitudes in consistent units (state unit, seconds). ``lower``/``upper`` give
    the state space per component (±inf for none).
    """

    drift_constant: np.ndarray
    drift_matrix: np.ndarray
    noise: np.ndarray  # (d, 3): c0, c1, c2
    lower: np.ndarray = field(default_factory=lambda: np.array([-np.inf]))
    upper: np.ndarray = field(default_factory=lambda: np.array([np.inf]))

    @classmethod
    def scalar(cls, a0: float, a1: float, c0: float = 0.0, c1: float = 0.0, c2: float = 0.0,
               lower: float = -math.inf, upper: float = math.inf) -> AffineSDE:
        """The one-component member dX = (a0 + a1 X)dt + √(c0 + c1 X + c2 X²) dW."""
        return cls(np.array([a0], float), np.array([[a1]], float),
                   np.array([[c0, c1, c2]], float), np.array([lower], float),
                   np.array([upper], float))

    def __post_init__(self) -> None:
        d = np.asarray(self.drift_constant).shape[0]
        if not 1 <= d <= 3:
            raise ValueError(f"an SDE has 1–3 components, got {d}")
        shapes = {"drift_matrix": (d, d), "noise": (d, 3), "lower": (d,), "upper": (d,)}
        for name, shape in shapes.items():
            if np.asarray(getattr(self, name)).shape != shape:
                raise ValueError(f"{name} must have shape {shape}")
        for name in ("drift_constant", "drift_matrix", "noise"):
            if not np.all(np.isfinite(getattr(self, name))):
                raise ValueError(f"{name} must be finite")
        if np.any(np.asarray(self.lower) >= np.asarray(self.upper)):
            raise ValueError("each component's lower bound must be below its upper bound")

    @property
    def dim(self) -> int:
        return int(np.asarray(self.drift_constant).shape[0])

    @property
    def diagonal(self) -> bool:
        a = np.asarray(self.drift_matrix)
        return bool(np.all(a == np.diag(np.diag(a))))

    @property
    def bounded(self) -> bool:
        return bool(np.any(np.isfinite(self.lower)) or np.any(np.isfinite(self.upper)))

    def drift(self, x: np.ndarray) -> np.ndarray:
        """a + A x for states x of shape (..., d)."""
        return np.asarray(self.drift_constant) + x @ np.asarray(self.drift_matrix).T

    def noise_variance(self, x: np.ndarray) -> np.ndarray:
        """b² = c0 + c1 x + c2 x² per component, for states of shape (..., d)."""
        c = np.asarray(self.noise)
        return c[:, 0] + c[:, 1] * x + c[:, 2] * x * x


def exact_kinds(sde: AffineSDE) -> list[int]:
    """The exact transition available for each component (codes of ``EXACT_NAMES``; 0 none)."""
    if not sde.diagonal:
        return [0] * sde.dim
    kinds = []
    for i in range(sde.dim):
        a0, a1 = float(sde.drift_constant[i]), float(sde.drift_matrix[i, i])
        c0, c1, c2 = (float(v) for v in sde.noise[i])
        if c1 == 0.0 and c2 == 0.0 and c0 >= 0.0:
            kinds.append(1)
        elif c0 == 0.0 and c1 == 0.0 and a0 == 0.0 and c2 >= 0.0:
            kinds.append(2)
        elif c0 == 0.0 and c2 == 0.0 and c1 > 0.0 and a1 < 0.0 and a0 >= 0.0:
            kinds.append(3)
        else:
            kinds.append(0)
    return kinds


@dataclass(frozen=True)
class SDEResult:
    """Paths at the output steps.

    ``values`` (n_out, n_paths, d): the state of every path at each output (NaN once absorbed;
``stopped`` has the state held where it was absorbed — at or beyond the wall — instead);
    ``absorbed_face`` (n_paths,): −1 alive, else the wall code 2·component + (0 lower, 1 upper);
    ``absorbed_step`` (n_paths,) the step at whose end it was absorbed (n_steps + 1 if never);
    ``violations`` (n_paths,) steps that left the state space (before the fix);
    ``decrease`` (n_out, n_paths, d) the cumulative Σ(X_before − X_after) over steps, if kept.
    """

    steps: np.ndarray
    times: np.ndarray
    values: np.ndarray
    absorbed_face: np.ndarray
    absorbed_step: np.ndarray
    violations: np.ndarray
    decrease: np.ndarray | None
    stopped: np.ndarray
    scheme: str
    bounds_fix: str
    seed: int
    dt: float

    @property
    def n_paths(self) -> int:
        return int(self.values.shape[1])

    def alive(self) -> np.ndarray:
        """Paths alive at each output (n_out,)."""
        return np.array([int(np.sum(self.absorbed_step > s)) for s in self.steps])

    def absorbed(self, face: int) -> np.ndarray:
        """Paths absorbed at wall ``face`` by each output (n_out,), cumulative."""
        at = self.absorbed_face == face
        return np.array([int(np.sum(at & (self.absorbed_step <= s))) for s in self.steps])


# ------------------------------------------------------------------------ compiled samplers

_JIT = {"nogil": True, "cache": True, "error_model": "numpy"}


@numba.njit(**_JIT)
def _gamma(s0, s1, s2, s3, shape, zx, zr):  # pragma: no cover - compiled
    """Gamma(shape, 1) by Marsaglia & Tsang (2000); shape < 1 by the boost X·U^{1/shape}."""
    boost = 1.0
    if shape < 1.0:
        s0, s1, s2, s3, u = _uniform(s0, s1, s2, s3)
        boost = (u + 1e-300) ** (1.0 / shape)
        shape += 1.0
    d = shape - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    while True:
        s0, s1, s2, s3, z = _normal(s0, s1, s2, s3, zx, zr)
        v = 1.0 + c * z
        if v <= 0.0:
            continue
        v = v * v * v
        s0, s1, s2, s3, u = _uniform(s0, s1, s2, s3)
        if math.log(u + 1e-300) < 0.5 * z * z + d - d * v + d * math.log(v):
            return s0, s1, s2, s3, d * v * boost


@numba.njit(**_JIT)
def _poisson(s0, s1, s2, s3, lam):  # pragma: no cover - compiled
    """Poisson(lam): multiplication of uniforms below 10, Hörmann's PTRS (1993) above."""
    if lam <= 0.0:
        return s0, s1, s2, s3, 0.0
    if lam < 10.0:
        limit = math.exp(-lam)
        k = 0.0
        s0, s1, s2, s3, prod = _uniform(s0, s1, s2, s3)
        while prod > limit:
            s0, s1, s2, s3, u = _uniform(s0, s1, s2, s3)
            prod *= u
            k += 1.0
        return s0, s1, s2, s3, k
    slam = math.sqrt(lam)
    loglam = math.log(lam)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    inv_alpha = 1.1239 + 1.1328 / (b - 3.4)
    vr = 0.9277 - 3.6224 / (b - 2.0)
    while True:
        s0, s1, s2, s3, u = _uniform(s0, s1, s2, s3)
        s0, s1, s2, s3, v = _uniform(s0, s1, s2, s3)
        u -= 0.5
        us = 0.5 - abs(u)
        k = math.floor((2.0 * a / us + b) * u + lam + 0.43)
        if us >= 0.07 and v <= vr:
            return s0, s1, s2, s3, k
        if k < 0.0 or (us < 0.013 and v > us):
            continue
        if (math.log(v + 1e-300) + math.log(inv_alpha) - math.log(a / (us * us) + b)
                <= -lam + k * loglam - math.lgamma(k + 1.0)):
            return s0, s1, s2, s3, k


@numba.njit(**_JIT)
def _ncx2(s0, s1, s2, s3, df, nc, zx, zr):  # pragma: no cover - compiled
    """Non-central χ²(df, nc)."""
    if df > 1.0:
        s0, s1, s2, s3, z = _normal(s0, s1, s2, s3, zx, zr)
        s0, s1, s2, s3, g = _gamma(s0, s1, s2, s3, 0.5 * (df - 1.0), zx, zr)
        y = z + math.sqrt(nc)
        return s0, s1, s2, s3, y * y + 2.0 * g
    s0, s1, s2, s3, n = _poisson(s0, s1, s2, s3, 0.5 * nc)
    shape = 0.5 * df + n
    if shape <= 0.0:
        return s0, s1, s2, s3, 0.0
    s0, s1, s2, s3, g = _gamma(s0, s1, s2, s3, shape, zx, zr)
    return s0, s1, s2, s3, 2.0 * g


@numba.njit(**_JIT)
def _fold(y, lo, hi):  # pragma: no cover - compiled
    """Mirror y into [lo, hi] (either side may be infinite)."""
    if lo > -math.inf and hi < math.inf:
        length = hi - lo
        r = (y - lo) % (2.0 * length)
        return lo + (2.0 * length - r if r > length else r)
    if y < lo:
        return 2.0 * lo - y
    if y > hi:
        return 2.0 * hi - y
    return y


@numba.njit(parallel=True, **_JIT)
def _paths(x0, n_steps, h, out_steps, a0, amat, cn, scheme, kinds, ex_mult, ex_shift, ex_sd,
           ss_lo, ss_hi, fix, wall_lo, wall_hi, kind_lo, kind_hi, bridge, seed, zx, zr,
           keep_decrease, values, decrease, face, absorbed_step, violations):  # pragma: no cover
    n_paths, d = x0.shape
    n_out = out_steps.shape[0]
    sqh = math.sqrt(h)
    for p in numba.prange(n_paths):
        s0, s1, s2, s3 = _seed(seed, p)
        x = np.empty(d)
        xv = np.empty(d)
        y = np.empty(d)
        dec = np.zeros(d)
        for i in range(d):
            x[i] = x0[p, i]
        k = 0
        while k < n_out and out_steps[k] == 0:
            for i in range(d):
                values[k, p, i] = x[i]
                if keep_decrease:
                    decrease[k, p, i] = 0.0
            k += 1
        dead = False
        nviol = 0
        for step in range(1, n_steps + 1):
            # coefficients at the state seen by the scheme (clipped under full truncation)
            for i in range(d):
                xi = x[i]
                if fix == 1:
                    xi = min(max(xi, ss_lo[i]), ss_hi[i])
                xv[i] = xi
            for i in range(d):
                s0, s1, s2, s3, z = _normal(s0, s1, s2, s3, zx, zr)
                dw = sqh * z
                if scheme == 2:
                    kd = kinds[i]
                    if kd == 1:
                        yi = ex_mult[i] * xv[i] + ex_shift[i] + ex_sd[i] * z
                    elif kd == 2:
                        yi = xv[i] * math.exp(ex_shift[i] + ex_sd[i] * z)
                    else:  # CIR: ex_sd = k, ex_mult = e^{−κh}, ex_shift = ν
                        nc = max(xv[i], 0.0) * ex_mult[i] / ex_sd[i]
                        s0, s1, s2, s3, q = _ncx2(s0, s1, s2, s3, ex_shift[i], nc, zx, zr)
                        yi = ex_sd[i] * q
                else:
                    drift = a0[i]
                    for j in range(d):
                        drift += amat[i, j] * xv[j]
                    var = cn[i, 0] + cn[i, 1] * xv[i] + cn[i, 2] * xv[i] * xv[i]
                    b = math.sqrt(var) if var > 0.0 else 0.0
                    # full truncation advances the unclipped state (Lord et al. 2010)
                    yi = x[i] + drift * h + b * dw
                    if scheme == 1:
                        yi += 0.25 * (cn[i, 1] + 2.0 * cn[i, 2] * xv[i]) * (dw * dw - h)
                y[i] = yi
            for i in range(d):
                yi = y[i]
                if yi < ss_lo[i] or yi > ss_hi[i]:
                    nviol += 1
                    if fix == 2:
                        yi = _fold(yi, ss_lo[i], ss_hi[i])
                # walls
                if kind_lo[i] == 1 or kind_hi[i] == 1:
                    lo = wall_lo[i] if kind_lo[i] == 1 else -math.inf
                    hi = wall_hi[i] if kind_hi[i] == 1 else math.inf
                    if yi < lo or yi > hi:
                        yi = _fold(yi, lo, hi)
                if not dead and (kind_lo[i] == 2 or kind_hi[i] == 2):
                    for side in range(2):
                        kind = kind_lo[i] if side == 0 else kind_hi[i]
                        if kind != 2 or dead:
                            continue
                        wall = wall_lo[i] if side == 0 else wall_hi[i]
                        d0 = (xv[i] - wall) if side == 0 else (wall - xv[i])
                        d1 = (yi - wall) if side == 0 else (wall - yi)
                        if d1 < 0.0:
                            dead = True
                        elif bridge:
                            var = cn[i, 0] + cn[i, 1] * xv[i] + cn[i, 2] * xv[i] * xv[i]
                            if var > 0.0 and d0 > 0.0:
                                arg = 2.0 * d0 * d1 / (var * h)
                                if arg < 745.0:
                                    s0, s1, s2, s3, u = _uniform(s0, s1, s2, s3)
                                    if u < math.exp(-arg):
                                        dead = True
                        if dead:
                            face[p] = 2 * i + side
                            absorbed_step[p] = step
                if keep_decrease:  # what left the recorded state (clipped under truncation)
                    dec[i] += xv[i] - (min(max(yi, ss_lo[i]), ss_hi[i]) if fix == 1 else yi)
                y[i] = yi
            for i in range(d):
                x[i] = y[i]
            while k < n_out and out_steps[k] == step:
                for i in range(d):
                    v = x[i]
                    if fix == 1:
                        v = min(max(v, ss_lo[i]), ss_hi[i])
                    values[k, p, i] = np.nan if dead else v
                    if keep_decrease:
                        decrease[k, p, i] = np.nan if dead else dec[i]
                k += 1
            if dead:
                break
        while k < n_out:  # outputs after absorption
            for i in range(d):
                values[k, p, i] = np.nan
                if keep_decrease:
                    decrease[k, p, i] = np.nan
            k += 1
        violations[p] = nviol


@numba.njit(parallel=True, **_JIT)
def _paths_1d(x0, n_steps, h, out_steps, a0, a1, c0, c1, c2, scheme, kind, ex_mult, ex_shift,
              ex_sd, ss_lo, ss_hi, fix, wall_lo, wall_hi, kind_lo, kind_hi, bridge, seed, zx,
              zr, keep_decrease, values, decrease, face, absorbed_step,
              violations):  # pragma: no cover - compiled
    """The one-component case of :func:`_paths` with the state in registers (the same draws,
    the same bits): most named processes are scalar, and this loop is the hot one."""
    n_paths = x0.shape[0]
    n_out = out_steps.shape[0]
    sqh = math.sqrt(h)
    has_walls = kind_lo != 0 or kind_hi != 0
    b_add = math.sqrt(c0) if c0 > 0.0 else 0.0
    b_lin = math.sqrt(c2) if c2 > 0.0 else 0.0
    for p in numba.prange(n_paths):
        s0, s1, s2, s3 = _seed(seed, p)
        x = x0[p]
        dec = 0.0
        k = 0
        while k < n_out and out_steps[k] == 0:
            values[k, p, 0] = x
            if keep_decrease:
                decrease[k, p, 0] = 0.0
            k += 1
        dead = False
        nviol = 0
        for step in range(1, n_steps + 1):
            xv = min(max(x, ss_lo), ss_hi) if fix == 1 else x
            s0, s1, s2, s3, z = _normal(s0, s1, s2, s3, zx, zr)
            if scheme == 2:
                if kind == 1:
                    y = ex_mult * xv + ex_shift + ex_sd * z
                elif kind == 2:
                    y = xv * math.exp(ex_shift + ex_sd * z)
                else:
                    nc = max(xv, 0.0) * ex_mult / ex_sd
                    s0, s1, s2, s3, q = _ncx2(s0, s1, s2, s3, ex_shift, nc, zx, zr)
                    y = ex_sd * q
            else:
                dw = sqh * z
                # no square root where the noise is additive or proportional (a hot path)
                if c1 == 0.0 and c2 == 0.0:
                    b = b_add
                elif c0 == 0.0 and c1 == 0.0:
                    b = b_lin * abs(xv)
                else:
                    var = c0 + (c1 + c2 * xv) * xv
                    b = math.sqrt(var) if var > 0.0 else 0.0
                y = x + (a0 + a1 * xv) * h + b * dw
                if scheme == 1:
                    y += 0.25 * (c1 + 2.0 * c2 * xv) * (dw * dw - h)
            if y < ss_lo or y > ss_hi:
                nviol += 1
                if fix == 2:
                    y = _fold(y, ss_lo, ss_hi)
            if has_walls:
                if kind_lo == 1 or kind_hi == 1:
                    lo = wall_lo if kind_lo == 1 else -math.inf
                    hi = wall_hi if kind_hi == 1 else math.inf
                    if y < lo or y > hi:
                        y = _fold(y, lo, hi)
                for side in range(2):
                    kd = kind_lo if side == 0 else kind_hi
                    if kd != 2 or dead:
                        continue
                    wall = wall_lo if side == 0 else wall_hi
                    d0 = (xv - wall) if side == 0 else (wall - xv)
                    d1 = (y - wall) if side == 0 else (wall - y)
                    if d1 < 0.0:
                        dead = True
                    elif bridge:
                        var = c0 + (c1 + c2 * xv) * xv
                        if var > 0.0 and d0 > 0.0:
                            arg = 2.0 * d0 * d1 / (var * h)
                            if arg < 745.0:
                                s0, s1, s2, s3, u = _uniform(s0, s1, s2, s3)
                                if u < math.exp(-arg):
                                    dead = True
                    if dead:
                        face[p] = side
                        absorbed_step[p] = step
            if keep_decrease:
                dec += xv - (min(max(y, ss_lo), ss_hi) if fix == 1 else y)
            x = y
            while k < n_out and out_steps[k] == step:
                v = min(max(x, ss_lo), ss_hi) if fix == 1 else x
                values[k, p, 0] = np.nan if dead else v
                if keep_decrease:
                    decrease[k, p, 0] = np.nan if dead else dec
                k += 1
            if dead:
                break
        while k < n_out:
            values[k, p, 0] = np.nan
            if keep_decrease:
                decrease[k, p, 0] = np.nan
            k += 1
        violations[p] = nviol


# ------------------------------------------------------------------------ the driver

def _exact_coefficients(sde: AffineSDE, h: float, kinds: list[int]
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d = sde.dim
    mult, shift, sd = np.zeros(d), np.zeros(d), np.zeros(d)
    for i, kind in enumerate(kinds):
        a0, a1 = float(sde.drift_constant[i]), float(sde.drift_matrix[i, i])
        c0, c1, c2 = (float(v) for v in sde.noise[i])
        if kind == 1:
            e = math.exp(a1 * h)
            mult[i] = e
            shift[i] = a0 * h if a1 == 0.0 else a0 * math.expm1(a1 * h) / a1
            sd[i] = math.sqrt(c0 * (h if a1 == 0.0 else math.expm1(2 * a1 * h) / (2 * a1)))
        elif kind == 2:
            shift[i] = (a1 - 0.5 * c2) * h
            sd[i] = math.sqrt(c2 * h)
        elif kind == 3:
            kappa = -a1
            mult[i] = math.exp(-kappa * h)
            shift[i] = 4.0 * a0 / c1  # degrees of freedom ν = 4κθ/σ²
            sd[i] = c1 * -math.expm1(-kappa * h) / (4.0 * kappa)
    return mult, shift, sd


def _walls(walls: Sequence[tuple[WallKind, float, WallKind, float]] | None, d: int
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    lo, hi = np.full(d, -np.inf), np.full(d, np.inf)
    klo, khi = np.zeros(d, np.int64), np.zeros(d, np.int64)
    if walls is None:
        return lo, hi, klo, khi
    if len(walls) != d:
        raise ValueError(f"walls: one (kind, position, kind, position) per component ({d})")
    for i, (k_lo, x_lo, k_hi, x_hi) in enumerate(walls):
        for kind in (k_lo, k_hi):
            if kind not in _WALL_CODE:
                raise ValueError(f"wall kind must be one of {', '.join(_WALL_CODE)}, got "
                                 f"{kind!r}")
        klo[i], khi[i] = _WALL_CODE[k_lo], _WALL_CODE[k_hi]
        lo[i] = x_lo if klo[i] else -np.inf
        hi[i] = x_hi if khi[i] else np.inf
        if lo[i] >= hi[i]:
            raise ValueError(f"component {i}: the lower wall must lie below the upper wall")
    return lo, hi, klo, khi


def _stopped(values: np.ndarray, face: np.ndarray, w_lo: np.ndarray, w_hi: np.ndarray
             ) -> np.ndarray:
    """``values`` with each absorbed path held after absorption: its last output before it,
    and the absorbing component at the wall."""
    out = values.copy()
    gone = np.flatnonzero(face >= 0)
    if gone.size == 0:
        return out
    sub = out[:, gone, :]
    for k in range(1, sub.shape[0]):
        hole = ~np.isfinite(sub[k])
        sub[k][hole] = sub[k - 1][hole]
    comp, side = face[gone] // 2, face[gone] % 2
    wall = np.where(side == 0, w_lo[comp], w_hi[comp])
    absorbed_now = ~np.isfinite(values[:, gone, :][:, np.arange(gone.size), comp])
    col = sub[:, np.arange(gone.size), comp]
    sub[:, np.arange(gone.size), comp] = np.where(absorbed_now, wall[None, :], col)
    out[:, gone, :] = sub
    return out


def simulate(sde: AffineSDE, x0: np.ndarray | Sequence[float], dt: float, n_steps: int,
             output_steps: Sequence[int] | np.ndarray, *, n_paths: int, seed: int,
             scheme: Scheme = "euler_maruyama", bounds_fix: BoundsFix = "truncate",
             walls: Sequence[tuple[WallKind, float, WallKind, float]] | None = None,
             bridge: bool = True, keep_decrease: bool = False,
             _general: bool = False) -> SDEResult:
    """Simulate ``n_paths`` paths from ``x0`` (one state of d components, or (n_paths, d)).

    ``walls``: per component ``(lower kind, lower position, upper kind, upper position)``, kinds
    ``none``/``reflecting``/``absorbing``. ``bounds_fix`` applies where the scheme can leave the
    state space (module docstring); ``exact`` never does for the kinds it supports.
    ``keep_decrease``: also return the cumulative decrease of each component (an eliminated
    amount, when the state is the amount left). One component runs a loop specialised for it,
    with the same bits as the general loop (which ``_general`` forces, for tests).
    """
    if scheme not in _SCHEME_CODE:
        raise ValueError(f"scheme must be one of {', '.join(SCHEMES)}, got {scheme!r}")
    if bounds_fix not in _FIX_CODE:
        raise ValueError(f"bounds_fix must be one of {', '.join(_FIX_CODE)}, got "
                         f"{bounds_fix!r}")
    if not (math.isfinite(dt) and dt > 0):
        raise ValueError(f"the time step must be positive and finite, got {dt}")
    if isinstance(seed, bool) or not 0 <= int(seed) < 2**64:
        raise ValueError(f"seed must be a non-negative 64-bit integer, got {seed!r}")
    if n_paths < 1 or n_steps < 0:
        raise ValueError("n_paths must be ≥ 1 and n_steps ≥ 0")
    d = sde.dim
    start = np.asarray(x0, dtype=float)
    start = np.broadcast_to(start.reshape(-1, d) if start.ndim == 2 else start.reshape(1, d),
                            (n_paths, d)).copy()
    if not np.all(np.isfinite(start)):
        raise ValueError("initial states must be finite")
    if np.any(start < sde.lower) or np.any(start > sde.upper):
        raise ValueError(f"initial states must lie in the state space "
                         f"[{sde.lower.tolist()}, {sde.upper.tolist()}]")
    steps = np.asarray(output_steps, dtype=np.int64)
    if steps.ndim != 1 or steps.size == 0 or steps[0] < 0 or np.any(np.diff(steps) <= 0) \
            or steps[-1] > n_steps:
        raise ValueError("output_steps must increase strictly within 0 … n_steps")
    kinds = exact_kinds(sde)
    if scheme == "exact" and 0 in kinds:
        raise ScenarioError([("solver.scheme", "no exact transition is known for this process "
                              "(exact transitions: Ornstein–Uhlenbeck, Brownian motion with "
                              "drift, geometric Brownian motion, Cox–Ingersoll–Ross, with "
                              "uncoupled components); use euler_maruyama or milstein")])
    w_lo, w_hi, k_lo, k_hi = _walls(walls, d)
    if np.any((start < w_lo) | (start > w_hi)):
        raise ValueError("initial states must lie between the walls")
    mult, shift, sd = _exact_coefficients(sde, dt, kinds) if scheme == "exact" else \
        (np.zeros(d), np.zeros(d), np.zeros(d))
    # an exact transition never leaves its state space, so nothing is fixed there
    fix = 0 if scheme == "exact" else _FIX_CODE[bounds_fix]
    n_out = steps.size
    values = np.empty((n_out, n_paths, d))
    decrease = np.empty((n_out, n_paths, d)) if keep_decrease else np.empty((1, 1, 1))
    face = np.full(n_paths, -1, dtype=np.int64)
    absorbed_step = np.full(n_paths, n_steps + 1, dtype=np.int64)
    violations = np.zeros(n_paths, dtype=np.int64)
    if d == 1 and not _general:
        c = np.asarray(sde.noise, float)[0]
        _paths_1d(start[:, 0].copy(), int(n_steps), float(dt), steps,
                  float(sde.drift_constant[0]), float(sde.drift_matrix[0, 0]), float(c[0]),
                  float(c[1]), float(c[2]), _SCHEME_CODE[scheme], int(kinds[0]), float(mult[0]),
                  float(shift[0]), float(sd[0]), float(sde.lower[0]), float(sde.upper[0]), fix,
                  float(w_lo[0]), float(w_hi[0]), int(k_lo[0]), int(k_hi[0]), bool(bridge),
                  np.uint64(int(seed) & _M64), _ZIG_X, _ZIG_R, bool(keep_decrease), values,
                  decrease, face, absorbed_step, violations)
    else:
        _paths(start, int(n_steps), float(dt), steps, np.asarray(sde.drift_constant, float),
               np.ascontiguousarray(sde.drift_matrix, float),
               np.ascontiguousarray(sde.noise, float), _SCHEME_CODE[scheme],
               np.asarray(kinds, np.int64), mult, shift, sd, np.asarray(sde.lower, float),
               np.asarray(sde.upper, float), fix, w_lo, w_hi, k_lo, k_hi, bool(bridge),
               np.uint64(int(seed) & _M64), _ZIG_X, _ZIG_R, bool(keep_decrease), values,
               decrease, face, absorbed_step, violations)
    return SDEResult(steps, steps * dt, values, face, absorbed_step, violations,
                     decrease if keep_decrease else None, _stopped(values, face, w_lo, w_hi),
                     scheme,
                     "exact" if scheme == "exact" else bounds_fix, int(seed), float(dt))
