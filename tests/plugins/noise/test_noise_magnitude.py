"""Rician and non-central χ magnitude noise: exact moments against sampling, the audit and its
mutants, the stated SNR, and the bias a Gaussian-noise fit incurs at low SNR."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from medtransport.audit.magnitude_noise import audit_magnitude_noise
from medtransport.errors import AuditFailure
from medtransport.numerics.magnitude_noise import (
    magnitude_mean,
    magnitude_noise,
    magnitude_second_moment,
)
from medtransport_noise.magnitude import add_magnitude_noise


@pytest.mark.parametrize("coils", [1, 4])
@pytest.mark.parametrize("nu", [0.0, 0.7, 2.0, 8.0])
def test_moments_match_sampling(nu: float, coils: int) -> None:
    m = magnitude_noise(np.full(300_000, nu), 1.3, np.random.default_rng(3), coils)
    se = m.std() / math.sqrt(m.size)
    assert abs(m.mean() - magnitude_mean(np.array(nu), 1.3, coils)) < 5 * se
    se2 = (m ** 2).std() / math.sqrt(m.size)
    assert abs((m ** 2).mean() - magnitude_second_moment(np.array(nu), 1.3, coils)) < 5 * se2


def test_rice_mean_is_the_laguerre_formula_and_matches_scipy() -> None:
    """L = 1: σ√(π/2)·L½(−ν²/2σ²), cross-checked with scipy.stats.rice's mean."""
    for nu in (0.0, 0.3, 1.0, 3.0, 30.0):
        assert float(magnitude_mean(np.array(nu), 2.0)) == pytest.approx(
            stats.rice(nu / 2.0, scale=2.0).mean(), rel=1e-9)
    assert float(magnitude_mean(np.array(0.0), 1.0)) == pytest.approx(math.sqrt(math.pi / 2))


def _phantom() -> np.ndarray:
    """A disc of signal 20 on a zero background: both high- and zero-SNR voxels."""
    y, x = np.mgrid[-32:32, -32:32]
    return np.where(x ** 2 + y ** 2 < 20 ** 2, 20.0, 0.0)


@pytest.mark.parametrize("coils", [1, 8])
def test_audit_passes_on_the_claimed_distribution(coils: int) -> None:
    out = add_magnitude_noise(_phantom(), seed=1, snr=10.0, coils=coils)
    assert out.audit.passed and out.sigma == pytest.approx(2.0) and out.snr == pytest.approx(10.0)
    assert "SNR" in out.audit.detail


def test_audit_catches_gaussian_noise_on_the_magnitude() -> None:
    """Mutant: |ν + σz| (a single real channel — half-normal in the background) and ν + σz
    (noise that can go negative) both fail the Rice audit."""
    clean = _phantom()
    rng = np.random.default_rng(2)
    for mutant in (np.abs(clean + 2.0 * rng.standard_normal(clean.shape)),
                   clean + 2.0 * rng.standard_normal(clean.shape)):
        assert not audit_magnitude_noise(clean, mutant, 2.0).passed


def test_audit_catches_a_wrong_coil_count_or_sigma() -> None:
    clean = _phantom()
    eight = magnitude_noise(clean, 2.0, np.random.default_rng(4), coils=8)
    assert not audit_magnitude_noise(clean, eight, 2.0, coils=1).passed
    assert not audit_magnitude_noise(clean, eight, 2.2, coils=8).passed
    assert audit_magnitude_noise(clean, eight, 2.0, coils=8).passed


def test_a_failed_draw_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    import medtransport_noise.magnitude as mag

    monkeypatch.setattr(mag, "magnitude_noise",
                        lambda c, s, rng, coils: np.abs(c + s * rng.standard_normal(c.shape)))
    with pytest.raises(AuditFailure, match="magnitude noise audit failed"):
        mag.add_magnitude_noise(_phantom(), seed=0, snr=10.0)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        add_magnitude_noise(_phantom(), seed=0)
    with pytest.raises(ValueError, match="coils"):
        magnitude_noise(np.ones(3), 1.0, np.random.default_rng(), coils=0)


def test_gaussian_fit_is_biased_at_low_snr_and_the_rician_fit_is_not() -> None:
    """Mono-exponential ADC, b up to 3000 s/mm² (S(3000) ≈ 1 % of S0), Rician noise with
    SNR 40 at b = 0, 3000 repeats: the Gaussian-noise fit underestimates the ADC (the noise
    floor flattens the decay) by many standard errors; the Rician-aware fit is unbiased
    within 4 SE."""
    from medtransport_dwi.maps import monoexponential_maps

    b = np.array([0.0, 250, 500, 1000, 1500, 2000, 2500, 3000])
    adc, s0, sigma = 1.5e-3, 400.0, 10.0
    clean = np.tile(s0 * np.exp(-b * adc), (3000, 1))
    noisy = add_magnitude_noise(clean, seed=5, sigma=sigma).values
    gauss = monoexponential_maps(noisy, b)["adc"].values
    rice = monoexponential_maps(noisy, b, rician_sigma=sigma)["adc"].values
    se_g = gauss.std(ddof=1) / math.sqrt(gauss.size)
    se_r = rice.std(ddof=1) / math.sqrt(rice.size)
    assert (adc - gauss.mean()) / se_g > 10
    assert abs(rice.mean() - adc) < 4 * se_r
    # and the noise-free fit is exact
    exact = monoexponential_maps(clean[:3], b)["adc"].values
    assert np.allclose(exact, adc, rtol=1e-6)
