"""Laplacian eigenmodes of the pores (reflecting walls) and the gradient's matrix in them.

For a pore Ω with reflecting (Neumann) walls the eigenfunctions u_k of −∇² (eigenvalues λ_k ≥ 0,
u_0 = 1/√|Ω|) are (Callaghan, *Translational Dynamics and Magnetic Resonance*, 2011, ch. 7;
Grebenkov, Rev Mod Phys 79:1077, 2007, §III and Table II):

- planes x ∈ [−L/2, L/2]: u_m ∝ cos(mπ(x + L/2)/L), λ_m = (mπ/L)²;
- disk of radius R (a cylinder's cross-section): u_nk ∝ J_n(α_nk r/R)·cos nφ, J_n'(α_nk) = 0;
- ball of radius R: u_lk ∝ j_l(α_lk r/R)·P_l(cos θ), j_l'(α_lk) = 0;

with λ = α²/R². The gradient couples them through B_kk' = ∫ u_k x u_k' (x along the gradient):
only m ↔ m' of opposite parity (planes), n ↔ n ± 1 (disk, angular factor 1/√2 from n = 0, ½
otherwise) and l ↔ l ± 1 (ball, angular factor (l + 1)/√((2l + 1)(2l + 3))). Radial integrals
are evaluated by Gauss–Legendre quadrature of the normalized radial functions.

Sum rules on the couplings of the uniform mode, c_k = B_0k² (REFERENCES §4):

    Σ c_k = Var(x)   (L²/12 planes, R²/4 disk, R²/5 ball),      Σ c_k λ_k = 1,

the second by Parseval (⟨|∇x|²⟩ = 1). For planes c_m = 8L²/(m⁴π⁴) (odd m) and the second rule is
the odd Basel sum (8/π²)·Σ 1/m² = 1; for the disk c_k = 2R²/(α_k²(α_k² − 1)), for the ball
c_k = 2R²/(α_k²(α_k² − 2)) with α_k the roots of J_1' and j_1' (Neuman, J Chem Phys 60:4508,
1974; the Murday–Cotts coefficients, J Chem Phys 48:4938, 1968, are c_k/2, summing to R²/10 and
R²/8 — REFERENCES §4 quotes those). The tail of Σ c_k λ_k after the K-th root is below
2/(π²(K − 1)) (α_k > (k − ½)π for both), for planes below 4/(π²(2K − 1)) after K odd modes;
that of Σ c_k is below the former divided by λ_{K+1}.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.optimize import brentq
from scipy.special import jn, jnp_zeros, jv, spherical_jn

__all__ = ["Basis", "SumRule", "ball_roots", "basis", "disk_roots", "first_row", "variance"]

Pore = str  # "planes" | "cylinder" | "sphere"


def variance(pore: Pore, size: float) -> float:
    """Var(x) of a uniform position: L²/12 (planes, size = L), R²/4 (disk), R²/5 (ball)."""
    return {"planes": size ** 2 / 12.0, "cylinder": size ** 2 / 4.0,
            "sphere": size ** 2 / 5.0}[pore]


@lru_cache(maxsize=256)
def disk_roots(n: int, count: int) -> np.ndarray:
    """The first ``count`` roots of J_n'(α) = 0, with α = 0 first for n = 0."""
    if n == 0:
        return np.concatenate([[0.0], jnp_zeros(0, count - 1)]) if count > 1 else np.zeros(1)
    return np.asarray(jnp_zeros(n, count), dtype=float)


@lru_cache(maxsize=256)
def ball_roots(n: int, count: int) -> np.ndarray:
    """The first ``count`` roots of j_n'(α) = 0 (spherical Bessel), with α = 0 first for n = 0."""
    roots: list[float] = [0.0] if n == 0 else []
    f = lambda x: spherical_jn(n, x, derivative=True)  # noqa: E731
    # Roots are spaced by about π (more near the first): a grid of π/16 brackets each once.
    hi = (count + n + 2) * math.pi
    grid = np.arange(max(1e-3, 0.5 * n), hi, math.pi / 16)
    values = f(grid)
    for i in np.flatnonzero(values[:-1] * values[1:] < 0):
        roots.append(brentq(f, grid[i], grid[i + 1], xtol=1e-14, rtol=1e-15))
        if len(roots) >= count:
            break
    return np.asarray(roots[:count], dtype=float)


def first_row(pore: Pore, size: float, count: int) -> tuple[np.ndarray, np.ndarray]:
    """(c_k, λ_k) of the modes the uniform mode couples to (closed forms, module docstring):
    the odd planes modes, or the n = 1 disk/ball modes; ``size`` is L or R (m)."""
    if pore == "planes":
        m = 2.0 * np.arange(count) + 1.0
        return 8.0 * size ** 2 / (m ** 4 * math.pi ** 4), (m * math.pi / size) ** 2
    if pore == "cylinder":
        a = disk_roots(1, count)
        return 2.0 * size ** 2 / (a ** 2 * (a ** 2 - 1.0)), (a / size) ** 2
    if pore == "sphere":
        a = ball_roots(1, count)
        return 2.0 * size ** 2 / (a ** 2 * (a ** 2 - 2.0)), (a / size) ** 2
    raise ValueError(f"no eigenmodes for a {pore!r} pore")


def slope_tail_bound(pore: Pore, count: int) -> float:
    """An upper bound on 1 − Σ_{k ≤ count} c_k λ_k (module docstring)."""
    if pore == "planes":
        return 4.0 / (math.pi ** 2 * (2 * count - 1))
    # α_k > (k − ½)π, so the tail is below ∫_K^∞ 2 dk/((k − ½)²π² − 2) < 2/(π²(K − 1)), K ≥ 4.
    return 2.0 / (math.pi ** 2 * (count - 1))


