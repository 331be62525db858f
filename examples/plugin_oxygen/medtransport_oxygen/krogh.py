"""Closed-form steady oxygen profiles in a Krogh tissue cylinder, for validation.

Tissue fills the annulus ``r_c ≤ r ≤ R`` around a capillary of radius ``r_c``; the capillary
wall is held at oxygen tension ``P_c`` and no oxygen crosses the outer radius ``R`` (the
neighbouring cylinders are mirror images). With Krogh's diffusion constant ``K = D·α``
(diffusivity × solubility) the steady balance is

    K · (1/r) · d/dr (r · dP/dr) = M(P),      P(r_c) = P_c,   dP/dr(R) = 0.

Zero-order consumption, ``M = M0`` (Krogh 1919, with Erlang's formula; see Krogh A., J Physiol
52:409–415, 1919, and the review by Popel A.S., Crit Rev Biomed Eng 17:257–321, 1989, eq. 4):

    P(r) = P_c + M0/(4K) · (r² − r_c²) − M0·R²/(2K) · ln(r / r_c)

First-order consumption, ``M = k·P`` (the Michaelis–Menten law far below its half-saturation
tension, ``k = M0/P50``): with ``λ = √(k/K)`` the modified Bessel functions solve it,

    P(r) = A·I0(λr) + B·K0(λr),   B = A·I1(λR)/K1(λR),   A = P_c / (I0(λr_c) + B/A·K0(λr_c)).

Arguments and results are plain floats in SI units, tensions in mmHg.
"""

from __future__ import annotations

import numpy as np
from scipy.special import i0, i1, k0, k1

__all__ = ["first_order_profile", "krogh_erlang_profile"]


def krogh_erlang_profile(r: np.ndarray, capillary_radius: float, tissue_radius: float,
                         capillary_tension: float, consumption: float,
                         krogh_constant: float) -> np.ndarray:
    """Krogh–Erlang steady tension (mmHg) at radii ``r`` (m) for zero-order consumption
    ``consumption`` (mol/(m³·s)) and ``krogh_constant`` K = D·α (mol/(m·s·mmHg))."""
    r = np.asarray(r, dtype=float)
    rc, big_r, m, k = capillary_radius, tissue_radius, consumption, krogh_constant
    return capillary_tension + m / (4 * k) * (r ** 2 - rc ** 2) \
        - m * big_r ** 2 / (2 * k) * np.log(r / rc)


def first_order_profile(r: np.ndarray, capillary_radius: float, tissue_radius: float,
                        capillary_tension: float, rate_constant: float,
                        krogh_constant: float) -> np.ndarray:
    """Steady tension (mmHg) for first-order consumption ``rate_constant``·P
    (mol/(m³·s·mmHg)), by modified Bessel functions."""
    r = np.asarray(r, dtype=float)
    lam = np.sqrt(rate_constant / krogh_constant)
    ratio = i1(lam * tissue_radius) / k1(lam * tissue_radius)
    a = capillary_tension / (i0(lam * capillary_radius) + ratio * k0(lam * capillary_radius))
    return a * (i0(lam * r) + ratio * k0(lam * r))
