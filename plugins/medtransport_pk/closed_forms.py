"""Exact reference solutions of the standard pharmacokinetic models (plain float64, no units).

These closed forms are the yardsticks the PK model's numerics are checked against. Times are
relative to the dose (concentrations are 0 before it, so doses can be superposed); every
argument is a plain number in one consistent unit system (e.g. h, mg, L, 1/h, L/h).

One compartment (Gibaldi & Perrier, *Pharmacokinetics*, 2nd ed., 1982, ch. 1–2; Rowland &
Tozer, *Clinical Pharmacokinetics and Pharmacodynamics*, 4th ed., ch. 3 and 7):

- IV bolus:  C(t) = D/V · e^{−kt}
- zero-order infusion at rate R₀ for a duration T:
  C(t) = R₀/(kV) · (1 − e^{−kt})                       for 0 ≤ t ≤ T,
  C(t) = R₀/(kV) · (1 − e^{−kT}) · e^{−k(t−T)}        for t > T
- first-order absorption (Bateman function), s = t − t_lag > 0:
  C(t) = F·D·kₐ/(V(kₐ − k)) · (e^{−ks} − e^{−kₐs}),
  with the limit kₐ → k:  C(t) = F·D·k·s·e^{−ks}/V.

Two compartments, IV bolus (Gibaldi & Perrier ch. 2), micro-constants k₁₀ = CL/V₁,
k₁₂ = Q/V₁, k₂₁ = Q/V₂; α > β are the roots of λ² − (k₁₀ + k₁₂ + k₂₁)λ + k₁₀k₂₁ = 0:

  C(t) = D/V₁ · [(α − k₂₁)/(α − β) · e^{−αt} + (k₂₁ − β)/(α − β) · e^{−βt}]

Michaelis–Menten elimination after a bolus, dA/dt = −V_max·C/(K_m + C), C = A/V, C(0) = C₀
(Beal 1982, J. Pharmacokinet. Biopharm. 10:109; Schnell & Mendoza 1997, J. Theor. Biol.
187:207; Tang & Xiao 2007, J. Pharmacokinet. Pharmacodyn. 34:807):

  C(t) = K_m · W₀((C₀/K_m) · exp((C₀ − (V_max/V)·t)/K_m))

with W₀ the principal branch of Lambert's W. Its AUC is C₀(K_m + C₀/2)/(V_max/V).

For a linear model, doses superpose: C(t) = Σᵢ C₁(t − tᵢ) (Gibaldi & Perrier ch. 3).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import lambertw

__all__ = [
    "bateman",
    "bateman_equal_rates",
    "infusion_one_compartment",
    "iv_bolus_one_compartment",
    "iv_bolus_two_compartment",
    "michaelis_menten_bolus",
    "superpose",
    "two_compartment_rates",
]

FloatArray = NDArray[np.float64]

# Below this |x|, (1 − e^{−x})/x is taken from its Taylor series: the neglected term x⁴/120 is
# < 1e-22 relative there, and expm1 is accurate to an ulp above it, so the switch is seamless.
_TAYLOR_BELOW = 1e-5
# Above this log-argument e^y would overflow float64 (log of the largest double is 709.78).
_LOG_OVERFLOW = 700.0


def _times(t: ArrayLike) -> FloatArray:
    return np.asarray(t, dtype=np.float64)


def _one_minus_exp_over_x(x: FloatArray) -> FloatArray:
    """(1 − e^{−x})/x for x ≥ 0, 1 at x = 0, without the 0/0 or the cancellation near 0."""
    x = np.asarray(x, dtype=np.float64)
    small = np.abs(x) < _TAYLOR_BELOW
    safe = np.where(small, 1.0, x)  # placeholder where the series is used
    series = 1.0 - x / 2.0 + x * x / 6.0 - x * x * x / 24.0
    return np.where(small, series, -np.expm1(-safe) / safe)


def iv_bolus_one_compartment(t: ArrayLike, dose: float, volume: float, k: float) -> FloatArray:
    """C(t) = D/V·e^{−kt} for t ≥ 0, 0 before the dose (Gibaldi & Perrier eq. 1.12)."""
    t = _times(t)
    after = t >= 0.0
    return np.where(after, dose / volume * np.exp(-k * np.where(after, t, 0.0)), 0.0)


def infusion_one_compartment(t: ArrayLike, rate: float, duration: float, volume: float,
                             k: float) -> FloatArray:
    """Zero-order infusion of ``rate`` (amount/time) for ``duration``, one compartment.

    During: R₀/(kV)(1 − e^{−kt}); after: R₀/(kV)(1 − e^{−kT})e^{−k(t−T)} (Gibaldi & Perrier
    eqs. 2.8 and 2.17). expm1 keeps the early-time rise accurate when kt ≪ 1.
    """
    t = _times(t)
    plateau = rate / (k * volume)
    during = np.clip(t, 0.0, duration)
    rise = -np.expm1(-k * during)
    decay = np.exp(-k * np.maximum(t - duration, 0.0))
    return np.where(t >= 0.0, plateau * rise * decay, 0.0)


def bateman(t: ArrayLike, dose: float, bioavailability: float, ka: float, k: float,
            volume: float, lag: float = 0.0) -> FloatArray:
    """Oral one-compartment concentration (Bateman function), numerically stable for kₐ ≈ k.

    With s = t − t_lag, m = min(kₐ, k) and d = |kₐ − k| ≥ 0 the textbook form is rewritten as

        (e^{−ks} − e^{−kₐs})/(kₐ − k) = s · e^{−ms} · φ(d·s),   φ(x) = (1 − e^{−x})/x,

    which is exact algebra (for either sign of kₐ − k) and has no difference of nearly equal
    exponentials and no overflowing e^{+ds} in the flip-flop case kₐ < k. φ is evaluated with
    expm1, and for |x| < 1e-5 by its Taylor series 1 − x/2 + x²/6 − x³/24 (both accurate to an
    ulp there); φ(0) = 1 reproduces the limit F·D·k·s·e^{−ks}/V exactly, so there is no
    separate branch for kₐ = k and the function is continuous across the switch.
    """
    s = _times(t) - lag
    after = s > 0.0
    s = np.where(after, s, 0.0)
    slow = min(ka, k)
    gap = abs(ka - k)
    shape = s * np.exp(-slow * s) * _one_minus_exp_over_x(gap * s)
    return np.where(after, bioavailability * dose * ka / volume * shape, 0.0)


def bateman_equal_rates(t: ArrayLike, dose: float, bioavailability: float, k: float,
                        volume: float, lag: float = 0.0) -> FloatArray:
    """The kₐ = k limit of the Bateman function: C = F·D·k·s·e^{−ks}/V, s = t − t_lag > 0
    (Gibaldi & Perrier, ch. 1, the case kₐ = K)."""
    s = _times(t) - lag
    after = s > 0.0
    s = np.where(after, s, 0.0)
    return np.where(after, bioavailability * dose * k * s * np.exp(-k * s) / volume, 0.0)


def two_compartment_rates(clearance: float, v1: float, q: float, v2: float
                          ) -> tuple[float, float, float, float]:
    """α, β and the bolus coefficients a = (α − k₂₁)/(α − β), b = (k₂₁ − β)/(α − β).

    Cancellation-free: the discriminant (k₁₀+k₁₂+k₂₁)² − 4k₁₀k₂₁ is rewritten as the sum of
    non-negative terms (k₁₀ + k₁₂ − k₂₁)² + 4k₁₂k₂₁; α takes the + root (no cancellation) and
    β = k₁₀k₂₁/α by Vieta. Of α − k₂₁ = (g + √Δ)/2 and k₂₁ − β = (√Δ − g)/2 (g = k₁₀ + k₁₂ − k₂₁)
    the one without cancellation is computed directly and the other from their product
    (α − k₂₁)(k₂₁ − β) = k₁₂k₂₁.
    """
    k10, k12, k21 = clearance / v1, q / v1, q / v2
    g = k10 + k12 - k21
    root = float(np.sqrt(g * g + 4.0 * k12 * k21))  # α − β
    alpha = 0.5 * (k10 + k12 + k21 + root)
    beta = k10 * k21 / alpha
    if g >= 0.0:
        a_num = 0.5 * (g + root)
        b_num = k12 * k21 / a_num if a_num > 0.0 else 0.0
    else:
        b_num = 0.5 * (root - g)
        a_num = k12 * k21 / b_num
    return alpha, beta, a_num / root, b_num / root


def iv_bolus_two_compartment(t: ArrayLike, dose: float, clearance: float, v1: float, q: float,
                             v2: float) -> FloatArray:
    """Central concentration after an IV bolus into a two-compartment model:
    C = D/V₁·(a·e^{−αt} + b·e^{−βt}) (Gibaldi & Perrier eq. 2.27); see
    :func:`two_compartment_rates` for how α, β, a, b avoid cancellation."""
    t = _times(t)
    alpha, beta, a, b = two_compartment_rates(clearance, v1, q, v2)
    after = t >= 0.0
    tt = np.where(after, t, 0.0)
    return np.where(after, dose / v1 * (a * np.exp(-alpha * tt) + b * np.exp(-beta * tt)), 0.0)


def _lambertw_of_exp(y: FloatArray) -> FloatArray:
    """W₀(e^y) for real y, without forming e^y where it would overflow.

    Below y = 700 scipy's principal-branch lambertw of e^y is used (real part). Above, w solves
    w + ln w = y; Newton's method from the asymptotic start w = y − ln y converges in a few
    steps (the error at the start is O(ln y / y), and Newton squares it).
    """
    y = np.asarray(y, dtype=np.float64)
    flat = y.reshape(-1)
    big = flat > _LOG_OVERFLOW
    w = np.array(np.real(lambertw(np.exp(np.where(big, 0.0, flat)))), dtype=np.float64)
    if np.any(big):
        yb = flat[big]
        wb = yb - np.log(yb)
        for _ in range(6):
            wb = wb - (wb + np.log(wb) - yb) * wb / (wb + 1.0)
        w[big] = wb
    return w.reshape(y.shape)


def michaelis_menten_bolus(t: ArrayLike, dose: float, volume: float, vmax: float,
                           km: float) -> FloatArray:
    """Concentration after a bolus with Michaelis–Menten elimination dA/dt = −V_max·C/(K_m + C).

    C(t) = K_m·W₀(e^y), y = ln(C₀/K_m) + (C₀ − (V_max/V)·t)/K_m (Beal 1982; Schnell & Mendoza
    1997). The argument is kept in log form so that a large C₀/K_m (where e^{C₀/K_m} overflows)
    still gives a finite answer; see :func:`_lambertw_of_exp`. V_max is an amount per time.
    """
    t = _times(t)
    c0 = dose / volume
    after = t >= 0.0
    y = np.log(c0 / km) + (c0 - vmax / volume * np.where(after, t, 0.0)) / km
    return np.where(after, km * _lambertw_of_exp(y), 0.0)


def superpose(single_dose_fn: Callable[..., FloatArray], t: ArrayLike,
              dose_times: Iterable[float], **kwargs: Any) -> FloatArray:
    """Σᵢ C₁(t − tᵢ) over the dose times: linear superposition of identical single doses.

    Valid only for linear models (not :func:`michaelis_menten_bolus`). ``single_dose_fn`` must
    return 0 before its dose, as every function of this module does.
    """
    t = _times(t)
    total = np.zeros_like(t)
    for td in dose_times:
        total = total + single_dose_fn(t - float(td), **kwargs)
    return total
