"""Per-compartment tissue kinetics with the flows that close the tissue's books.

For the four models of :mod:`medtransport_contrast.kinetics`, per unit tissue volume (mM), on a
time grid on which the arterial plasma input is linear between samples:

- ``plasma``: vp·C_p,t — the AIF itself (extended Tofts, Patlak), the 2CXM capillary plasma,
  or 0 (Tofts neglects the plasma);
- ``ees``: ve·C_e (Patlak: the agent taken up, with no back-flux);
- ``inflow``/``outflow``: the cumulative flows (mM) each route carries, computed from the
  closed-form integrals of the solution (not from the state differences), so that
  Δ(plasma + ees) = inflow − outflow is a check of the solution:

  - Tofts, extended Tofts: in Ktrans·∫C_p, out kep·∫ve·C_e (+ for the extended model the
    intravascular term vp·(C_p(t) − C_p(t0)), which follows the AIF by assumption);
  - Patlak: in Ktrans·∫C_p (+ the intravascular term), no outflow;
  - 2CXM: in Fp·∫C_a (arterial), out Fp·∫C_p,t (venous).

An EES holding ``e0`` (mM per tissue volume) at t0 — agent left from an earlier injection —
washes out as e0·e^{−kep·t} (Tofts), or through the 2CXM's homogeneous solution.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from medtransport_contrast.kinetics import exchange_eigen, exp_convolution

__all__ = ["TissueSolution", "solve_tissue"]


@dataclass
class TissueSolution:
    plasma: np.ndarray
    ees: np.ndarray
    inflow: dict[str, np.ndarray] = field(default_factory=dict)
    outflow: dict[str, np.ndarray] = field(default_factory=dict)


def _trapezoid(t: np.ndarray, c: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(0.5 * np.diff(t) * (c[1:] + c[:-1]))])


def solve_tissue(model: str, t: np.ndarray, cp: np.ndarray, *, ktrans: float = 0.0,
                 ve: float = 0.0, vp: float = 0.0, fp: float = 0.0, ps: float = 0.0,
                 e0: float = 0.0) -> TissueSolution:
    """Parts and flows (module docstring); rates in 1/s, ``t`` in s, ``cp`` in mM."""
    t = np.asarray(t, dtype=float)
    cp = np.asarray(cp, dtype=float)
    tt = t - t[0]
    if model in ("tofts", "extended_tofts"):
        kep = ktrans / ve
        f, int_f = exp_convolution(kep, t, cp, integral=True)
        decay = np.exp(-kep * tt)
        ees = ktrans * f + e0 * decay
        # ∫ e0·e^{−kep t} dt = e0·(1 − e^{−kep t})/kep
        out = kep * ktrans * int_f + e0 * (1.0 - decay)
        sol = TissueSolution(np.zeros_like(t), ees, {"ees_uptake": ktrans * _trapezoid(t, cp)},
                             {"ees_washout": out})
        if model == "extended_tofts":
            sol.plasma = vp * cp
            sol.inflow["intravascular"] = vp * (cp - cp[0])
        return sol
    if model == "patlak":
        ees = ktrans * _trapezoid(t, cp) + e0
        return TissueSolution(vp * cp, ees, {"ees_uptake": ktrans * _trapezoid(t, cp),
                                             "intravascular": vp * (cp - cp[0])}, {})
    if model == "two_compartment_exchange":
        m11, m12, m21, m22, lam1, lam2 = (float(x) for x in exchange_eigen(
            np.float64(fp), np.float64(ps), np.float64(vp), np.float64(ve)))
        gap = lam1 - lam2
        f1, i1 = exp_convolution(-lam1, t, cp, integral=True)
        f2, i2 = exp_convolution(-lam2, t, cp, integral=True)
        wp1, wp2 = (m11 - lam2) / gap, -(m11 - lam1) / gap
        we1, we2 = m21 / gap, -m21 / gap
        plasma = fp * (wp1 * f1 + wp2 * f2)
        int_plasma = fp * (wp1 * i1 + wp2 * i2)
        ees = fp * (we1 * f1 + we2 * f2)
        if e0:
            # e^{Mt}·(0, e0): column 2 of Σ_i e^{λ_i t}(M − λ_j)/(λ_i − λ_j)
            g1, g2 = np.exp(lam1 * tt), np.exp(lam2 * tt)
            h1 = np.where(lam1 != 0, np.expm1(lam1 * tt) / np.where(lam1 != 0, lam1, 1), tt)
            h2 = np.where(lam2 != 0, np.expm1(lam2 * tt) / np.where(lam2 != 0, lam2, 1), tt)
            plasma = plasma + e0 * m12 * (g1 - g2) / gap
            int_plasma = int_plasma + e0 * m12 * (h1 - h2) / gap
            ees = ees + e0 * ((m22 - lam2) * g1 - (m22 - lam1) * g2) / gap
        return TissueSolution(plasma, ees, {"arterial": fp * _trapezoid(t, cp)},
                              {"venous": fp / vp * int_plasma})
    raise ValueError(f"unknown kinetic model {model!r}")
