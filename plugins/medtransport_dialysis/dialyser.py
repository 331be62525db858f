"""The dialyser: urea (or drug) clearance from KoA and the flows — one implementation used by
every model of the plugin.

Diffusion, counter-current (Michaels 1966, Trans Am Soc Artif Intern Organs 12:387)::

    K_D = Qb·(e^z − 1)/(e^z − Qb/Qd),      z = KoA·(1/Qb − 1/Qd)

written here as K_D = Qb·φ(z)/(φ(z) + Qb/KoA) with φ(z) = (e^z − 1)/z, which is the same
expression, stays finite at Qb = Qd (K_D = Qb·KoA/(KoA + Qb)) and has the limits

    Qd → ∞:   K_D = Qb·(1 − e^{−KoA/Qb})          KoA → ∞:   K_D = min(Qb, Qd).

Ultrafiltration adds convection (Jaffrin, Gupta & Malbrancq 1981, J Biomech Eng 103:261;
with a sieving coefficient S for solutes the membrane partly retains)::

    K = K_D + S·Qf·(1 − K_D/Qb)

so K = K_D at Qf = 0 and K = Qb when diffusion already clears all the blood. Haemodiafiltration
filters Qf = Q_UF + Q_sub (net ultrafiltration plus the substitution fluid given back):
post-dilution uses the formula as it stands; pre-dilution dilutes the blood before the filter,
so the filter sees Qb + Q_sub and the patient's clearance is that filter's clearance × Qb/(Qb +
Q_sub) (the inlet concentration is diluted by that factor).

Access recirculation: a fraction R of the blood entering the dialyser is blood that has just
left it. From the mass balance at the needle, C_in = (1 − R)·C_a + R·C_in·(1 − K/Qb), so the
clearance of the patient's (arterial) blood is::

    K_eff = K·(1 − R)/(1 − R + R·K/Qb)

Flows are plain floats or arrays in one unit (the functions are unit-agnostic); ``clearance``
takes pint quantities and returns one.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pint

from medtransport.units import Q_

__all__ = ["clearance", "convective", "michaels", "phi1", "recirculated", "session_clearance"]


def phi1(z: Any) -> np.ndarray:
    """φ(z) = (e^z − 1)/z with φ(0) = 1, accurate for every z (expm1 where it is not tiny)."""
    z = np.asarray(z, dtype=float)
    small = np.abs(z) < 1e-8
    safe = np.where(small, 1.0, z)
    with np.errstate(over="ignore"):
        return np.where(small, 1.0 + z / 2.0, np.expm1(safe) / safe)


def michaels(koa: Any, blood_flow: Any, dialysate_flow: Any) -> np.ndarray:
    """Diffusive clearance of a counter-current dialyser (Michaels); ``dialysate_flow`` may be
    ``inf`` and ``koa`` may be ``inf`` (the limits)."""
    koa, qb, qd = (np.asarray(x, dtype=float) for x in (koa, blood_flow, dialysate_flow))
    if np.any(qb <= 0) or np.any(qd <= 0) or np.any(koa < 0):
        raise ValueError("blood and dialysate flows must be positive and KoA non-negative")
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        z = koa * (1.0 / qb - 1.0 / qd)
        phi = phi1(z)
        k = qb * phi / (phi + qb / koa)
        # KoA → ∞ (z → ±∞): the flow-limited clearance min(Qb, Qd)
        k = np.where(np.isinf(koa), np.minimum(qb, qd), k)
        # φ overflows only for z ≳ 700, where K_D = Qb to double precision
        k = np.where(np.isinf(phi) & np.isfinite(koa), qb, k)
        k = np.where(koa == 0, 0.0, k)
    return k


def convective(diffusive: Any, blood_flow: Any, filtration: Any, sieving: Any = 1.0
               ) -> np.ndarray:
    """K = K_D + S·Qf·(1 − K_D/Qb): the diffusive clearance with filtration flow Qf."""
    kd, qb, qf, s = (np.asarray(x, dtype=float) for x in (diffusive, blood_flow, filtration,
                                                         sieving))
    if np.any(qf < 0) or np.any(qf >= qb):
        raise ValueError("the filtration flow must be ≥ 0 and below the blood flow")
    return kd + s * qf * (1.0 - kd / qb)


def recirculated(k: Any, blood_flow: Any, recirculation: Any) -> np.ndarray:
    """K_eff = K·(1 − R)/(1 − R + R·K/Qb) for access recirculation R in [0, 1)."""
    k, qb, r = (np.asarray(x, dtype=float) for x in (k, blood_flow, recirculation))
    if np.any(r < 0) or np.any(r >= 1):
        raise ValueError("the recirculation fraction must be in [0, 1)")
    return k * (1.0 - r) / (1.0 - r + r * k / qb)


def clearance(koa: Any, blood_flow: Any, dialysate_flow: Any, *, ultrafiltration: Any = 0.0,
              substitution: Any = 0.0, dilution: Literal["post", "pre"] = "post",
              recirculation: Any = 0.0, sieving: Any = 1.0) -> np.ndarray:
    """The patient's clearance through the dialyser: Michaels diffusion, convection from the
    filtration flow (net ultrafiltration + substitution), pre- or post-dilution
    haemodiafiltration and access recirculation, all flows in one unit."""
    qb = np.asarray(blood_flow, dtype=float)
    qs = np.asarray(substitution, dtype=float)
    qf = np.asarray(ultrafiltration, dtype=float) + qs
    if dilution == "pre":
        inlet = qb + qs
        k = convective(michaels(koa, inlet, dialysate_flow), inlet, qf, sieving) * qb / inlet
    elif dilution == "post":
        k = convective(michaels(koa, qb, dialysate_flow), qb, qf, sieving)
    else:
        raise ValueError(f"dilution is 'pre' or 'post', got {dilution!r}")
    return recirculated(k, qb, recirculation)


def session_clearance(koa: pint.Quantity, blood_flow: pint.Quantity,
                      dialysate_flow: pint.Quantity, *,
                      ultrafiltration: pint.Quantity | None = None,
                      substitution: pint.Quantity | None = None,
                      dilution: Literal["post", "pre"] = "post", recirculation: float = 0.0,
                      sieving: float = 1.0) -> pint.Quantity:
    """:func:`clearance` for pint quantities (volume per time); returns mL/min."""
    unit = "mL/min"

    def mag(q: pint.Quantity | None) -> Any:
        return 0.0 if q is None else q.m_as(unit)

    return Q_(clearance(mag(koa), mag(blood_flow), mag(dialysate_flow),
                        ultrafiltration=mag(ultrafiltration), substitution=mag(substitution),
                        dilution=dilution, recirculation=recirculation, sieving=sieving), unit)