@dataclass(frozen=True)
class SumRule:
    """One sum rule of a truncated eigenbasis, in the shape the core truncation audit reads."""

    name: str
    n_terms: int
    sum_at_t0: float
    exact_sum_at_t0: float
    tail_bound: float
    tolerance: float

    @property
    def sum_tail_bound(self) -> float:
        return self.tail_bound


def sum_rules(pore: Pore, size: float, count: int, *, slope_tolerance: float = 0.02,
              variance_tolerance: float = 1e-4, label: str = "",
              row: tuple[np.ndarray, np.ndarray] | None = None) -> list[SumRule]:
    """Σ c_k / Var(x) and Σ c_k λ_k for the first ``count`` coupled modes, with their bounds;
    ``row`` = (c_k, λ_k) of a basis in use (else the closed forms)."""
    c, lam = first_row(pore, size, count) if row is None else row
    slope_tail = slope_tail_bound(pore, count)
    # c_k = (c_k λ_k)/λ_k and λ_k grows, so the variance tail is below slope_tail/λ_{K+1}.
    _, lam_next = first_row(pore, size, count + 1)
    var_tail = slope_tail / lam_next[-1] / variance(pore, size)
    tag = f"{pore}{label}"
    return [SumRule(f"sum_rule_variance[{tag}]", count, float(c.sum() / variance(pore, size)),
                    1.0, var_tail, variance_tolerance),
            SumRule(f"sum_rule_slope[{tag}]", count, float((c * lam).sum()), 1.0, slope_tail,
                    slope_tolerance)]


# ------------------------------------------------------------------------ full bases (matrix)

@dataclass(frozen=True)
class Basis:
    """Eigenmodes of one pore in units of its size: ``alpha2`` = λ·size², ``coupling`` = B/size
    (symmetric, real); mode 0 is the uniform one."""

    pore: Pore
    alpha2: np.ndarray
    coupling: np.ndarray
    n_radial: int = 0

    @property
    def size(self) -> int:
        return int(self.alpha2.size)

    @property
    def n_coupled(self) -> int:
        """How many modes the uniform mode couples to (odd planes modes, or n = 1 modes)."""
        return self.n_radial // 2 if self.pore == "planes" else self.n_radial


def _gauss(n: int) -> tuple[np.ndarray, np.ndarray]:
    x, w = np.polynomial.legendre.leggauss(n)
    return 0.5 * (x + 1.0), 0.5 * w


def _radial(pore: Pore, n: int, alphas: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """Normalized radial functions on the unit radius at nodes ``rho``: shape (K, nodes)."""
    out = np.empty((alphas.size, rho.size))
    for i, a in enumerate(alphas):
        if a == 0.0:
            out[i] = math.sqrt(2.0) if pore == "cylinder" else math.sqrt(3.0)
            continue
        if pore == "cylinder":
            norm = 0.5 * jn(n, a) ** 2 * (1.0 - n * n / a ** 2)
            out[i] = jv(n, a * rho) / math.sqrt(norm)
        else:
            norm = 0.5 * spherical_jn(n, a) ** 2 * (1.0 - n * (n + 1) / a ** 2)
            out[i] = spherical_jn(n, a * rho) / math.sqrt(norm)
    return out


@lru_cache(maxsize=32)
def basis(pore: Pore, n_angular: int, n_radial: int) -> Basis:
    """The first ``n_radial`` modes of each angular order 0 … ``n_angular`` − 1 (planes: the
    first ``n_radial`` modes), in units of the size (L for planes, R otherwise)."""
    if pore == "planes":
        m = np.arange(n_radial, dtype=float)
        mi, ni = np.meshgrid(m, m, indexing="ij")
        norm = np.sqrt((2.0 - (mi == 0)) * (2.0 - (ni == 0)))

        def part(j: np.ndarray) -> np.ndarray:
            with np.errstate(divide="ignore", invalid="ignore"):
                v = ((-1.0) ** j - 1.0) / (j ** 2 * math.pi ** 2)
            return np.where(j == 0, 0.0, v)

        b = norm * 0.5 * (part(mi - ni) + part(mi + ni))
        np.fill_diagonal(b, 0.0)
        return Basis(pore, (m * math.pi) ** 2, b, n_radial)
    roots = [disk_roots(n, n_radial) if pore == "cylinder" else ball_roots(n, n_radial)
             for n in range(n_angular)]
    n_nodes = int(4 * max(r[-1] for r in roots) / math.pi) + 80
    rho, w = _gauss(n_nodes)
    power = 2 if pore == "cylinder" else 3  # r·r dr (disk) or r·r² dr (ball)
    radial = [_radial(pore, n, r, rho) for n, r in enumerate(roots)]
    size = n_angular * n_radial
    b = np.zeros((size, size))
    for n in range(n_angular - 1):
        if pore == "cylinder":
            ang = 1.0 / math.sqrt(2.0) if n == 0 else 0.5
        else:
            ang = (n + 1) / math.sqrt((2 * n + 1) * (2 * n + 3))
        block = ang * (radial[n] * (w * rho ** power)) @ radial[n + 1].T
        i, j = n * n_radial, (n + 1) * n_radial
        b[i:i + n_radial, j:j + n_radial] = block
        b[j:j + n_radial, i:i + n_radial] = block.T
    alpha2 = np.concatenate([r ** 2 for r in roots])
    return Basis(pore, alpha2, b, n_radial)
