"""Formal urea kinetic modelling: the urea space V and the generation G from three measured
urea concentrations (Sargent & Gotch 1980, in Drukker et al., *Replacement of Renal Function by
Dialysis*; Depner 1990, *Prescribing Hemodialysis: A Guide to Urea Modeling*, the "three-BUN"
method).

Measured: C₁ before a session, C₂ at its end, C₃ before the next one; known: the session
length t_d, the interval θ from the session's end to the next pre-dialysis sample, the
dialyser clearance K, the residual renal clearance K_r, the net fluid removed in the session
UF and the fluid gained until the next one (the interdialytic weight gain) W_g (either may be
negative; the space must stay above the lower bound). The single pool
with variable volume (:mod:`medtransport_dialysis.kinetics`)::

    d(V·C)/dt = G − (K + K_r)·C,   dV/dt = −UF/t_d           (session, V: V_post + UF → V_post)
    d(V·C)/dt = G − K_r·C,         dV/dt = W_g/θ             (interval, V: V_post → V_post + W_g)

is linear in (C, G), so over each piece C_end = α·C_start + β·G with α, β known in closed form
for a given V_post (:func:`medtransport_dialysis.adequacy.post_concentration`). The interval
then gives G for any V_post explicitly,

    G(V_post) = (C₃ − α_off·C₂)/β_off,

and the session leaves one equation in one unknown, f(V_post) = α_on·C₁ + β_on·G(V_post) − C₂
= 0, solved by bisection on ln V_post between 1 L and 1000 L to round-off (vectorised over
sessions or patients: 64 halvings). Reported: V_post, G, spKt/V = K·t_d/V_post (formal UKM)
and nPCR (Borah's PCR on G, normalised to V_post/0.58; :mod:`medtransport_dialysis.urea`).

Impossible measurements are refused naming the field: a post-dialysis urea not below the pre
(``post_urea``), one no urea space between the bounds gives with this clearance
(``post_urea``), a next pre-dialysis urea that needs a generation ≤ 0 (``next_pre_urea``).

Units: h, L, L/h, mmol/L, mmol/h of urea.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from medtransport_dialysis.adequacy import post_concentration
from medtransport_dialysis.urea import UREA_NITROGEN_MOLAR_MASS, npcr_from_generation

__all__ = ["VOLUME_BOUNDS", "FormalUKM", "MeasurementError", "formal_ukm"]

#: the urea spaces searched (L): from a newborn's to far beyond any adult's
VOLUME_BOUNDS = (1.0, 1000.0)
_HALVINGS = 64


class MeasurementError(ValueError):
    """Measurements no single-pool patient could produce; ``problems`` are (field, message)
    pairs, the field being one of the names of :func:`formal_ukm`'s arguments."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{w}: {m}" for w, m in problems))


@dataclass(frozen=True)
class FormalUKM:
    """The solution, arrays over sessions (or patients)."""

    volume_post: np.ndarray   # V at the session's end, L
    generation: np.ndarray    # G, mmol/h of urea
    sp_ktv: np.ndarray        # K·t_d/V_post
    npcr: np.ndarray          # g/kg/day
    residual: np.ndarray      # |f(V_post)|/C₂ at the solution (relative)

    @property
    def generation_mg_per_min(self) -> np.ndarray:
        """G as urea nitrogen, mg/min (the unit of the UKM literature)."""
        return self.generation * UREA_NITROGEN_MOLAR_MASS / 60.0


