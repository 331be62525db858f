"""Noise schedules of the DDPM forward process (REFERENCES §5), as diffusers' ``DDPMScheduler``
defines them, computed in float64 and cast only by the caller, last.

The forward chain over steps k = 1 … T (diffusers' timestep index t = k − 1) is

    q(x_k | x_{k−1}) = N(√(1 − β_k)·x_{k−1}, β_k·I),      ᾱ_k = Π_{j≤k} (1 − β_j),  ᾱ_0 = 1,

so that q(x_k | x_0) = N(√ᾱ_k·x_0, (1 − ᾱ_k)·I) and SNR_k = ᾱ_k/(1 − ᾱ_k).

Schedules (β_k for k = 1 … T):

- ``linear`` (Ho et al. 2020, NeurIPS, arXiv:2006.11239): β evenly spaced from β_start to
  β_end (default 1e-4 to 0.02);
- ``scaled_linear`` (latent diffusion): √β evenly spaced from √β_start to √β_end;
- ``squaredcos_cap_v2`` (Nichol & Dhariwal 2021, ICML, arXiv:2102.09672, eq. 17):
  f(u) = cos²(((u + s)/(1 + s))·π/2) with s = 0.008, β_k = min(1 − f(k/T)/f((k−1)/T), 0.999);
- ``sigmoid`` (diffusers): β = σ(linspace(−6, 6, T))·(β_end − β_start) + β_start;
- ``user``: the given β_1 … β_T (each in (0, 1]).

``rescale_zero_terminal_snr`` (Lin et al. 2024, WACV, arXiv:2305.08891, Algorithm 1) shifts and
scales √ᾱ so that √ᾱ_T = 0 while √ᾱ_1 is kept:

    √ᾱ'_k = (√ᾱ_k − √ᾱ_T)·√ᾱ_1/(√ᾱ_1 − √ᾱ_T),   β'_k = 1 − ᾱ'_k/ᾱ'_{k−1}   (β'_T = 1).

Continuous view (Song et al. 2021, ICLR, arXiv:2011.13456, §3.4 and App. B): the chain is the
Euler–Maruyama discretisation, with step Δt, of the variance-preserving SDE

    dx = −½·β(t)·x dt + √β(t) dW,     β(t) = β_k/Δt  for t ∈ ((k − 1)Δt, kΔt],

whose exact marginal has ᾱ(t) = exp(−∫₀ᵗ β(s) ds); the two agree to O(β²) per step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

__all__ = ["SCHEDULE_KINDS", "Schedule", "make_betas", "rescale_zero_terminal_snr"]

SCHEDULE_KINDS = ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid", "user")
ScheduleKind = Literal["linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid", "user"]

#: diffusers' cap on the cosine schedule's β (``max_beta``), which keeps β_T < 1.
COSINE_MAX_BETA = 0.999
COSINE_OFFSET = 0.008


def _cosine_alpha_bar(u: np.ndarray) -> np.ndarray:
    return np.cos((u + COSINE_OFFSET) / (1.0 + COSINE_OFFSET) * math.pi / 2.0) ** 2


def make_betas(kind: ScheduleKind, timesteps: int = 1000, beta_start: float = 1e-4,
               beta_end: float = 0.02, betas: np.ndarray | None = None) -> np.ndarray:
    """β_1 … β_T in float64 for one of :data:`SCHEDULE_KINDS` (see the module docstring)."""
    t = int(timesteps)
    if kind == "linear":
        return np.linspace(beta_start, beta_end, t, dtype=np.float64)
    if kind == "scaled_linear":
        return np.linspace(math.sqrt(beta_start), math.sqrt(beta_end), t,
                           dtype=np.float64) ** 2
    if kind == "squaredcos_cap_v2":
        k = np.arange(t, dtype=np.float64)
        ratio = _cosine_alpha_bar((k + 1.0) / t) / _cosine_alpha_bar(k / t)
        return np.minimum(1.0 - ratio, COSINE_MAX_BETA)
    if kind == "sigmoid":
        s = 1.0 / (1.0 + np.exp(-np.linspace(-6.0, 6.0, t, dtype=np.float64)))
        return s * (beta_end - beta_start) + beta_start
    if kind == "user":
        if betas is None:
            raise ValueError("a user schedule needs its betas")
        return np.asarray(betas, dtype=np.float64).copy()
    raise ValueError(f"unknown schedule kind {kind!r}; expected one of {SCHEDULE_KINDS}")


def rescale_zero_terminal_snr(betas: np.ndarray) -> np.ndarray:
    """Lin et al. (2024) Algorithm 1: the β that give √ᾱ_T = 0 with √ᾱ_1 unchanged."""
    root = np.sqrt(np.cumprod(1.0 - np.asarray(betas, dtype=np.float64)))
    first, last = root[0], root[-1]
    root = (root - last) * first / (first - last)
    alpha_bar = root ** 2
    alphas = np.concatenate([alpha_bar[:1], alpha_bar[1:] / alpha_bar[:-1]])
    return 1.0 - alphas


@dataclass(frozen=True)
class Schedule:
    """β_1 … β_T (float64) and everything that follows from them.

    Arrays indexed by step k = 0 … T carry ᾱ_0 = 1 (the data intact) in front; ``betas`` and
    ``alphas`` are indexed k − 1 like diffusers' (``alphas_cumprod[t] == alpha_bar[t + 1]``).
    """

    betas: np.ndarray
    kind: str = "user"
    rescaled: bool = False
    _cache: dict[str, np.ndarray] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def build(cls, kind: ScheduleKind, timesteps: int = 1000, beta_start: float = 1e-4,
              beta_end: float = 0.02, betas: np.ndarray | None = None,
              rescale: bool = False) -> Schedule:
        b = make_betas(kind, timesteps, beta_start, beta_end, betas)
        if rescale:
            b = rescale_zero_terminal_snr(b)
        b.setflags(write=False)
        return cls(b, kind, rescale)

    @property
    def timesteps(self) -> int:
        return int(self.betas.size)

    @property
    def alphas(self) -> np.ndarray:
        return 1.0 - self.betas

    @property
    def alphas_cumprod(self) -> np.ndarray:
        """ᾱ_1 … ᾱ_T — diffusers' ``alphas_cumprod`` (index t = k − 1)."""
        if "ac" not in self._cache:
            self._cache["ac"] = np.cumprod(1.0 - self.betas)
        return self._cache["ac"]

    @property
    def alpha_bar(self) -> np.ndarray:
        """ᾱ_k for k = 0 … T (ᾱ_0 = 1)."""
        return np.concatenate([[1.0], self.alphas_cumprod])

    @property
    def signal_coefficient(self) -> np.ndarray:
        """√ᾱ_k, k = 0 … T."""
        return np.sqrt(self.alpha_bar)

    @property
    def noise_coefficient(self) -> np.ndarray:
        """√(1 − ᾱ_k), k = 0 … T, from the complement computed without cancellation."""
        return np.sqrt(self.one_minus_alpha_bar)

    @property
    def one_minus_alpha_bar(self) -> np.ndarray:
        """1 − ᾱ_k, k = 0 … T, as −expm1(Σ log(1 − β)) so it keeps its digits at small k."""
        with np.errstate(divide="ignore"):  # β = 1 (zero terminal SNR) gives log 0 = −inf
            log_ab = np.concatenate([[0.0], np.cumsum(np.log1p(-self.betas))])
        return 0.0 - np.expm1(log_ab)  # 0.0 − (−0.0): ᾱ_0 = 1 leaves +0, not −0

    @property
    def snr(self) -> np.ndarray:
        """SNR_k = ᾱ_k/(1 − ᾱ_k) for k = 0 … T (inf at k = 0, 0 at a zero terminal SNR)."""
        with np.errstate(divide="ignore"):
            return self.alpha_bar / self.one_minus_alpha_bar

    def beta_continuous(self, t: np.ndarray, dt: float) -> np.ndarray:
        """β(t) = β_k/Δt of the VP-SDE, piecewise constant on ((k − 1)Δt, kΔt] (unit 1/[dt])."""
        k = np.clip(np.ceil(np.asarray(t, dtype=float) / dt - 1e-12).astype(int), 1,
                    self.timesteps)
        return self.betas[k - 1] / dt

    def alpha_bar_continuous(self, t: np.ndarray, dt: float) -> np.ndarray:
        """exp(−∫₀ᵗ β(s) ds) for the piecewise-constant β(t) of :meth:`beta_continuous` — the
        VP-SDE's exact signal fraction, to compare with the chain's Π(1 − β)."""
        t = np.asarray(t, dtype=float)
        cum = np.concatenate([[0.0], np.cumsum(self.betas)])
        k = np.clip(np.floor(t / dt).astype(int), 0, self.timesteps)
        partial = np.where(k < self.timesteps, (t / dt - k) * self.betas[np.minimum(
            k, self.timesteps - 1)], 0.0)
        return np.exp(-(cum[k] + partial))
