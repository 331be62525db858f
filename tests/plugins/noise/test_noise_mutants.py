"""Every noise audit catches a deliberately broken model; the unbroken model passes the same
scenario (the control)."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

from medtransport.runner import run
from medtransport.testing import build_model, failed_audits
from medtransport_noise import reverse as reverse_module
from medtransport_noise.forward import ForwardDiffusion
from medtransport_noise.reverse_model import ReverseDiffusion

FORWARD: dict[str, Any] = {
    "name": "mutant phantom",
    "model": "noise.forward",
    "parameters": {"input": {"kind": "phantom", "size": [64, 64]},
                   "output_steps": [1, 2, 10, 100, 500, 1000]},
    "time": {"stop": "1 s", "step": "1 ms"},
    "seed": 21,
}
CHAIN = {**FORWARD, "solver": {"method": "markov_chain"}}
REVERSE: dict[str, Any] = {
    "name": "mutant reverse",
    "model": "noise.reverse",
    "parameters": {"schedule": {"timesteps": 100, "beta_end": 0.2},
                   "data": [{"mean": [1.0, -0.5], "covariance": [[0.5, 0.1], [0.1, 0.3]]}],
                   "samples": 4000, "output_steps": [50, 0]},
    "solver": {"method": "ddpm", "variance": "fixed_small"},
    "time": {"stop": "1 s", "step": "10 ms"},
    "seed": 4,
}


@pytest.mark.parametrize(("cls", "scenario"), [(ForwardDiffusion, FORWARD),
                                               (ForwardDiffusion, CHAIN),
                                               (ReverseDiffusion, REVERSE)],
                         ids=["closed_form", "chain", "reverse"])
def test_the_unbroken_models_pass(cls: Any, scenario: dict[str, Any]) -> None:
    assert run(build_model(cls, scenario)).attrs["audit_status"] == "passed"


class NotVariancePreserving(ForwardDiffusion):
    """x_t = x_0 + √(1 − ᾱ)·ε: the signal is never attenuated (a variance-exploding step put
    where a variance-preserving one belongs)."""

    def coefficients(self, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        _, b = super().coefficients(steps)
        return np.ones_like(b), b


def test_non_variance_preserving_schedule_is_caught() -> None:
    names = failed_audits(NotVariancePreserving, FORWARD)
    assert "variance_budget" in names and "mass_balance[variance]" in names, names


class Float16Coefficients(ForwardDiffusion):
    """ᾱ cast to float16 before the square roots (cast first, as in a half-precision
    pipeline): ᾱ_1 = 0.9999 and ᾱ_2 = 0.99978 round to 1, so no noise is added there."""

    def coefficients(self, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ab = self.schedule.alpha_bar.astype(np.float16)[steps]
        return (np.sqrt(ab).astype(np.float64),
                np.sqrt(np.float16(1) - ab).astype(np.float64))


def test_float16_coefficient_path_losing_the_noise_is_caught() -> None:
    names = failed_audits(Float16Coefficients, FORWARD)
    assert "noise_level" in names, names
    # the variance ledger alone cannot see it: m₂ stays ≈ 1 when 1e-4 of noise is missing
    assert "mass_balance[variance]" not in names, names


class WrongChainFactor(ForwardDiffusion):
    """x_k = (1 − β_k)·x_{k−1} + √β_k·ε: the factor without its square root."""

    def chain_factors(self) -> tuple[np.ndarray, np.ndarray]:
        b = self.schedule.betas
        return 1.0 - b, np.sqrt(b)


def test_chain_with_wrong_factor_is_caught() -> None:
    names = failed_audits(WrongChainFactor, CHAIN)
    assert "noise_level" in names and "mass_balance[variance]" in names, names
    assert "variance_budget" in names, names


class NoisyStart(ForwardDiffusion):
    """Noise added at step 0 as well (ᾱ_0 < 1): the data do not start intact."""

    def coefficients(self, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a, b = super().coefficients(steps)
        a, b = a.copy(), b.copy()
        a[steps == 0], b[steps == 0] = np.sqrt(0.99), 0.1
        return a, b

    def simulate(self, progress: Any = None) -> Any:
        traj = super().simulate(progress)
        # undo the model's own guard that writes the data at step 0
        steps = np.asarray(self.steps)
        a, b = self.coefficients(steps)
        rng = np.random.default_rng(0)
        img = traj.states["image"].values
        img[0] = (a[0] * self.clean + b[0] * rng.standard_normal(self.clean.shape)).astype(
            img.dtype)
        traj.states["intensity_squared"].values[0] = img[0].astype(float) ** 2
        return traj


def test_data_not_intact_at_step_zero_is_caught() -> None:
    names = failed_audits(NoisyStart, FORWARD)
    assert "schedule_normalization" in names, names


class WrongReverseFactor(ReverseDiffusion):
    """DDPM step with √ᾱ_k where the posterior mean needs √α_k (a classic slip)."""

    def _sample(self, x: np.ndarray, rng: np.random.Generator) -> dict[int, np.ndarray]:
        original = reverse_module._ddpm_coefficients

        def wrong(schedule: Any, k: int) -> tuple[float, float, float, float]:
            c0, ct, tilde, beta = original(schedule, k)
            return c0, ct * np.sqrt(schedule.alpha_bar[k] / (1 - beta)), tilde, beta

        reverse_module._ddpm_coefficients = wrong
        try:
            return super()._sample(x, rng)
        finally:
            reverse_module._ddpm_coefficients = original

    def reference_moments(self) -> Any:  # the reference stays the correct recursion
        return ReverseDiffusion.reference_moments(self)


def test_reverse_sampler_with_wrong_factor_is_caught() -> None:
    names = failed_audits(WrongReverseFactor, copy.deepcopy(REVERSE))
    assert names == ["reverse_moments"], names
