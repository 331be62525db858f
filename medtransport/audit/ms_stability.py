"""Mean-square stability of an SDE scheme, checked before the first step.

For the linear test equation dX = λX dt + μX dW (Higham 2000; Saito & Mitsui 1996) the second
moment of one step is multiplied by

    Euler–Maruyama:  R(h) = |1 + hλ|² + hμ²
    Milstein:        R(h) = |1 + hλ|² + hμ² + ½h²μ⁴
    exact:           R(h) = exp((2λ + μ²)h)

and the scheme is mean-square stable iff R(h) < 1 — while the SDE itself is iff 2λ + μ² < 0.
So a step can make Euler–Maruyama blow up in mean square where the process decays; the largest
stable step is h* = −(2λ + μ²)/λ² (Euler–Maruyama), −(2λ + μ²)/(λ² + ½μ⁴) (Milstein).

For the affine-quadratic family of :mod:`~medtransport.numerics.sde` the same holds for the
second-moment map M ↦ (I + hA)M(I + hA)ᵀ + h·diag(c2∘diag M) (+ ½h²·diag(c2²∘diag M) for
Milstein): its spectral radius is the margin (λ = A, μ² = c2 in one dimension; additive noise
c0 and the c1 term only shift the moments). It is checked only where the SDE is mean-square
stable itself (the spectral abscissa of M ↦ AM + MAᵀ + diag(c2∘diag M) is negative); otherwise
the margin is reported as not applicable.
"""

from __future__ import annotations

import math

import numpy as np

from medtransport.audit.stability import StabilityMargin
from medtransport.numerics.sde import AffineSDE

__all__ = ["largest_ms_stable_step", "ms_growth", "ms_stability_margin", "sde_ms_stable"]


def _operator(sde: AffineSDE, h: float | None, scheme: str) -> np.ndarray:
    """The d²×d² matrix of the second-moment map (one step), or of its generator (h None)."""
    d = sde.dim
    a = np.asarray(sde.drift_matrix, float)
    c2 = np.asarray(sde.noise, float)[:, 2]
    eye = np.eye(d)
    if h is None:
        op = np.kron(a, eye) + np.kron(eye, a)
        extra = c2
    else:
        step = eye + h * a
        op = np.kron(step, step)
        extra = h * c2 + (0.5 * h * h * c2 * c2 if scheme == "milstein" else 0.0)
    for i in range(d):
        op[i * d + i, i * d + i] += extra[i]
    return op


def sde_ms_stable(sde: AffineSDE) -> bool:
    """Whether the SDE's second moments decay (2λ + μ² < 0 in one dimension)."""
    return bool(np.max(np.linalg.eigvals(_operator(sde, None, "")).real) < 0)


def ms_growth(sde: AffineSDE, h: float, scheme: str) -> float:
    """R(h): the factor by which one step multiplies the second moment (spectral radius)."""
    if scheme == "exact":
        return float(np.max(np.abs(np.linalg.eigvals(
            _expm_operator(sde, h)))))
    return float(np.max(np.abs(np.linalg.eigvals(_operator(sde, h, scheme)))))


def _expm_operator(sde: AffineSDE, h: float) -> np.ndarray:
    from scipy.linalg import expm

    return expm(h * _operator(sde, None, ""))


def largest_ms_stable_step(sde: AffineSDE, scheme: str) -> float:
    """The largest h with R(h) < 1 (inf for exact transitions of a stable SDE; 0 if the SDE
    is not mean-square stable)."""
    if not sde_ms_stable(sde):
        return 0.0
    if scheme == "exact":
        return math.inf
    if sde.dim == 1:
        lam = float(sde.drift_matrix[0, 0])
        mu2 = float(sde.noise[0, 2])
        denom = lam * lam + (0.5 * mu2 * mu2 if scheme == "milstein" else 0.0)
        return -(2 * lam + mu2) / denom
    hi = 1.0
    while ms_growth(sde, hi, scheme) < 1.0:
        hi *= 2.0
    lo = 0.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if ms_growth(sde, mid, scheme) < 1.0:
            lo = mid
        else:
            hi = mid
    return lo


def ms_stability_margin(sde: AffineSDE, h: float, scheme: str,
                        time_unit: str = "s") -> StabilityMargin:
    """R(h) against 1 (module docstring), with the largest stable step in the fix; passes
    with 'not applicable' when the SDE itself is not mean-square stable."""
    name = f"mean_square[{scheme}]"
    if not sde_ms_stable(sde):
        r = ms_growth(sde, h, scheme)
        return StabilityMargin(name, 0.0, 1.0, f"not applicable: the SDE itself is not "
                               f"mean-square stable (its second moment does not decay); "
                               f"R(h) = {r:.6g} per step, reported only")
    r = ms_growth(sde, h, scheme)
    h_max = largest_ms_stable_step(sde, scheme)
    formula = {"euler_maruyama": "|1 + hλ|² + hμ²", "milstein": "|1 + hλ|² + hμ² + ½h²μ⁴",
               "exact": "exp((2λ + μ²)h)"}[scheme]
    largest = "every step is stable" if not math.isfinite(h_max) else \
        f"largest stable step {_step(h_max, time_unit)}"
    detail = (f"R(h) = {formula} = {r:.6g} (stable below 1; margin {1.0 - r:.3g}); "
              f"{largest}, this step {_step(h, time_unit)}")
    # R(h) = 1 exactly is not stable: the limit sits just below 1
    return StabilityMargin(name, r, float(np.nextafter(1.0, 0.0)), detail,
                           f"use a time step below {_step(h_max, time_unit)} (the SDE is stable, "
                           f"the {scheme} step is not)")


def _step(value: float, unit: str) -> str:
    """A step exactly, and as a person says it when seconds are not its natural unit
    (``900 s (15 min)``)."""
    from medtransport.display import duration

    text = f"{value:.6g} {unit}"
    return f"{text} ({duration(value)})" if unit == "s" and abs(value) >= 60 else text
