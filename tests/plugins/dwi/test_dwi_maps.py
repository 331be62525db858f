"""Whole-volume DWI maps: noise-free round trips (ADC, DTI, IVIM, DKI), DIPY's TensorModel WLS on
the same data, standard errors against a Monte Carlo of the same fit."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from medtransport_dwi.maps import adc_maps, dki_maps, dti_maps, ivim_maps


def _directions(n: int, seed: int = 0) -> np.ndarray:
    """n directions spread over a hemisphere (Fibonacci lattice)."""
    i = np.arange(n) + 0.5
    z = 1.0 - i / n
    phi = np.pi * (1.0 + 5 ** 0.5) * i
    r = np.sqrt(1.0 - z * z)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def _tensors(p: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lam = np.sort(rng.uniform(0.2e-3, 2.0e-3, (p, 3)), axis=1)[:, ::-1]
    q, _ = np.linalg.qr(rng.normal(size=(p, 3, 3)))
    return np.einsum("pij,pj,pkj->pik", q, lam, q)


def _dti_signal(d: np.ndarray, b: np.ndarray, g: np.ndarray, s0: float = 1000.0) -> np.ndarray:
    return s0 * np.exp(-b * np.einsum("ni,pij,nj->pn", g, d, g))


def _scheme(n_dirs: int = 30, shells_b: tuple[float, ...] = (1000.0,)) -> tuple[np.ndarray, ...]:
    g = _directions(n_dirs)
    b = np.concatenate([[0.0, 0.0], *[np.full(n_dirs, s) for s in shells_b]])
    gg = np.concatenate([np.zeros((2, 3)), *[g for _ in shells_b]])
    return b, gg


def _fa_md(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lam = np.linalg.eigvalsh(d)
    md = lam.mean(axis=1)
    fa = np.sqrt(1.5) * np.linalg.norm(lam - md[:, None], axis=1) / np.linalg.norm(lam, axis=1)
    return fa, md


def test_dti_noise_free_round_trip() -> None:
    b, g = _scheme()
    d = _tensors(500)
    maps = dti_maps(_dti_signal(d, b, g), b, g)
    fa, md = _fa_md(d)
    assert np.max(np.abs(maps["fa"].values - fa)) < 1e-6
    assert np.max(np.abs(maps["md"].values - md) / md) < 1e-6
    lam = np.linalg.eigvalsh(d)[:, ::-1]
    assert np.allclose(maps["ad"].values, lam[:, 0], rtol=1e-6)
    assert np.allclose(maps["rd"].values, lam[:, 1:].mean(axis=1), rtol=1e-6)
    # V1 is the principal eigenvector up to its sign
    v_true = np.linalg.eigh(d)[1][:, :, -1]
    assert np.min(np.abs(np.sum(maps["v1"].values * v_true, axis=1))) > 1 - 1e-6
    assert np.allclose(maps["s0"].values, 1000.0, rtol=1e-9)
    assert np.max(maps["rms"].values) < 1e-9


def _dipy(signal: np.ndarray, b: np.ndarray, g: np.ndarray):
    from dipy.core.gradients import gradient_table
    from dipy.reconst.dti import TensorModel

    gtab = gradient_table(b, bvecs=g, b0_threshold=50)
    return TensorModel(gtab, fit_method="WLS").fit(signal)


def test_dti_agrees_with_dipy_wls_noise_free_and_noisy() -> None:
    b, g = _scheme()
    d = _tensors(300, seed=3)
    clean = _dti_signal(d, b, g)
    ours, theirs = dti_maps(clean, b, g), _dipy(clean, b, g)
    assert np.max(np.abs(ours["fa"].values - theirs.fa)) < 1e-6
    assert np.max(np.abs(ours["md"].values - theirs.md)) < 1e-6 * 1e-3
    # with Rician noise at SNR 30 both WLS fits see the same data: they still agree closely,
    # while each is far from the truth at the noise's scale
    rng = np.random.default_rng(7)
    sigma = 1000.0 / 30
    noisy = np.hypot(clean + rng.normal(0, sigma, clean.shape), rng.normal(0, sigma, clean.shape))
    ours, theirs = dti_maps(noisy, b, g), _dipy(noisy, b, g)
    fa_true, _ = _fa_md(d)
    assert np.max(np.abs(ours["fa"].values - theirs.fa)) < 1e-6
    assert np.max(np.abs(ours["md"].values - theirs.md)) < 1e-9
    assert np.mean(np.abs(ours["fa"].values - fa_true)) > 1e-3


def test_dti_standard_errors_match_a_monte_carlo() -> None:
    """One tensor, 400 noise realisations (Gaussian, SNR 40): the mean reported SE of MD and
    FA within 15 % of the spread of the estimates."""
    b, g = _scheme()
    d = np.repeat(_tensors(1, seed=5), 400, axis=0)
    clean = _dti_signal(d, b, g)
    rng = np.random.default_rng(11)
    maps = dti_maps(clean + rng.normal(0, 1000.0 / 40, clean.shape), b, g)
    for key in ("md", "fa"):
        spread = maps[key].values.std(ddof=1)
        reported = maps[f"{key}_se"].values.mean()
        assert abs(reported / spread - 1) < 0.15, (key, reported, spread)


def test_dti_standard_error_mutant_is_caught() -> None:
    """Mutant: an SE computed without the WLS weights (the 'forgot W' bug) is off by the
    signal scale and misses the Monte Carlo spread by orders of magnitude."""
    b, g = _scheme()
    d = np.repeat(_tensors(1, seed=5), 200, axis=0)
    clean = _dti_signal(d, b, g)
    rng = np.random.default_rng(12)
    maps = dti_maps(clean + rng.normal(0, 25.0, clean.shape), b, g)
    from medtransport_dwi.maps import dti_design

    x = dti_design(b, g)
    s2 = np.mean(maps["rms"].values) ** 2  # a residual scale without weights
    cov = np.linalg.inv(x.T @ x) * s2
    mutant = np.sqrt(np.ones(3) @ cov[:3, :3] @ np.ones(3)) / 3
    spread = maps["md"].values.std(ddof=1)
    assert not abs(mutant / spread - 1) < 0.15


def test_adc_per_shell_noise_free() -> None:
    b, g = _scheme(30, (500.0, 1000.0, 2000.0))
    d = _tensors(200, seed=2)
    maps = adc_maps(_dti_signal(d, b, g), b)
    _, md = _fa_md(d)
    # the Fibonacci hemisphere averages ĝĝᵀ to I/3 only approximately: compare with the
    # directional mean of the true ADC instead, which is what the shell ADC is
    gd = g[2:32]
    truth = np.einsum("ni,pij,nj->p", gd, d, gd) / gd.shape[0]
    for shell in ("adc_b500", "adc_b1000", "adc_b2000"):
        assert np.max(np.abs(maps[shell].values - truth) / truth) < 1e-6
    assert np.allclose(maps["s0"].values, 1000.0, rtol=1e-12)
    assert np.max(np.abs(truth - md) / md) < 0.05


def _ivim_scheme() -> tuple[np.ndarray, np.ndarray]:
    b_shells = [0, 10, 20, 40, 80, 110, 140, 170, 200, 300, 400, 500, 600, 700, 800, 900]
    g = _directions(3)
    b = np.concatenate([[0.0]] + [np.full(3, v) for v in b_shells[1:]])
    gg = np.concatenate([np.zeros((1, 3))] + [g for _ in b_shells[1:]])
    return b, gg


def _ivim_truth(p: int) -> np.ndarray:
    rng = np.random.default_rng(4)
    return np.stack([np.full(p, 1000.0), rng.uniform(0.05, 0.3, p), rng.uniform(0.5e-3, 2e-3, p),
                     rng.uniform(10e-3, 50e-3, p)], axis=1)


def _ivim_signal(x: np.ndarray, b: np.ndarray) -> np.ndarray:
    s0, f, d, dstar = x[:, :1], x[:, 1:2], x[:, 2:3], x[:, 3:4]
    return s0 * (f * np.exp(-b * dstar) + (1 - f) * np.exp(-b * d))


def test_ivim_full_round_trip_and_segmented_start() -> None:
    b, _ = _ivim_scheme()
    x = _ivim_truth(300)
    signal = _ivim_signal(x, b)
    full = ivim_maps(signal, b, method="full")
    assert np.max(np.abs(full["f"].values - x[:, 1])) < 1e-6
    assert np.max(np.abs(full["d"].values - x[:, 2]) / x[:, 2]) < 1e-6
    assert np.max(np.abs(full["dstar"].values - x[:, 3]) / x[:, 3]) < 1e-5
    assert full["converged"].values.all()
    seg = ivim_maps(signal, b, method="segmented")
    # segmented D is biased upwards by the perfusion left at b ≥ 200 s/mm² (worst for a slow
    # D* = 10e-3 mm²/s and a large f): by < 10 %, and never downwards
    rel = (seg["d"].values - x[:, 2]) / x[:, 2]
    assert rel.max() < 0.10 and rel.min() > -1e-9
    assert np.max(np.abs(seg["f"].values - x[:, 1])) < 0.05


def test_dki_mean_kurtosis_round_trip() -> None:
    """Noise-free DKI signal with an isotropic kurtosis tensor (W_ijkl = K·(δ_ijδ_kl + δ_ikδ_jl
    + δ_ilδ_jk)/3 makes K(n) = K·MD²/D(n)²) on an anisotropic tensor: MK by quadrature equals the
    sphere mean of K·MD²/(nᵀDn)² computed independently."""
    g = _directions(30)
    b = np.concatenate([[0.0, 0.0], np.full(30, 1000.0), np.full(30, 2000.0)])
    gg = np.concatenate([np.zeros((2, 3)), g, g])
    d = _tensors(50, seed=9) * 0.8
    k_iso = np.linspace(0.3, 1.2, 50)
    md = np.trace(d, axis1=1, axis2=2) / 3
    dn = np.einsum("ni,pij,nj->pn", gg, d, gg)
    signal = 1000.0 * np.exp(-b * dn + b ** 2 * (k_iso * md ** 2)[:, None] / 6)
    maps = dki_maps(signal, b, gg)
    # independent quadrature: a random uniform sample of directions, many of them
    rng = np.random.default_rng(0)
    n = rng.normal(size=(200_000, 3))
    n /= np.linalg.norm(n, axis=1)[:, None]
    expect = np.array([np.mean(k * m ** 2 / np.einsum("ni,ij,nj->n", n, dd, n) ** 2)
                       for k, m, dd in zip(k_iso, md, d, strict=True)])
    assert np.max(np.abs(maps["mk"].values - expect) / expect) < 0.01
    assert np.allclose(maps["md"].values, md, rtol=1e-6)
    # isotropic D: MK = K exactly
    d_iso = np.repeat(np.eye(3)[None] * 1e-3, 5, axis=0)
    k5 = np.array([0.2, 0.5, 0.8, 1.0, 1.5])
    sig = 1000.0 * np.exp(-b * 1e-3 + b ** 2 * (k5 * 1e-6)[:, None] / 6)
    assert np.allclose(dki_maps(sig, b, gg)["mk"].values, k5, rtol=1e-6)
    assert np.allclose(d_iso[0], np.eye(3) * 1e-3)


def test_ivim_with_rician_noise_against_a_monte_carlo_of_the_same_fit() -> None:
    """One voxel, 600 Rician draws (SNR 100 of S0), the Rician-aware full IVIM fit: the reported
    standard error of D matches the spread of the estimates within 20 %, and the mean D is
    within 4 standard errors of the truth."""
    from medtransport_noise.magnitude import add_magnitude_noise

    b, _ = _ivim_scheme()
    truth = np.array([[1000.0, 0.1, 1.2e-3, 0.03]])
    clean = np.repeat(_ivim_signal(truth, b), 600, axis=0)
    noisy = add_magnitude_noise(clean, seed=21, snr=100.0, reference=1000.0)
    maps = ivim_maps(noisy.values, b, method="full", rician_sigma=noisy.sigma)
    d = maps["d"].values
    spread = d.std(ddof=1)
    assert abs(np.median(maps["d_se"].values) / spread - 1) < 0.2
    assert abs(d.mean() - 1.2e-3) < 4 * spread / np.sqrt(d.size)


def _dki_scheme() -> tuple[np.ndarray, np.ndarray]:
    g = _directions(30)
    b = np.concatenate([[0.0, 0.0], np.full(30, 1000.0), np.full(30, 2000.0)])
    return b, np.concatenate([np.zeros((2, 3)), g, g])


def _isotropic_w_signal(d: np.ndarray, k_iso: np.ndarray, b: np.ndarray,
                        g: np.ndarray) -> np.ndarray:
    md = np.trace(d, axis1=1, axis2=2) / 3
    dn = np.einsum("ni,pij,nj->pn", g, d, g)
    return 1000.0 * np.exp(-b * dn + b ** 2 * (k_iso * md ** 2)[:, None] / 6)


def test_dki_axial_and_radial_kurtosis_of_an_axially_symmetric_tensor() -> None:
    """Isotropic W (K(n̂) = K·MD²/(n̂ᵀDn̂)²) on an axially symmetric D (λ1 along a random axis,
    λ2 = λ3 = λ⊥): AK = K·MD²/λ1² and RK = K·MD²/λ⊥² exactly."""
    b, g = _dki_scheme()
    rng = np.random.default_rng(4)
    p = 40
    lam1, lam_perp = rng.uniform(1.2e-3, 2.0e-3, p), rng.uniform(0.2e-3, 0.8e-3, p)
    axis = rng.normal(size=(p, 3))
    axis /= np.linalg.norm(axis, axis=1)[:, None]
    d = (lam_perp[:, None, None] * np.eye(3)
         + (lam1 - lam_perp)[:, None, None] * np.einsum("pi,pj->pij", axis, axis))
    k_iso = rng.uniform(0.3, 1.2, p)
    md = (lam1 + 2 * lam_perp) / 3
    maps = dki_maps(_isotropic_w_signal(d, k_iso, b, g), b, g)
    assert np.allclose(maps["ak"].values, k_iso * md ** 2 / lam1 ** 2, rtol=1e-6)
    assert np.allclose(maps["rk"].values, k_iso * md ** 2 / lam_perp ** 2, rtol=1e-6)


def test_dki_kurtosis_maps_agree_with_dipy() -> None:
    """The same noise-free data through DIPY's DiffusionKurtosisModel (OLS): AK and RK (DIPY's
    analytical forms) to 1e-8, MK (DIPY's analytical, ours by quadrature) to 0.5 %."""
    dki = pytest.importorskip("dipy.reconst.dki")
    from dipy.core.gradients import gradient_table

    b, g = _dki_scheme()
    rng = np.random.default_rng(5)
    d = _tensors(30, seed=6) * 0.8
    # a general (anisotropic) W: the isotropic one plus a random symmetric perturbation
    k_iso = rng.uniform(0.4, 1.0, 30)
    md = np.trace(d, axis1=1, axis2=2) / 3
    dn = np.einsum("ni,pij,nj->pn", g, d, g)
    g4 = np.einsum("ni,nj,nk,nl->nijkl", g, g, g, g).reshape(g.shape[0], -1)
    w_extra = rng.normal(0, 0.1, (30, 3, 3, 3, 3))
    w_extra = sum(np.transpose(w_extra, (0, *(i + 1 for i in perm)))
                  for perm in itertools.permutations(range(4))) / 24
    wn = k_iso[:, None] + w_extra.reshape(30, -1) @ g4.T
    signal = 1000.0 * np.exp(-b * dn + b ** 2 * md[:, None] ** 2 * wn / 6)
    ours = dki_maps(signal, b, g)
    gtab = gradient_table(b, bvecs=np.where(b[:, None] > 0, g, [1.0, 0.0, 0.0]), b0_threshold=5)
    fit = dki.DiffusionKurtosisModel(gtab, fit_method="OLS").fit(signal)
    kw = {"min_kurtosis": -100.0, "max_kurtosis": 100.0}
    assert np.allclose(ours["ak"].values, fit.ak(**kw), rtol=1e-8)
    assert np.allclose(ours["rk"].values, fit.rk(**kw), rtol=1e-8)
    assert np.allclose(ours["mk"].values, fit.mk(**kw), rtol=5e-3)
