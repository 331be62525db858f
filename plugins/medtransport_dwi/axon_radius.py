"""Axon-radius maps for white matter: a single cylinder radius per voxel, AxCaliber-style
(Assaf et al., *Magn Reson Med* 2008;59:1347; one radius rather than a distribution, as in
ActiveAx, Alexander et al., *NeuroImage* 2010;52:1374), on the plugin's exact restricted
signal.

With every diffusion gradient perpendicular to the fibre axis (the AxCaliber protocol: PGSE
shells of several b, δ and Δ), per shell (b, δ, Δ):

    S/S0 = f_r·E_cyl(R; D_r, δ, Δ, G) + (1 − f_r)·e^{−b·D_h},

E_cyl the Gaussian-phase signal of a cylinder of radius R for a gradient across it
(:func:`medtransport_dwi.gaussian_phase.restricted` with ``"cylinder"``: the Neuman / Van
Gelderen et al., *J Magn Reson B* 1994;103:255 form), G from b = γ²G²δ²(Δ − δ/3),
restricted (intra-axonal) diffusivity D_r fixed (:data:`D_R` = 1.7 µm²/ms, as AxCaliber/
ActiveAx), the hindered (extra-axonal) D_h and the restricted fraction f_r free. The
perpendicular signal does not depend on the direction within the plane, so each shell is its
directions' geometric mean. E_cyl is tabulated per shell on :data:`RADII` and interpolated by a
cubic spline in R; (S0, f_r, D_h, R) are fitted by batched Levenberg–Marquardt from a grid
start (the table's best radius at f_r = 0.6). Radii below ~1 µm are barely seen by clinical
gradients: their standard-error map says so.
"""

from __future__ import annotations

import numpy as np
from scipy.interpolate import CubicSpline

from medtransport.numerics.batched_lm import levenberg_marquardt
from medtransport_dwi.gaussian_phase import pgse_table
from medtransport_dwi.maps import B0_MAX, Map

__all__ = ["D_R", "RADII", "axon_radius_maps", "cylinder_table", "perpendicular_signal"]

#: Intra-axonal diffusivity (m²/s), fixed.
D_R = 1.7e-9
#: Radii (m) of the cylinder-signal table.
RADII = np.arange(0.2e-6, 12.0e-6 + 1e-12, 0.05e-6)
#: Largest |ĝ·n̂| accepted as perpendicular.
PERPENDICULAR_TOL = 1e-3


def cylinder_table(b: np.ndarray, delta: np.ndarray, separation: np.ndarray,
                   radii: np.ndarray = RADII) -> np.ndarray:
    """E_cyl (len(radii), S) across the cylinder for shells b (s/mm²), δ, Δ (s)."""
    return pgse_table("cylinder", D_R, radii, b, delta, separation)


def perpendicular_signal(f_r: np.ndarray, d_h: np.ndarray, e_cyl: np.ndarray,
                         b: np.ndarray) -> np.ndarray:
    """S/S0 (P, S) from f_r (P,), D_h (P,; mm²/s), E_cyl (P, S) and b (S,; s/mm²)."""
    f_r, d_h = np.asarray(f_r)[:, None], np.asarray(d_h)[:, None]
    return f_r * e_cyl + (1.0 - f_r) * np.exp(-b * d_h)


