"""Scanner noise on magnitude images: Rician (one receive coil) and non-central χ (L coils,
root-sum-of-squares), with the SNR stated and the result audited.

:func:`add_magnitude_noise` draws M for an image's true amplitudes from a seeded generator,
with σ given directly or from a target SNR = ``reference``/σ (``reference`` defaults to the
image's largest value: SNR is then the SNR of its brightest voxel — of the b = 0 image for a
DWI series), and audits the draw with :func:`medtransport.audit.magnitude_noise.
audit_magnitude_noise`; a failed audit raises :class:`medtransport.errors.AuditFailure`.
Distribution and moments: :mod:`medtransport.numerics.magnitude_noise`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medtransport.audit.magnitude_noise import audit_magnitude_noise
from medtransport.audit.report import AuditReport, AuditResult
from medtransport.errors import AuditFailure
from medtransport.numerics.magnitude_noise import magnitude_noise

__all__ = ["NoisyImage", "add_magnitude_noise"]


@dataclass
class NoisyImage:
    """The noised image, σ, the stated SNR (reference/σ), the coil count and the audit."""

    values: np.ndarray
    sigma: float
    snr: float
    coils: int
    audit: AuditResult


def add_magnitude_noise(clean: np.ndarray, *, seed: int, snr: float | None = None,
                        sigma: float | None = None, reference: float | None = None,
                        coils: int = 1, n_sigma: float = 5.0) -> NoisyImage:
    """Rician (``coils`` = 1) or non-central χ noise on ``clean`` (module docstring)."""
    clean = np.asarray(clean, dtype=float)
    if (snr is None) == (sigma is None):
        raise ValueError("give exactly one of 'snr' and 'sigma'")
    ref = float(np.max(np.abs(clean))) if reference is None else float(reference)
    if sigma is None:
        if not snr or snr <= 0:
            raise ValueError(f"snr must be > 0, got {snr}")
        sigma = ref / snr
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    rng = np.random.default_rng(seed)
    noisy = magnitude_noise(clean, sigma, rng, coils)
    result = audit_magnitude_noise(clean, noisy, sigma, coils, n_sigma)
    if not result.passed:
        raise AuditFailure(f"magnitude noise audit failed: {result.detail}",
                           AuditReport([result]))
    return NoisyImage(noisy, float(sigma), ref / float(sigma), coils, result)