def _pieces(v_post: np.ndarray, hours: np.ndarray, interval: np.ndarray, k: np.ndarray,
            kr: np.ndarray, uf: np.ndarray, gain: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """α_on, β_on, α_off, β_off for the urea space ``v_post`` (module docstring)."""
    zero, one = np.zeros_like(v_post), np.ones_like(v_post)
    v_pre = v_post + uf
    a_on, a_off = -uf / hours, gain / interval
    on = (hours, v_pre, kr, a_on, k)
    off = (interval, v_post, kr, a_off, zero)
    return (post_concentration(one, on[0], on[1], zero, on[2], on[3], on[4]),
            post_concentration(zero, on[0], on[1], one, on[2], on[3], on[4]),
            post_concentration(one, off[0], off[1], zero, off[2], off[3], off[4]),
            post_concentration(zero, off[0], off[1], one, off[2], off[3], off[4]))


def _mismatch(v_post: np.ndarray, pre: np.ndarray, post: np.ndarray, next_pre: np.ndarray,
              args: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray]:
    """f(V_post) (mmol/L) and G(V_post) (mmol/h)."""
    a_on, b_on, a_off, b_off = _pieces(v_post, *args)
    g = (next_pre - a_off * post) / b_off
    return a_on * pre + b_on * g - post, g


def formal_ukm(pre: Any, post: Any, next_pre: Any, *, hours: Any, interval: Any,
               clearance: Any, residual_clearance: Any = 0.0, ultrafiltration: Any = 0.0,
               weight_gain: Any = 0.0) -> FormalUKM:
    """V_post and G of the single-pool variable-volume model from pre, post and next pre
    (mmol/L), with ``hours`` = t_d and ``interval`` = θ (h), ``clearance`` K and
    ``residual_clearance`` K_r (L/h), ``ultrafiltration`` UF and ``weight_gain`` W_g (L);
    arrays broadcast. Raises :class:`MeasurementError` naming the argument at fault."""
    arrays = np.broadcast_arrays(*(np.asarray(x, float) for x in (
        pre, post, next_pre, hours, interval, clearance, residual_clearance, ultrafiltration,
        weight_gain)))
    shape = arrays[0].shape
    c1, c2, c3, t, theta, k, kr, uf, gain = (a.reshape(-1) for a in arrays)
    problems: list[tuple[str, str]] = []
    names = ("pre", "post", "next_pre", "hours", "interval", "clearance")
    for name, x in zip(names, (c1, c2, c3, t, theta, k), strict=True):
        if not np.all(np.isfinite(x) & (x > 0)):
            problems.append((name, f"expected positive finite values, got {_worst(x)}"))
    if not np.all(np.isfinite(kr) & (kr >= 0)):
        problems.append(("residual_clearance", f"expected non-negative finite values, got "
                                               f"{_worst(kr, allow_zero=True)}"))
    # the fluid may go either way (a session without ultrafiltration gains the intake)
    for name, x in (("ultrafiltration", uf), ("weight_gain", gain)):
        if not np.all(np.isfinite(x)):
            problems.append((name, f"expected finite values, got {x[~np.isfinite(x)][0]}"))
    if problems:
        raise MeasurementError(problems)
    if np.any(c2 >= c1):
        i = int(np.argmax(c2 >= c1))
        raise MeasurementError([("post", f"the post-dialysis urea {c2[i]:.6g} mmol/L is not "
                                         f"below the pre-dialysis {c1[i]:.6g} mmol/L "
                                         f"(entry {i})")])
    args = (t, theta, k, kr, uf, gain)
    # the space must stay above the lower bound at both ends of both pieces
    lo = np.log(VOLUME_BOUNDS[0] + np.maximum(0.0, np.maximum(-uf, -gain)))
    hi = np.full(c1.shape, np.log(VOLUME_BOUNDS[1]))
    with np.errstate(all="ignore"):
        f_lo, _ = _mismatch(np.exp(lo), c1, c2, c3, args)
        f_hi, _ = _mismatch(np.exp(hi), c1, c2, c3, args)
    # f rises with V (a larger space is cleared less); a root needs f(lo) ≤ 0 ≤ f(hi)
    if np.any(lo >= hi):
        i = int(np.argmax(lo >= hi))
        name = "weight_gain" if gain[i] < uf[i] else "ultrafiltration"
        raise MeasurementError([(name, f"a fluid change of {uf[i]:.4g} L in the "
                                                    f"session and {gain[i]:.4g} L after it "
                                                    "leaves no urea space in bounds")])
    if np.any(~(f_lo <= 0)):
        i = int(np.argmax(~(f_lo <= 0)))
        raise MeasurementError([("post", f"falls further than a clearance of {k[i]:.4g} L/h "
                                         f"in {t[i]:.4g} h can take a urea space of "
                                         f"{VOLUME_BOUNDS[0]:g} L (entry {i}): check the "
                                         "clearance, the session length or the samples")])
    if np.any(~(f_hi >= 0)):
        i = int(np.argmax(~(f_hi >= 0)))
        raise MeasurementError([("post", f"falls less than a clearance of {k[i]:.4g} L/h in "
                                         f"{t[i]:.4g} h would take even {VOLUME_BOUNDS[1]:g} L "
                                         f"of urea space (entry {i}): check the clearance, "
                                         "the session length or the samples")])
    with np.errstate(all="ignore"):
        for _ in range(_HALVINGS):
            mid = 0.5 * (lo + hi)
            f_mid, _ = _mismatch(np.exp(mid), c1, c2, c3, args)
            up = f_mid < 0
            lo = np.where(up, mid, lo)
            hi = np.where(up, hi, mid)
        v = np.exp(0.5 * (lo + hi))
        f, g = _mismatch(v, c1, c2, c3, args)
    if np.any(~(g > 0)):
        i = int(np.argmax(~(g > 0)))
        raise MeasurementError([("next_pre", f"{c3[i]:.6g} mmol/L needs a urea generation "
                                             f"≤ 0 after a post-dialysis {c2[i]:.6g} mmol/L "
                                             f"(entry {i}): the next pre-dialysis urea must "
                                             "rise above what residual clearance and the "
                                             "fluid gained alone would leave")])
    return FormalUKM(volume_post=v.reshape(shape), generation=g.reshape(shape),
                     sp_ktv=(k * t / v).reshape(shape),
                     npcr=npcr_from_generation(g, v).reshape(shape),
                     residual=(np.abs(f) / c2).reshape(shape))


def _worst(x: np.ndarray, *, allow_zero: bool = False) -> str:
    bad = x[~(np.isfinite(x) & ((x >= 0) if allow_zero else (x > 0)))]
    return f"{bad[0]:.6g}" if bad.size else f"{x.min():.6g}"