def axon_radius_maps(signal: np.ndarray, b: np.ndarray, g: np.ndarray, delta: np.ndarray,
                     separation: np.ndarray, axis: np.ndarray, *,
                     max_iter: int = 200) -> dict[str, Map]:
    """Fit every voxel (module docstring). ``signal`` (P, N); per volume ``b`` (s/mm²), unit
    gradient directions ``g`` (N, 3), ``delta`` and ``separation`` (s); ``axis`` the fibre
    direction (3,) shared by the voxels. Volumes with the same (b, δ, Δ) form a shell."""
    signal = np.atleast_2d(np.asarray(signal, dtype=float))
    b = np.asarray(b, dtype=float)
    g = np.asarray(g, dtype=float)
    delta = np.asarray(delta, dtype=float)
    separation = np.asarray(separation, dtype=float)
    axis = np.asarray(axis, dtype=float)
    if axis.shape != (3,) or not np.linalg.norm(axis) > 0:
        raise ValueError(f"axis must be a non-zero 3-vector, got {axis.tolist()}")
    if g.shape != (b.size, 3) or delta.shape != b.shape or separation.shape != b.shape:
        raise ValueError(f"b has {b.size} volumes: g must be ({b.size}, 3) and delta, "
                         f"separation ({b.size},); got {g.shape}, {delta.shape}, "
                         f"{separation.shape}")
    if signal.shape[1] != b.size:
        raise ValueError(f"signal has {signal.shape[1]} volumes, b has {b.size}")
    dw = b > B0_MAX
    along = np.abs(g[dw] @ (axis / np.linalg.norm(axis)))
    if along.size and along.max() > PERPENDICULAR_TOL:
        bad = int(np.flatnonzero(dw)[np.argmax(along)])
        raise ValueError(f"volume {bad}: the gradient makes |ĝ·n̂| = {along.max():.3g} with the "
                         f"fibre axis; the axon-radius fit needs every diffusion gradient "
                         f"perpendicular to it (≤ {PERPENDICULAR_TOL:g})")
    b_shell = np.where(dw, b, 0.0)
    keys = np.stack([np.round(b_shell, 3), np.where(dw, np.round(delta * 1e6), 0),
                     np.where(dw, np.round(separation * 1e6), 0)], 1)
    uniq, index = np.unique(keys, axis=0, return_inverse=True)
    index = np.asarray(index).ravel()
    shells = range(len(uniq))
    sb = np.array([b_shell[index == s].mean() for s in shells])
    sd = np.array([delta[index == s].mean() for s in shells])
    ss = np.array([separation[index == s].mean() for s in shells])
    if np.count_nonzero(sb > 0) < 4:
        raise ValueError(f"the axon-radius fit has 4 unknowns: it needs ≥ 4 diffusion-weighted "
                         f"shells (b, δ, Δ), got {np.count_nonzero(sb > 0)}")
    y = np.stack([np.exp(np.log(np.maximum(signal[:, index == s], 1e-12)).mean(axis=1))
                  for s in shells], axis=1)
    table = cylinder_table(sb, sd, ss)
    spline = CubicSpline(RADII, table, axis=0)

    def model(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
        return x[:, :1] * perpendicular_signal(x[:, 1], x[:, 2] * 1e-3, spline(x[:, 3] * 1e-6),
                                               sb)

    # start: S0 from b = 0, D_h = 1 µm²/ms, f_r = 0.6 and the table radius fitting best
    s0 = y[:, np.argmin(sb)]
    trial = (0.6 * table[None, :, :]
             + 0.4 * np.exp(-sb * 1e-3)[None, None, :]) * s0[:, None, None]
    r0 = RADII[np.argmin(np.sum((trial - y[:, None, :]) ** 2, axis=2), axis=1)] * 1e6
    x0 = np.stack([s0, np.full_like(s0, 0.6), np.full_like(s0, 1.0), r0], axis=1)
    fit = levenberg_marquardt(model, x0, y, lower=np.array([0.0, 0.0, 0.0, RADII[0] * 1e6]),
                              upper=np.array([np.inf, 1.0, 3.5, RADII[-1] * 1e6]),
                              typical=np.array([float(np.median(s0)), 0.1, 0.1, 0.5]),
                              max_iter=max_iter, xtol=1e-12, ftol=1e-20)
    x = fit.x
    return {"radius": Map(x[:, 3], "um", "axon (cylinder) radius"),
            "radius_se": Map(fit.stderr[:, 3], "um", "standard error of the axon radius"),
            "f_r": Map(x[:, 1], "dimensionless", "restricted (intra-axonal) fraction"),
            "d_h": Map(x[:, 2] * 1e-3, "mm^2/s", "hindered (extra-axonal) diffusivity"),
            "s0": Map(x[:, 0], "dimensionless", "S0 (axon radius)"),
            "converged": Map(fit.converged.astype(float), "dimensionless",
                             "1 where the optimiser converged"),
            "rms": Map(np.sqrt(2.0 * fit.cost / sb.size) / np.maximum(x[:, 0], 1e-12),
                       "dimensionless", "RMS residual relative to S0")}
