"""Series solutions of the diffusion equation with an audited truncation.

Uniform initial concentration c₀, perfect sinks (c = 0) on the surface, constant D
(Crank, *The Mathematics of Diffusion*, 2nd ed.):

Slab 0 < x < l (eqs. 4.17, 4.18), with k = 2n + 1:

    c(x, t) = (4c₀/π) Σ_{n≥0} (1/k) sin(kπx/l) exp(−Dk²π²t/l²)
    M_t/M_∞ = 1 − Σ_{n≥0} 8/(k²π²) exp(−Dk²π²t/l²)

Sphere 0 ≤ r < a (eqs. 6.18, 6.20):

    c(r, t) = (2ac₀/(πr)) Σ_{n≥1} ((−1)^{n+1}/n) sin(nπr/a) exp(−Dn²π²t/a²)
    M_t/M_∞ = 1 − (6/π²) Σ_{n≥1} (1/n²) exp(−Dn²π²t/a²)

At t = 0 the released fraction is zero only because Σ 1/(2n+1)² = π²/8 and Σ 1/n² = π²/6; the
tail after N terms is at most ∫_N^∞ dx/x² = 1/N (odd terms: 1/(4N)). For t > 0 every neglected
term carries at most the first neglected exponential, so the neglected part of M_t/M_∞ is at most

    slab:   (8/π²) · exp(−D(2N+1)²π²t/l²) / (4N)
    sphere: (6/π²) · exp(−D(N+1)²π²t/a²) / N

(times M_∞ for the amount). :func:`slab_truncation`/:func:`sphere_truncation` pick the smallest N
meeting a tolerance and report it as a :class:`Truncation`.

Cell averages are integrated analytically term by term (∫ sin over a slab cell; ∫ 4πr² c dr over
a shell), so Σ w·c̄ over a grid that spans the body equals the remaining amount of the same
truncated series to rounding. Their error is at most (l/h)·c₀ (slab cell of width h) or
(16a³(1/π + 1/π²)/V)·c₀·(π²/6) (shell of volume V) times the fraction bound above; a point value
of the profile converges more slowly (terms ∝ 1/n, not 1/n²).

All evaluation is vectorised over terms × times × points and refuses (``ValueError``) more than
:data:`MAX_TERM_EVALUATIONS` term evaluations, naming the tolerance that would be achievable.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from medtransport.domain import Grid

__all__ = [
    "MAX_TERM_EVALUATIONS",
    "Truncation",
    "slab_amount",
    "slab_cell_average",
    "slab_profile",
    "slab_release",
    "slab_tail_bound",
    "slab_truncation",
    "sphere_amount",
    "sphere_profile",
    "sphere_release",
    "sphere_shell_average",
    "sphere_tail_bound",
    "sphere_truncation",
]

#: The most terms × times × points one evaluation may cost (and the most terms a sum may have).
MAX_TERM_EVALUATIONS = 50_000_000
#: Elements per vectorised block (bounds memory at a few tens of MB).
_BLOCK = 1 << 21
_PI2 = math.pi ** 2

Geometry = Literal["slab", "sphere"]


@dataclass(frozen=True)
class Truncation:
    """How many terms a series needs, and the proof that its tail is small.

    ``tail_bound`` bounds the neglected part of M_t/M_∞ at ``time`` (multiply by M_∞ for the
    amount); ``sum_at_t0`` is the truncated normalization sum Σ_{n<N} 1/(2n+1)² (slab) or
    Σ_{n≤N} 1/n² (sphere), ``exact_sum_at_t0`` its limit π²/8 or π²/6, and ``sum_tail_bound``
    = 1/(4N) or 1/N bounds their difference.
    """

    n_terms: int
    tail_bound: float
    tolerance: float
    sum_at_t0: float
    exact_sum_at_t0: float
    time: float = 0.0
    sum_tail_bound: float = math.inf

    @property
    def ok(self) -> bool:
        """Whether the tail bound meets the tolerance."""
        return self.tail_bound <= self.tolerance


# --------------------------------------------------------------------------- the two series

@dataclass(frozen=True)
class _Series:
    """M_t/M_∞ = 1 − prefactor · Σ_j exp(−π²k_j²τ)/k_j², τ = Dt/L², k_j = wavenumber(j)."""

    geometry: Geometry
    prefactor: float
    exact_sum: float
    wavenumber: Callable[[np.ndarray], np.ndarray]
    first_neglected: Callable[[int], int]
    # The t = 0 tail of Σ 1/k_j² after N terms: 1/(4N) or 1/N.
    sum_tail: Callable[[int], float]

    def log_tail_bound(self, n_terms: int, tau: float) -> float:
        if n_terms < 1:
            raise ValueError("a truncated series keeps at least one term")
        k = self.first_neglected(n_terms)
        return math.log(self.prefactor * self.sum_tail(n_terms)) - _PI2 * k * k * tau

    def tail_bound(self, n_terms: int, tau: float) -> float:
        return math.exp(self.log_tail_bound(n_terms, tau))

    def terms_for(self, tau: float, tol: float) -> int:
        """Smallest N ≥ 1 whose tail bound is ≤ tol (the bound decreases with N)."""
        # The t = 0 bound always suffices; +1 absorbs rounding in the ceiling.
        lo, hi = 1, math.ceil(self.prefactor * self.sum_tail(1) / tol) + 1
        log_tol = math.log(tol)
        if self.log_tail_bound(lo, tau) <= log_tol:
            return lo
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.log_tail_bound(mid, tau) <= log_tol:
                hi = mid
            else:
                lo = mid
        return hi


_SLAB = _Series("slab", 8.0 / _PI2, _PI2 / 8.0, lambda j: 2.0 * j + 1.0,
                lambda n: 2 * n + 1, lambda n: 1.0 / (4.0 * n))
_SPHERE = _Series("sphere", 6.0 / _PI2, _PI2 / 6.0, lambda j: j + 1.0,
                  lambda n: n + 1, lambda n: 1.0 / n)


def _times(t: ArrayLike) -> np.ndarray:
    arr = np.asarray(t, dtype=float)
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError("times must be finite and non-negative")
    return arr


def _positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be positive and finite, got {value!r}")


def _normalization_sum(series: _Series, n_terms: int) -> float:
    """Σ_{j<N} 1/k_j², summed directly (smallest terms first) in blocks."""
    total = 0.0
    for stop in range(n_terms, 0, -_BLOCK):
        k = series.wavenumber(np.arange(max(0, stop - _BLOCK), stop, dtype=float))
        total += float(np.sum(1.0 / k[::-1] ** 2))
    return total


def _too_many(series: _Series, n_terms: int, tau: float, tol: float) -> ValueError:
    from medtransport.errors import ScenarioError

    achievable = series.tail_bound(MAX_TERM_EVALUATIONS, tau)
    # Bad input (a diffusivity or time too small for the series), not a crash: a ScenarioError
    # (still a ValueError) naming what to change.
    return ScenarioError([("solver.method", f"the {series.geometry} series needs {n_terms} "
                           f"terms for tolerance {tol:g} at Dt/L² = {tau:g} (from "
                           f"parameters.diffusivity and the output times), more than "
                           f"{MAX_TERM_EVALUATIONS}; the achievable tolerance there is "
                           f"{achievable:.3g} — use a grid method (e.g. crank_nicolson)")])


def _truncation(series: _Series, t: ArrayLike, diffusivity: float, length: float, tol: float,
                n_terms: int | None) -> Truncation:
    _positive("diffusivity", diffusivity)
    _positive("length", length)
    _positive("tolerance", tol)
    times = _times(t).ravel()
    positive = times[times > 0]
    time = float(positive.min()) if positive.size else 0.0
    tau = diffusivity * time / length ** 2
    if n_terms is None:
        n_terms = series.terms_for(tau, tol)
        if n_terms > MAX_TERM_EVALUATIONS:
            raise _too_many(series, n_terms, tau, tol)
    elif not 1 <= n_terms <= MAX_TERM_EVALUATIONS:
        raise ValueError(f"n_terms must be between 1 and {MAX_TERM_EVALUATIONS}")
    return Truncation(n_terms=int(n_terms), tail_bound=series.tail_bound(n_terms, tau),
                      tolerance=tol, sum_at_t0=_normalization_sum(series, n_terms),
                      exact_sum_at_t0=series.exact_sum, time=time,
                      sum_tail_bound=series.sum_tail(n_terms))


def slab_truncation(t: ArrayLike, diffusivity: float, thickness: float, tol: float, *,
                    n_terms: int | None = None) -> Truncation:
    """Terms needed for the slab series at the smallest positive time in ``t`` (t = 0 if none)
    so that the neglected part of M_t/M_∞ is ≤ ``tol``; with ``n_terms`` given, the bound for
    that many terms instead."""
    return _truncation(_SLAB, t, diffusivity, thickness, tol, n_terms)


def sphere_truncation(t: ArrayLike, diffusivity: float, radius: float, tol: float, *,
                      n_terms: int | None = None) -> Truncation:
    """As :func:`slab_truncation`, for the sphere series."""
    return _truncation(_SPHERE, t, diffusivity, radius, tol, n_terms)


def slab_tail_bound(t: float, diffusivity: float, thickness: float, n_terms: int) -> float:
    """Bound on the neglected part of the slab's M_t/M_∞ after ``n_terms`` terms."""
    return _SLAB.tail_bound(n_terms, diffusivity * float(t) / thickness ** 2)


