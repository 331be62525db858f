"""The DDPM schedules against formulas written out here from the papers, and against diffusers'
own ``alphas_cumprod`` (reference values stored in tests/data, written by bench/bench_noise.py
with diffusers 0.42.1; torch is not installed in the test environment)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from medtransport_noise.schedules import Schedule

DATA = Path(__file__).resolve().parents[2] / "data" / "noise_diffusers_alphas_cumprod.json"
T = 1000
B0, B1 = 1e-4, 0.02


def _product(betas: list[float]) -> list[float]:
    """ᾱ_k = Π_{j≤k}(1 − β_j), one multiplication at a time in Python floats."""
    out, acc = [], 1.0
    for b in betas:
        acc *= 1.0 - b
        out.append(acc)
    return out


def _linear() -> list[float]:  # Ho et al. 2020, §4: β from 1e-4 to 0.02
    return [B0 + (B1 - B0) * i / (T - 1) for i in range(T)]


def _scaled_linear() -> list[float]:
    return [(math.sqrt(B0) + (math.sqrt(B1) - math.sqrt(B0)) * i / (T - 1)) ** 2
            for i in range(T)]


def _sigmoid() -> list[float]:
    return [B0 + (B1 - B0) / (1.0 + math.exp(-(-6.0 + 12.0 * i / (T - 1)))) for i in range(T)]


def _cosine_f(u: float) -> float:  # Nichol & Dhariwal 2021, eq. 17, s = 0.008
    return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2


@pytest.mark.parametrize(("kind", "formula"), [("linear", _linear),
                                               ("scaled_linear", _scaled_linear),
                                               ("sigmoid", _sigmoid)])
def test_beta_schedules_follow_their_formulas(kind: str, formula) -> None:  # type: ignore[no-untyped-def]
    s = Schedule.build(kind)
    betas = formula()
    np.testing.assert_allclose(s.betas, betas, rtol=1e-13)
    np.testing.assert_allclose(s.alphas_cumprod, _product(betas), rtol=1e-12)


def test_cosine_schedule_telescopes_to_f_over_f0() -> None:
    """Without the cap, Π(1 − β) = f(k/T)/f(0) exactly; the cap 0.999 bites only at k = T."""
    s = Schedule.build("squaredcos_cap_v2")
    expected = [_cosine_f(k / T) / _cosine_f(0.0) for k in range(1, T + 1)]
    np.testing.assert_allclose(s.alphas_cumprod[:-1], expected[:-1], rtol=1e-11)
    assert s.betas[-1] == 0.999 and np.all(s.betas[:-1] < 0.999)
    assert s.alphas_cumprod[-1] == pytest.approx(expected[-2] * 0.001, rel=1e-11)


@pytest.mark.parametrize("kind", ["linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid"])
def test_zero_terminal_snr_rescaling_is_lin_et_al(kind: str) -> None:
    """Lin et al. 2024: √ᾱ' is the affine map of √ᾱ that keeps √ᾱ_1 and sends √ᾱ_T to 0."""
    old = np.sqrt(Schedule.build(kind).alphas_cumprod)
    new = Schedule.build(kind, rescale=True)
    root = np.sqrt(new.alphas_cumprod)
    expected = (old - old[-1]) * old[0] / (old[0] - old[-1])
    np.testing.assert_allclose(root, expected, rtol=1e-10, atol=1e-15)
    assert root[-1] == 0.0 and root[0] == pytest.approx(old[0], rel=1e-14)
    assert new.betas[-1] == pytest.approx(1.0) and new.snr[-1] == 0.0
    assert np.all(np.isfinite(new.snr[1:])) and np.all(np.diff(new.alpha_bar) <= 0)


def test_user_betas_and_derived_quantities() -> None:
    betas = [0.1, 0.2, 0.5]
    s = Schedule.build("user", betas=np.array(betas))
    np.testing.assert_allclose(s.alpha_bar, [1.0, 0.9, 0.72, 0.36], rtol=1e-15)
    np.testing.assert_allclose(s.snr[1:], [9.0, 0.72 / 0.28, 0.36 / 0.64], rtol=1e-13)
    assert s.snr[0] == math.inf
    # 1 − ᾱ keeps its digits at tiny β, where 1 − Π(1 − β) would cancel
    tiny = Schedule.build("user", betas=np.array([1e-12, 1e-12]))
    np.testing.assert_allclose(tiny.one_minus_alpha_bar[1:], [1e-12, 2e-12 - 1e-24], rtol=1e-12)


def test_continuous_vp_sde_view_agrees_to_second_order() -> None:
    """exp(−∫β) vs Π(1 − β): |log ratio| = Σ(β²/2 + β³/3 + …) ≤ Σβ²/(2(1 − β))."""
    s = Schedule.build("linear")
    dt = 1e-3
    t = np.arange(1, T + 1) * dt
    sde = s.alpha_bar_continuous(t, dt)
    gap = np.abs(np.log(sde) - np.log(s.alphas_cumprod))
    bound = np.cumsum(s.betas ** 2 / (2 * (1 - s.betas)))
    assert np.all(gap <= bound * (1 + 1e-9)) and gap[-1] > 0.25 * bound[-1]
    # β(t) = β_k/Δt: Song et al.'s β_min = 0.1, β_max = 20 on t ∈ [0, 1]
    assert s.beta_continuous(np.array([1e-4]), dt)[0] == pytest.approx(0.1)
    assert s.beta_continuous(np.array([1.0]), dt)[0] == pytest.approx(20.0)


def _diffusers() -> dict:  # type: ignore[type-arg]
    return json.loads(DATA.read_text())["schedules"]


@pytest.mark.parametrize("kind", ["linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid"])
def test_alpha_bar_matches_diffusers_to_1e_6(kind: str) -> None:
    ref = _diffusers()[kind]
    idx = np.asarray(ref["index"])
    theirs = np.asarray(ref["alphas_cumprod"])
    ours = Schedule.build(kind).alphas_cumprod[idx]
    inner = idx < T - 1
    np.testing.assert_allclose(ours[inner], theirs[inner], rtol=1e-6)
    # the last step: diffusers rounds β_T to float32 first; for the capped cosine 1 − β_T =
    # 0.001 then carries float32(0.999)'s error, 1.3e-5 relative — theirs, not ours
    allowed = 1e-6 + 2 * np.finfo(np.float32).eps * Schedule.build(kind).betas[-1] / (
        1 - Schedule.build(kind).betas[-1])
    assert abs(ours[-1] - theirs[-1]) <= allowed * ours[-1]


@pytest.mark.parametrize("kind", ["linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid"])
def test_rescaled_alpha_bar_matches_diffusers(kind: str) -> None:
    """Rescaled: 1.3e-6 relative where ᾱ > 1e-3 and 1e-6 absolute everywhere; near ᾱ_T = 0
    diffusers' float32 subtraction √ᾱ − √ᾱ_T dominates the difference."""
    ref = _diffusers()[f"{kind}+zero_snr"]
    idx = np.asarray(ref["index"])
    theirs = np.asarray(ref["alphas_cumprod"])
    ours = Schedule.build(kind, rescale=True).alphas_cumprod[idx]
    big = ours > 1e-3
    np.testing.assert_allclose(ours[big], theirs[big], rtol=1.3e-6)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)
    assert ours[-1] == 0.0 and theirs[-1] == 0.0
