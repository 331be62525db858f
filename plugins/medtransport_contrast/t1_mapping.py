"""T1 maps by variable flip angle (VFA), and DCE signal → concentration maps, vectorised.

Spoiled gradient echo (:func:`medtransport_contrast.signal.spgr`),
S(α) = M0·sin α·(1 − E1)/(1 − cos α·E1), E1 = e^{−TR/T1}, rearranges to a straight line
(DESPOT1; Deoni, Rutt & Peters, *Magn Reson Med* 2003;49:515):

    S/sin α = E1·(S/tan α) + M0·(1 − E1)

``linear``: slope E1 and intercept by least squares per voxel (closed form over the voxels),
T1 = −TR/ln E1. ``nonlinear``: (M0, T1) by batched Levenberg–Marquardt on S itself from the
linear estimate (the linear fit weights the low-angle points unevenly when there is noise).

Concentration from a dynamic SPGR series (fast exchange, R1 = R10 + r1·C): with the
pre-contrast signal S_pre (mean of the first ``baseline`` frames) and R10 = 1/T1 per voxel,
M0 = S_pre/spgr(R10) and the inverse of the SPGR equation gives R1(t), so
C(t) = (R1(t) − R10)/r1 (:func:`medtransport_contrast.signal.concentration_from_spgr`, here
for every voxel at once). Frames whose signal is beyond the SPGR maximum (E1 ≤ 0) give NaN.
"""

from __future__ import annotations

import numpy as np

from medtransport.numerics.batched_lm import levenberg_marquardt
from medtransport_contrast.signal import spgr

__all__ = ["concentration_maps", "vfa_t1"]


def vfa_t1(signal: np.ndarray, flip_angles: np.ndarray, tr: float, *,
           method: str = "nonlinear") -> dict[str, np.ndarray]:
    """T1 (s), M0 and (nonlinear) their standard errors, and the RMS residual, for signals
    (P, A) at flip angles (A,; rad) and repetition time ``tr`` (s)."""
    if method not in ("linear", "nonlinear"):
        raise ValueError(f"VFA method must be 'linear' or 'nonlinear', got {method!r}")
    s = np.atleast_2d(np.asarray(signal, dtype=float))
    a = np.asarray(flip_angles, dtype=float)
    if a.size < 2 or s.shape[1] != a.size:
        raise ValueError(f"need ≥ 2 flip angles and one signal per angle; got {a.size} angles "
                         f"and {s.shape[1]} signals")
    y = s / np.sin(a)
    x = s / np.tan(a)
    xm, ym = x.mean(axis=1, keepdims=True), y.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        e1 = np.sum((x - xm) * (y - ym), axis=1) / np.sum((x - xm) ** 2, axis=1)
        e1 = np.clip(e1, 1e-12, 1 - 1e-12)
        t1 = -tr / np.log(e1)
        m0 = (ym[:, 0] - e1 * xm[:, 0]) / (1.0 - e1)
    if method == "linear":
        pred = spgr(1.0 / t1[:, None], tr, a[None, :], m0[:, None])
        return {"t1": t1, "m0": m0, "rms": np.sqrt(np.mean((pred - s) ** 2, axis=1))}

    def model(p: np.ndarray, idx: np.ndarray) -> np.ndarray:
        return spgr(1.0 / p[:, 1:2], tr, a[None, :], p[:, 0:1])

    start = np.stack([np.where(np.isfinite(m0), m0, s.max(axis=1) * 10),
                      np.where(np.isfinite(t1), np.clip(t1, 1e-3, 10.0), 1.0)], axis=1)
    fit = levenberg_marquardt(model, start, s, lower=np.array([0.0, 1e-3]),
                              upper=np.array([np.inf, 20.0]),
                              typical=np.array([float(np.median(np.abs(start[:, 0]))) or 1.0,
                                                1.0]), xtol=1e-12, ftol=1e-20)
    return {"t1": fit.x[:, 1], "m0": fit.x[:, 0], "t1_se": fit.stderr[:, 1],
            "m0_se": fit.stderr[:, 0], "rms": np.sqrt(2.0 * fit.cost / a.size),
            "converged": fit.converged.astype(float)}


def concentration_maps(signal: np.ndarray, t1: np.ndarray, relaxivity: float, tr: float,
                       flip_angle: float, *, baseline: int = 1) -> np.ndarray:
    """C (P, T) in mM from dynamic SPGR signals (P, T), native T1 (P,; s), r1 (1/(s·mM)), TR
    (s) and flip angle (rad); the first ``baseline`` frames are pre-contrast."""
    s = np.atleast_2d(np.asarray(signal, dtype=float))
    if not 1 <= baseline <= s.shape[1]:
        raise ValueError(f"baseline must be 1 … {s.shape[1]} frames, got {baseline}")
    r10 = 1.0 / np.asarray(t1, dtype=float)[:, None]
    s_pre = s[:, :baseline].mean(axis=1, keepdims=True)
    m0 = s_pre / spgr(r10, tr, flip_angle)
    y = s / (m0 * np.sin(flip_angle))
    with np.errstate(invalid="ignore", divide="ignore"):
        e1 = (1.0 - y) / (1.0 - y * np.cos(flip_angle))
        r1 = np.where(e1 > 0, -np.log(e1) / tr, np.nan)
    return (r1 - r10) / relaxivity