def sphere_tail_bound(t: float, diffusivity: float, radius: float, n_terms: int) -> float:
    """Bound on the neglected part of the sphere's M_t/M_∞ after ``n_terms`` terms."""
    return _SPHERE.tail_bound(n_terms, diffusivity * float(t) / radius ** 2)


# --------------------------------------------------------------------------- evaluation

def _plan(series: _Series, times: np.ndarray, diffusivity: float, length: float, tol: float,
          n_terms: int | None, exact_at_t0: bool, n_points: int) -> int:
    """The number of terms to use, refusing work beyond MAX_TERM_EVALUATIONS."""
    _positive("diffusivity", diffusivity)
    _positive("length", length)
    _positive("tolerance", tol)
    flat = times.ravel()
    # At t = 0 the known initial state replaces the slowly converging series.
    series_t = flat[flat > 0] if exact_at_t0 else flat
    if series_t.size == 0:
        return 0
    tau = diffusivity * float(series_t.min()) / length ** 2
    if n_terms is None:
        n_terms = series.terms_for(tau, tol)
    elif n_terms < 1:
        raise ValueError("n_terms must be at least 1")
    cost = n_terms * series_t.size * max(n_points, 1)
    if cost > MAX_TERM_EVALUATIONS:
        n_max = MAX_TERM_EVALUATIONS // (series_t.size * max(n_points, 1))
        achievable = series.tail_bound(max(n_max, 1), tau) if n_max >= 1 else math.inf
        raise ValueError(f"{n_terms} terms × {series_t.size} times × {max(n_points, 1)} points "
                         f"exceeds {MAX_TERM_EVALUATIONS} term evaluations; with {n_max} terms "
                         f"the achievable tolerance at Dt/L² = {tau:g} is {achievable:.3g}")
    return int(n_terms)


