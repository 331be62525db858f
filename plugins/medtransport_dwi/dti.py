"""ADC per shell and a diffusion-tensor (DTI) fit of the attenuation.

    ADC = −ln(S/S0)/b    (REFERENCES §4), averaged over a shell's directions;
    −ln(S/S0) = b·ĝᵀDĝ   solved for the six elements of D by linear least squares over one
                         shell with at least six directions (Basser, Mattiello & Le Bihan,
                         Biophys J 66:259, 1994);
    MD = tr(D)/3,  FA = √(3/2)·‖λ − MD‖/‖λ‖ (Basser & Pierpaoli, J Magn Reson B 111:209, 1996).
"""

from __future__ import annotations

import numpy as np

from medtransport_dwi.sequence import Measurement

__all__ = ["adc_by_shell", "fit_tensor"]

#: Attenuations are clipped here before the logarithm so that a vanishing signal stays finite.
_TINY = 1e-300


def adc_by_shell(meas: Measurement, attenuation: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(b, Δ, mean ADC) of each shell with b > 0 (SI), or None."""
    b_out, sep_out, adc_out = [], [], []
    for s in np.unique(meas.shell):
        sel = meas.shell == s
        b = meas.b_value[sel]
        if not np.all(b > 0):
            continue
        adc = -np.log(np.clip(attenuation[sel], _TINY, None)) / b
        b_out.append(float(b.mean()))
        sh = meas.shapes[int(meas.shape_index[sel][0])]
        sep_out.append(sh.separation if sh.is_pgse else sh.duration)
        adc_out.append(float(adc.mean()))
    if not b_out:
        return None
    return np.asarray(b_out), np.asarray(sep_out), np.asarray(adc_out)


def fit_tensor(meas: Measurement, attenuation: np.ndarray
               ) -> tuple[np.ndarray, float, float] | None:
    """(D (3×3, m²/s), FA, MD) from the first shell with b > 0 and ≥ 6 independent
    directions, or None."""
    for s in np.unique(meas.shell):
        sel = meas.shell == s
        b = meas.b_value[sel]
        if sel.sum() < 6 or not np.all(b > 0):
            continue
        g = meas.direction[sel]
        design = b[:, None] * np.stack([g[:, 0] ** 2, g[:, 1] ** 2, g[:, 2] ** 2,
                                        2 * g[:, 0] * g[:, 1], 2 * g[:, 0] * g[:, 2],
                                        2 * g[:, 1] * g[:, 2]], axis=1)
        if np.linalg.matrix_rank(design) < 6:
            continue
        y = -np.log(np.clip(attenuation[sel], _TINY, None))
        p, *_ = np.linalg.lstsq(design, y, rcond=None)
        d = np.array([[p[0], p[3], p[4]], [p[3], p[1], p[5]], [p[4], p[5], p[2]]])
        lam = np.linalg.eigvalsh(d)
        md = float(lam.mean())
        norm = float(np.linalg.norm(lam))
        fa = float(np.sqrt(1.5) * np.linalg.norm(lam - md) / norm) if norm > 0 else 0.0
        return d, fa, md
    return None
