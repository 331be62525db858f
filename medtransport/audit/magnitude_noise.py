"""Audit of magnitude noise: do noised data follow the Rice / non-central χ distribution they
claim?

Over N values with true amplitudes ν_i, noise σ and L coils, the standardised sums

    z₁ = Σ(M_i − E[M|ν_i]) / √(Σ Var[M|ν_i]),
    z₂ = Σ(M_i² − (ν_i² + 2Lσ²)) / √(Σ (4Lσ⁴ + 4σ²ν_i²))

are ≈ N(0, 1) when the claim holds (moments in :mod:`medtransport.numerics.magnitude_noise`);
the audit passes when |z₁| and |z₂| are both ≤ n_σ. Gaussian noise added to the magnitude
(the common shortcut) fails z₁ wherever the SNR is low; a wrong σ or coil count fails z₂.
"""

from __future__ import annotations

import math

import numpy as np

from medtransport.audit.report import AuditResult
from medtransport.numerics.magnitude_noise import magnitude_mean, magnitude_variance

__all__ = ["audit_magnitude_noise"]


def audit_magnitude_noise(clean: np.ndarray, noisy: np.ndarray, sigma: float, coils: int = 1,
                          n_sigma: float = 5.0, name: str = "magnitude_noise") -> AuditResult:
    nu = np.abs(np.asarray(clean, dtype=float)).ravel()
    m = np.asarray(noisy, dtype=float).ravel()
    if nu.shape != m.shape:
        raise ValueError(f"clean {nu.shape} and noisy {m.shape} differ in size")
    mean = magnitude_mean(nu, sigma, coils)
    z1 = float(np.sum(m - mean) / math.sqrt(np.sum(magnitude_variance(nu, sigma, coils))))
    z2 = float(np.sum(m ** 2 - (nu ** 2 + 2 * coils * sigma ** 2))
               / math.sqrt(np.sum(4 * coils * sigma ** 4 + 4 * sigma ** 2 * nu ** 2)))
    worst = max(abs(z1), abs(z2))
    kind = "Rician" if coils == 1 else f"non-central χ ({coils} coils)"
    snr = float(np.median(nu) / sigma) if sigma > 0 else math.inf
    detail = (f"{kind} noise, σ = {sigma:.6g}, median SNR {snr:.3g}, N = {m.size}: mean off by "
              f"{z1:+.2f} SE, second moment by {z2:+.2f} SE (allowed {n_sigma:g})")
    return AuditResult(name, worst <= n_sigma, worst, n_sigma, "SE", detail)