def _sum_terms(series: _Series, tau: np.ndarray, n_terms: int,
               spatial: Callable[[np.ndarray], np.ndarray] | None, n_points: int) -> np.ndarray:
    """Σ_j exp(−π²k_j²τ) · S_j over the terms, in blocks: (n_τ, n_points), or (n_τ,) with
    S_j = 1/k_j² when ``spatial`` is None. ``spatial(k)`` gives S for a block, shape (nk, n_p)."""
    width = tau.size + max(n_points, 1)
    block = max(1, _BLOCK // width)
    out = np.zeros((tau.size, n_points)) if spatial is not None else np.zeros(tau.size)
    # Highest terms first: they are the smallest, so they are added before the large ones.
    for stop in range(n_terms, 0, -block):
        k = series.wavenumber(np.arange(max(0, stop - block), stop, dtype=float))
        decay = np.exp(-_PI2 * np.outer(tau, k * k))
        if spatial is None:
            out += decay @ (1.0 / (k * k))
        else:
            out += decay @ spatial(k)
    return out


def _evaluate(series: _Series, t: ArrayLike, diffusivity: float, length: float, tol: float,
              n_terms: int | None, exact_at_t0: bool, n_points: int,
              spatial: Callable[[np.ndarray], np.ndarray] | None,
              initial: float | np.ndarray) -> np.ndarray:
    """The series at every time (rows), with the initial state at t = 0 if ``exact_at_t0``."""
    times = _times(t)
    flat = times.ravel()
    n = _plan(series, times, diffusivity, length, tol, n_terms, exact_at_t0, n_points)
    shape = (flat.size, n_points) if spatial is not None else (flat.size,)
    out = np.empty(shape)
    use_series = flat > 0 if exact_at_t0 else np.ones(flat.size, dtype=bool)
    out[~use_series] = initial
    if use_series.any():
        tau = diffusivity * flat[use_series] / length ** 2
        out[use_series] = _sum_terms(series, tau, n, spatial, n_points)
    return out.reshape(times.shape + shape[1:])


def _remaining_fraction(series: _Series, t: ArrayLike, diffusivity: float, length: float,
                        tol: float, n_terms: int | None, exact_at_t0: bool) -> np.ndarray:
    """1 − M_t/M_∞ = prefactor · Σ e_j/k_j², exactly 1 at t = 0 if ``exact_at_t0``."""
    times = _times(t)
    sums = _evaluate(series, times, diffusivity, length, tol, n_terms, exact_at_t0, 0, None,
                     np.nan)
    fraction = series.prefactor * sums
    return np.where(times == 0, 1.0, fraction) if exact_at_t0 else np.asarray(fraction)


def slab_release(t: ArrayLike, diffusivity: float, thickness: float, *, tol: float = 1e-12,
                 n_terms: int | None = None, exact_at_t0: bool = True) -> np.ndarray:
    """M_t/M_∞ of a slab with sinks at both faces (Crank 4.18), shape of ``t``.

    ``n_terms`` None: the fewest terms meeting ``tol`` at the smallest positive time. With
    ``exact_at_t0`` the value at t = 0 is the known 0, not the truncated series.
    """
    return 1.0 - _remaining_fraction(_SLAB, t, diffusivity, thickness, tol, n_terms,
                                     exact_at_t0)


def sphere_release(t: ArrayLike, diffusivity: float, radius: float, *, tol: float = 1e-12,
                   n_terms: int | None = None, exact_at_t0: bool = True) -> np.ndarray:
    """M_t/M_∞ of a sphere with surface c = 0 (Crank 6.20), shape of ``t``; as
    :func:`slab_release`."""
    return 1.0 - _remaining_fraction(_SPHERE, t, diffusivity, radius, tol, n_terms,
                                     exact_at_t0)


def slab_amount(t: ArrayLike, diffusivity: float, thickness: float, c0: float, *,
                tol: float = 1e-12, n_terms: int | None = None,
                exact_at_t0: bool = True) -> np.ndarray:
    """Amount per unit face area still in the slab, c₀·l·(1 − M_t/M_∞), from the same sum."""
    return c0 * thickness * _remaining_fraction(_SLAB, t, diffusivity, thickness, tol, n_terms,
                                                exact_at_t0)


def sphere_amount(t: ArrayLike, diffusivity: float, radius: float, c0: float, *,
                  tol: float = 1e-12, n_terms: int | None = None,
                  exact_at_t0: bool = True) -> np.ndarray:
    """Amount still in the sphere, (4/3)πa³c₀·(1 − M_t/M_∞) = (8a³c₀/π) Σ e_n/n²."""
    volume = 4.0 * math.pi / 3.0 * radius ** 3
    return c0 * volume * _remaining_fraction(_SPHERE, t, diffusivity, radius, tol, n_terms,
                                             exact_at_t0)


def slab_profile(x: ArrayLike, t: ArrayLike, diffusivity: float, thickness: float, c0: float,
                 *, tol: float = 1e-12, n_terms: int | None = None,
                 exact_at_t0: bool = True) -> np.ndarray:
    """c(x, t) in the slab 0 ≤ x ≤ l (Crank 4.17): shape ``t.shape + (x.size,)``."""
    xs = np.asarray(x, dtype=float).ravel()
    if np.any((xs < 0) | (xs > thickness)):
        raise ValueError("x must lie in [0, thickness]")

    def spatial(k: np.ndarray) -> np.ndarray:
        return (4.0 * c0 / math.pi) / k[:, None] * np.sin(np.outer(k, xs) * (math.pi /
                                                                             thickness))

    return _evaluate(_SLAB, t, diffusivity, thickness, tol, n_terms, exact_at_t0, xs.size,
                     spatial, c0)


def sphere_profile(r: ArrayLike, t: ArrayLike, diffusivity: float, radius: float, c0: float,
                   *, tol: float = 1e-12, n_terms: int | None = None,
                   exact_at_t0: bool = True) -> np.ndarray:
    """c(r, t) in the sphere 0 ≤ r ≤ a (Crank 6.18): shape ``t.shape + (r.size,)``.

    Written as 2c₀ Σ (−1)^{n+1} sinc(nr/a) e_n (sinc(x) = sin(πx)/(πx)), finite at r = 0.
    """
    rs = np.asarray(r, dtype=float).ravel()
    if np.any((rs < 0) | (rs > radius)):
        raise ValueError("r must lie in [0, radius]")

    def spatial(n: np.ndarray) -> np.ndarray:
        sign = np.where(n % 2 == 1, 1.0, -1.0)
        return 2.0 * c0 * sign[:, None] * np.sinc(np.outer(n, rs) / radius)

    return _evaluate(_SPHERE, t, diffusivity, radius, tol, n_terms, exact_at_t0, rs.size,
                     spatial, c0)


def slab_cell_average(grid: Grid, t: ArrayLike, diffusivity: float, c0: float, *,
                      tol: float = 1e-12, n_terms: int | None = None,
                      exact_at_t0: bool = True) -> np.ndarray:
    """Cell averages of c over a 1-D Cartesian ``grid`` that spans the slab (l = upper − lower):
    shape ``t.shape + grid.cells``.

    (1/h)∫ sin(kπx/l) dx over [x_a, x_b] = (2l/(kπh)) sin(kπ(x_a+x_b)/2l) sin(kπ(x_b−x_a)/2l),
    written as a product so that thin cells keep their digits.
    """
    if grid.radial or grid.ndim != 1:
        raise ValueError("slab cell averages need a 1-D Cartesian grid")
    thickness = grid.upper[0] - grid.lower[0]
    e = grid.edges(0) - grid.lower[0]
    mid, half = 0.5 * (e[1:] + e[:-1]), 0.5 * (e[1:] - e[:-1])
    width = e[1:] - e[:-1]

    def spatial(k: np.ndarray) -> np.ndarray:
        arg = math.pi / thickness * k[:, None]
        integral = (2.0 * thickness / math.pi) / k[:, None] * np.sin(arg * mid) * \
            np.sin(arg * half)
        return (4.0 * c0 / math.pi) / k[:, None] * integral / width

    return _evaluate(_SLAB, t, diffusivity, thickness, tol, n_terms, exact_at_t0,
                     grid.cells[0], spatial, c0)


def _sin_minus_x_cos(x: np.ndarray) -> np.ndarray:
    """sin x − x cos x, by its Taylor series Σ (−1)^{m+1} 2m x^{2m+1}/(2m+1)! where the direct
    form cancels (x < 0.5)."""
    small = x < 0.5
    xs = np.where(small, x, 0.0)
    series = np.zeros_like(x)
    term = xs ** 3 / 3.0  # m = 1
    for m in range(1, 9):
        series += term
        # ratio of term m+1 to term m: −(m+1)/m · x²/((2m+2)(2m+3))
        term = term * (-(m + 1) / m) * xs * xs / ((2 * m + 2) * (2 * m + 3))
    return np.where(small, series, np.sin(x) - x * np.cos(x))


def sphere_shell_average(grid: Grid, t: ArrayLike, diffusivity: float, c0: float, *,
                         tol: float = 1e-12, n_terms: int | None = None,
                         exact_at_t0: bool = True) -> np.ndarray:
    """Shell averages ∫4πr²c dr / V over a ``sphere`` grid from r = 0 to a = ``upper[0]``:
    shape ``t.shape + grid.cells``.

    ∫ r sin(kr) dr = (sin kr − kr cos kr)/k², k = nπ/a.
    """
    if grid.geometry != "sphere" or grid.lower[0] != 0.0:
        raise ValueError("shell averages need a full sphere grid (inner radius 0)")
    radius = grid.upper[0]
    e = grid.edges(0)
    volume = grid.weights

    def spatial(n: np.ndarray) -> np.ndarray:
        k = n * (math.pi / radius)
        g = _sin_minus_x_cos(np.outer(k, e))
        shell = 4.0 * math.pi * (g[:, 1:] - g[:, :-1]) / (k * k)[:, None]
        sign = np.where(n % 2 == 1, 1.0, -1.0)
        return (2.0 * radius * c0 / math.pi) * (sign / n)[:, None] * shell / volume

    return _evaluate(_SPHERE, t, diffusivity, radius, tol, n_terms, exact_at_t0,
                     grid.cells[0], spatial, c0)
