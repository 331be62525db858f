"""Least-squares fits of the tracer-kinetic models to a measured tissue curve.

Minimises Σ_k (C_t,model(t_k; θ) − C_t,measured(t_k))² with ``scipy.optimize.least_squares``
(trust-region reflective, bounds), the forward models of :mod:`medtransport_contrast.kinetics`.
Parameters are fitted in the units the DCE literature reports — Ktrans and PS in 1/min, Fp in
mL/min/100 mL, volume fractions as fractions — with the starting values and bounds of the OSIPI
DCE code collection's tests (Ktrans/PS 0.6 /min in [0, 5]; ve 0.2 and vp 0.01 in [0, 1]; Fp 20
mL/100 mL/min in [0, 200]; delay 0 s in [−10, 10] s). Where one start can end in a local
minimum (2CXM), ``multistart`` tries a few further starts on a coarse grid and keeps the lowest
cost; the OSIPI sets need only the one start.

An arterial delay, when fitted, shifts the plasma input by linear interpolation (0 before).
Results carry units.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pint
from scipy.optimize import least_squares

from medtransport.units import Q_
from medtransport_contrast import kinetics as kin

__all__ = ["FitResult", "fit"]

# name, unit, start, lower, upper (OSIPI DCE test conventions)
_PARAMS = {
    "ktrans": ("1/min", 0.6, 0.0, 5.0),
    "permeability_surface": ("1/min", 0.6, 0.0, 5.0),
    "ve": ("", 0.2, 0.0, 1.0),
    "vp": ("", 0.01, 0.0, 1.0),
    "plasma_flow": ("mL/min/dL", 20.0, 0.0, 200.0),
    "delay": ("s", 0.0, -10.0, 10.0),
}
#: Further 2CXM starts (Fp in mL/min/100 mL × PS in 1/min) tried with ``multistart``.
FP_STARTS: tuple[float, ...] = (10.0, 40.0, 100.0)
PS_STARTS: tuple[float, ...] = (0.05, 0.2)
_MODELS = {
    "tofts": ("ktrans", "ve"),
    "extended_tofts": ("ktrans", "ve", "vp"),
    "patlak": ("ktrans", "vp"),
    "two_compartment_exchange": ("plasma_flow", "permeability_surface", "vp", "ve"),
}


@dataclass
class FitResult:
    """Fitted parameters (quantities), the RMS residual (mM) and whether the optimiser
    converged."""

    model: str
    parameters: dict[str, pint.Quantity]
    rms: float
    success: bool

    def value(self, name: str, unit: str) -> float:
        return float(self.parameters[name].m_as(unit))


def _forward(model: str, t: np.ndarray, cp: np.ndarray, names: tuple[str, ...],
             x: np.ndarray) -> np.ndarray:
    p = dict(zip(names, x, strict=True))
    if "delay" in p:
        cp = kin.shift(t, cp, float(p["delay"]))
    per_s = 1.0 / 60.0
    if model == "tofts":
        return kin.tofts(t, cp, p["ktrans"] * per_s, max(p["ve"], 1e-6))
    if model == "extended_tofts":
        return kin.extended_tofts(t, cp, p["ktrans"] * per_s, max(p["ve"], 1e-6), p["vp"])
    if model == "patlak":
        return kin.patlak(t, cp, p["ktrans"] * per_s, p["vp"])
    return kin.two_compartment_exchange(t, cp, p["plasma_flow"] / 100.0 * per_s,
                                        p["permeability_surface"] * per_s,
                                        max(p["vp"], 1e-6), max(p["ve"], 1e-6))


def fit(model: str, times: np.ndarray, tissue: np.ndarray, plasma: np.ndarray, *,
        fit_delay: bool = False, multistart: bool = False) -> FitResult:
    """Fit ``model`` to the tissue concentration curve ``tissue`` (mM) sampled at ``times``
    (s) with the plasma input ``plasma`` (mM) on the same grid. ``multistart`` adds the 2CXM
    starts of :data:`FP_STARTS` × :data:`PS_STARTS` and keeps the lowest cost."""
    if model not in _MODELS:
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(_MODELS)}")
    names = _MODELS[model] + (("delay",) if fit_delay else ())
    t = np.asarray(times, dtype=float)
    ct = np.asarray(tissue, dtype=float)
    cp = np.asarray(plasma, dtype=float)
    lo = np.array([_PARAMS[n][2] for n in names])
    hi = np.array([_PARAMS[n][3] for n in names])
    starts = [np.array([_PARAMS[n][1] for n in names])]
    if model == "two_compartment_exchange" and multistart:
        for fp, ps in itertools.product(FP_STARTS, PS_STARTS):
            s = starts[0].copy()
            s[0], s[1] = fp, ps
            starts.append(s)

    def residual(x: np.ndarray) -> np.ndarray:
        return _forward(model, t, cp, names, x) - ct

    best = None
    for x0 in starts:
        res = least_squares(residual, x0, bounds=(lo, hi), x_scale="jac", xtol=1e-10,
                            ftol=1e-12, gtol=1e-12, max_nfev=2000)
        if best is None or res.cost < best.cost:
            best = res
    assert best is not None
    params = {n: Q_(float(v), _PARAMS[n][0]) for n, v in zip(names, best.x, strict=True)}
    if "plasma_flow" in params:
        params["plasma_flow"] = params["plasma_flow"].to("1/min")
    rms = float(np.sqrt(np.mean(best.fun ** 2)))
    return FitResult(model, params, rms, bool(best.success))
