"""Dialysis adequacy: the model's own (formal urea kinetic modelling) and the published bedside
formulas it is checked against.

- URR = 1 − C_post/C_pre.
- Formal single-pool UKM: spKt/V = K·t/V_post, K being the clearance for which the single-pool,
  variable-volume model (:mod:`medtransport_dialysis.kinetics`), with the patient's urea
  generation G, residual clearance K_r and fluid removal, takes C_pre to C_post in t
  (Sargent & Gotch 1980, in Drukker et al., *Replacement of Renal Function by Dialysis*; Depner
  1990, *Prescribing Hemodialysis: A Guide to Urea Modeling*). eKt/V is the same inversion with
  the equilibrated post-dialysis concentration.
- Second-generation Daugirdas (Daugirdas 1993, J Am Soc Nephrol 4:1205), t in h, UF in L,
  W the post-dialysis weight in kg, R = C_post/C_pre::

      spKt/V = −ln(R − 0.008·t) + (4 − 3.5·R)·UF/W

- Daugirdas–Schneditz rate equation (Daugirdas & Schneditz 1995, ASAIO J 41:M719; the
  Tattersall "rate" equation family), t in h::

      eKt/V = spKt/V − 0.6·spKt/V/t + 0.03      (arterial access)
      eKt/V = spKt/V − 0.47·spKt/V/t + 0.02     (venous access)

- Standard Kt/V. The model's is Gotch's definition, the continuous clearance that would hold
  the mean pre-dialysis (peak) concentration: stdK = G/mean(C_pre), stdKt/V = stdK·1 week/V
  (Gotch 1998, Nephrol Dial Transplant 13 Suppl 6:10). The formula checked against is
  Leypoldt's (Leypoldt, Jaber & Zimmerman 2004, Semin Dial 17:142), t in min, N sessions
  a week::

      stdKt/V = [10080·(1 − e^{−eKt/V})/t] / [(1 − e^{−eKt/V})/eKt/V + 10080/(N·t) − 1]

- KDOQI 2015 (Am J Kidney Dis 66:884): target spKt/V 1.4 per thrice-weekly session, minimum
  delivered 1.2; URR ≥ 65 %.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from medtransport_dialysis.dialyser import phi1
from medtransport_dialysis.kinetics import log_ratio

__all__ = ["KDOQI_MINIMUM_SP_KTV", "KDOQI_MINIMUM_URR", "KDOQI_TARGET_SP_KTV",
           "daugirdas_sp_ktv", "formal_ktv", "leypoldt_std_ktv", "post_concentration",
           "rate_equation_ektv", "urr"]

KDOQI_MINIMUM_SP_KTV = 1.2
KDOQI_TARGET_SP_KTV = 1.4
KDOQI_MINIMUM_URR = 0.65


def urr(pre: Any, post: Any) -> np.ndarray:
    return 1.0 - np.asarray(post, float) / np.asarray(pre, float)


def daugirdas_sp_ktv(pre: Any, post: Any, hours: Any, ultrafiltration_l: Any,
                     post_weight_kg: Any) -> np.ndarray:
    r = np.asarray(post, float) / np.asarray(pre, float)
    return (-np.log(r - 0.008 * np.asarray(hours, float))
            + (4.0 - 3.5 * r) * np.asarray(ultrafiltration_l, float)
            / np.asarray(post_weight_kg, float))


def rate_equation_ektv(sp_ktv: Any, hours: Any,
                       access: Literal["arterial", "venous"] = "arterial") -> np.ndarray:
    sp, t = np.asarray(sp_ktv, float), np.asarray(hours, float)
    if access == "arterial":
        return sp - 0.6 * sp / t + 0.03
    if access == "venous":
        return sp - 0.47 * sp / t + 0.02
    raise ValueError(f"access is 'arterial' or 'venous', got {access!r}")


def leypoldt_std_ktv(e_ktv: Any, minutes: Any, sessions_per_week: Any) -> np.ndarray:
    e, t, n = (np.asarray(x, float) for x in (e_ktv, minutes, sessions_per_week))
    x = -np.expm1(-e)
    return (10080.0 * x / t) / (x / e + 10080.0 / (n * t) - 1.0)


def formal_ktv(pre: Any, post: Any, hours: Any, post_volume_l: Any, *,
               generation: Any, residual_clearance: Any = 0.0, volume_rate: Any = 0.0,
               iterations: int = 6) -> np.ndarray:
    """Formal single-pool UKM: K·t/V_post for the K that takes ``pre`` to ``post`` (mmol/L) in
    ``hours`` with generation (mmol/h), K_r (L/h) and dV/dt = ``volume_rate`` (L/h) during the
    session; arrays over sessions or patients.

    Newton's method on ln C_post(K) from the fixed-volume guess K = V·ln(pre/post)/t, with the
    exact solution (:mod:`medtransport_dialysis.kinetics`) and a forward-difference slope;
    ln C_post is nearly linear in K, so a few steps reach round-off. Sessions whose post
    concentration no clearance can reach (at or above the no-dialysis value) give NaN."""
    pre, post, t, v_post, g, kr, a = np.broadcast_arrays(*(np.asarray(x, float) for x in (
        pre, post, hours, post_volume_l, generation, residual_clearance, volume_rate)))
    shape = pre.shape
    pre, post, t, v_post, g, kr, a = (x.reshape(-1) for x in (pre, post, t, v_post, g, kr, a))
    v_pre = v_post - a * t
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        k = np.maximum(v_post * np.log(pre / post) / t, 1e-6)
        target = np.log(post)
        for _ in range(iterations):
            mid = np.log(post_concentration(pre, t, v_pre, g, kr, a, k))
            h = 1e-7 * k
            slope = (np.log(post_concentration(pre, t, v_pre, g, kr, a, k + h)) - mid) / h
            k = np.maximum(k - (mid - target) / slope, 0.5 * k)
    return (k * t / v_post).reshape(shape)


def post_concentration(pre: np.ndarray, t: np.ndarray, v_pre: np.ndarray, g: np.ndarray,
                        kr: np.ndarray, a: np.ndarray, k: np.ndarray) -> np.ndarray:
    """C at the end of one session of the single-pool model (the closed form of
    :mod:`medtransport_dialysis.kinetics` for one piece, the amount only)."""
    m = pre * v_pre
    tau = t / v_pre * log_ratio(a * t / v_pre)
    total = k + kr
    e = np.exp(-total * tau)
    z = (a + total) * tau
    big = np.abs(z) > 1.0
    convolved = np.where(big, (np.exp(a * tau) - e) / np.where(big, a + total, 1.0),
                         e * tau * phi1(z))
    return (m * e + g * v_pre * convolved) / (v_pre + a * t)
