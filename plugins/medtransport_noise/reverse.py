"""The reverse (generative) process for data whose score is known in closed form: Gaussian
mixtures (REFERENCES §5). No neural network: the denoiser E[x₀ | x_t] is exact.

Data x₀ ~ Σ_k w_k·N(μ_k, S_k). With u = √ᾱ_t the forward marginal is the mixture

    q(x_t) = Σ_k w_k·N(u·μ_k, C_k),   C_k = u²·S_k + (1 − u²)·I,

and, given component k, x₀ | x_t is Gaussian with (Bishop 2006, §2.3.3)

    m_k(x) = μ_k + u·S_k·C_k⁻¹·(x − u·μ_k),     P_k = S_k − u²·S_k·C_k⁻¹·S_k,

with responsibilities r_k(x) ∝ w_k·N(x; u·μ_k, C_k); E[x₀ | x_t] = Σ_k r_k·m_k (Tweedie). For one
Gaussian in 1-D this is REFERENCES §5's E[x₀|x_t] = μ + √ᾱ·s²(x_t − √ᾱμ)/D_t, D_t = ᾱs² + 1 − ᾱ.

Samplers, stepping k → k' < k (ᾱ_0 = 1, diffusers' ``set_alpha_to_one``):

- DDPM ancestral (Ho et al. 2020, eqs. 6–7), k' = k − 1: mean c₀·x̂₀ + c_t·x_t with
  c₀ = √ᾱ_{k−1}·β_k/(1 − ᾱ_k), c_t = √α_k·(1 − ᾱ_{k−1})/(1 − ᾱ_k), and variance
  ``fixed_small`` β̃_k = (1 − ᾱ_{k−1})/(1 − ᾱ_k)·β_k, ``fixed_large`` β_k (both: no noise on the
  last step, as diffusers), or ``exact``: the true q(x_{k−1} | x_k) — per component the Gaussian
  N(c₀·m_k + c_t·x_k, β̃_k·I + c₀²·P_k), chosen with probability r_k (for one Gaussian,
  variance β̃ + c₀²·Var[x₀|x_t], REFERENCES §5). There is no ``fixed_large_log``: it gives NaN.
- DDIM (Song, Meng & Ermon 2021, ICLR, eq. 12): ε̂ = (x_k − √ᾱ_k·x̂₀)/√(1 − ᾱ_k),
  σ² = η²·(1 − ᾱ_{k'})/(1 − ᾱ_k)·(1 − ᾱ_k/ᾱ_{k'}),
  x_{k'} = √ᾱ_{k'}·x̂₀ + √(1 − ᾱ_{k'} − σ²)·ε̂ + σ·z.
- Probability-flow ODE (Song et al. 2021, eq. 13) of the VP-SDE, with u = √ᾱ as the clock
  (β dt = −dᾱ/ᾱ):  dx/du = (x̂₀(x) − u·x)/(1 − u²) = Σ_k r_k·[μ_k + u·(S_k − I)·C_k⁻¹·(x − u·μ_k)],
  the second form being regular on the whole of [0, 1] (so a zero terminal SNR is fine). Solved
  with an adaptive Runge–Kutta method (scipy's DOP853).

Every step is affine in x for one Gaussian, so the sampler's output mean and variance follow
exactly from m' = A·m + c, v' = A²·v + V along each eigen-direction of S (:func:`affine_moments`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.integrate import solve_ivp

from medtransport_noise.schedules import Schedule

__all__ = ["GaussianMixture", "affine_moments", "ddim_step", "ddim_steps", "ddpm_step",
           "sample_reverse"]

Variance = Literal["fixed_small", "fixed_large", "exact"]


@dataclass(frozen=True)
class GaussianMixture:
    """Σ_k w_k·N(μ_k, S_k) in d dimensions; weights sum to 1."""

    weights: np.ndarray  # (K,)
    means: np.ndarray  # (K, d)
    covariances: np.ndarray  # (K, d, d)

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    def moments(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean (d,) and covariance (d, d) of the mixture."""
        mean = self.weights @ self.means
        dev = self.means - mean
        cov = np.einsum("k,kij->ij", self.weights, self.covariances) + \
            np.einsum("k,ki,kj->ij", self.weights, dev, dev)
        return mean, cov

    def marginal(self, alpha_bar: float) -> GaussianMixture:
        """q(x_t) for ᾱ_t = ``alpha_bar``."""
        eye = np.eye(self.dim)
        return GaussianMixture(self.weights, np.sqrt(alpha_bar) * self.means,
                               alpha_bar * self.covariances + (1.0 - alpha_bar) * eye)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        k = rng.choice(len(self.weights), size=n, p=self.weights)
        z = rng.standard_normal((n, self.dim))
        chol = np.linalg.cholesky(self.covariances)
        return self.means[k] + np.einsum("nij,nj->ni", chol[k], z)

    def log_density(self, x: np.ndarray) -> np.ndarray:
        """log Σ_k w_k·N(x; μ_k, S_k) for x of shape (n, d)."""
        return _logsumexp(self._log_joint(x), axis=1)

    def _log_joint(self, x: np.ndarray) -> np.ndarray:
        inv = np.linalg.inv(self.covariances)
        _, logdet = np.linalg.slogdet(self.covariances)
        dev = x[:, None, :] - self.means[None]
        maha = np.einsum("nki,kij,nkj->nk", dev, inv, dev)
        return np.log(self.weights)[None] - 0.5 * (maha + logdet[None] +
                                                   self.dim * np.log(2 * np.pi))

    def posterior(self, x: np.ndarray, alpha_bar: float
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Responsibilities r (n, K), component posterior means m (n, K, d) and covariances
        P (K, d, d) of x₀ given x_t = x (see the module docstring)."""
        u = np.sqrt(alpha_bar)
        eye = np.eye(self.dim)
        c = alpha_bar * self.covariances + (1.0 - alpha_bar) * eye
        c_inv = np.linalg.inv(c)
        gain = u * np.einsum("kij,kjl->kil", self.covariances, c_inv)  # u·S·C⁻¹
        dev = x[:, None, :] - u * self.means[None]
        means = self.means[None] + _apply(gain, dev)
        post = self.covariances - u * np.einsum("kij,kjl->kil", gain, self.covariances)
        return self._responsibilities(c, c_inv, dev), means, post

    def denoise(self, x: np.ndarray, alpha_bar: float) -> np.ndarray:
        """E[x₀ | x_t = x]."""
        r, means, _ = self.posterior(x, alpha_bar)
        return (r[:, :, None] * means).sum(axis=1)

    def flow_velocity(self, x: np.ndarray, u: float) -> np.ndarray:
        """dx/du of the probability-flow ODE (regular form, see the module docstring)."""
        alpha_bar = u * u
        eye = np.eye(self.dim)
        c = alpha_bar * self.covariances + (1.0 - alpha_bar) * eye
        c_inv = np.linalg.inv(c)
        dev = x[:, None, :] - u * self.means[None]
        gain = u * np.einsum("kij,kjl->kil", self.covariances - eye, c_inv)
        comp = self.means[None] + _apply(gain, dev)
        if len(self.weights) == 1:
            return comp[:, 0]
        r = self._responsibilities(c, c_inv, dev)
        return (r[:, :, None] * comp).sum(axis=1)

    def _responsibilities(self, c: np.ndarray, c_inv: np.ndarray, dev: np.ndarray
                          ) -> np.ndarray:
        """r_k ∝ w_k·N(x; u·μ_k, C_k) over the components, (n, K), from the marginal
        covariances C, their inverses and the deviations x − u·μ_k."""
        _, logdet = np.linalg.slogdet(c)
        maha = (dev * _apply(c_inv, dev)).sum(axis=-1)
        logr = np.log(self.weights)[None] - 0.5 * (maha + logdet[None])
        logr -= logr.max(axis=1, keepdims=True)
        r = np.exp(logr)
        r /= r.sum(axis=1, keepdims=True)
        return r


def _apply(mats: np.ndarray, vecs: np.ndarray) -> np.ndarray:
    """mats[k] @ vecs[n, k] for (K, d, d) and (n, K, d), by a sum over the short axis d (much
    faster than einsum for d = 1 or 2)."""
    out = mats[None, :, :, 0] * vecs[:, :, None, 0]
    for j in range(1, vecs.shape[-1]):
        out += mats[None, :, :, j] * vecs[:, :, None, j]
    return out


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    m = a.max(axis=axis, keepdims=True)
    return (m + np.log(np.exp(a - m).sum(axis=axis, keepdims=True))).squeeze(axis)


def ddim_steps(timesteps: int, inference_steps: int,
               spacing: Literal["leading", "trailing"] = "leading") -> list[int]:
    """Descending steps k (≥ 1) DDIM visits, then 0; diffusers' ``leading`` (t = i·⌊T/n⌋)
    or ``trailing`` (t = round(T − i·T/n) − 1) spacing, with k = t + 1."""
    if spacing == "leading":
        ratio = timesteps // inference_steps
        ks = [i * ratio + 1 for i in range(inference_steps)][::-1]
    else:
        ks = [round(timesteps - i * timesteps / inference_steps) for i in
              range(inference_steps)]
    return [*sorted(set(ks), reverse=True), 0]


def _ddpm_coefficients(schedule: Schedule, k: int) -> tuple[float, float, float, float]:
    """c₀, c_t, β̃_k and β_k for the step k → k − 1."""
    ab, omab = schedule.alpha_bar, schedule.one_minus_alpha_bar
    beta = float(schedule.betas[k - 1])
    c0 = np.sqrt(ab[k - 1]) * beta / omab[k]
    ct = np.sqrt(1.0 - beta) * omab[k - 1] / omab[k]
    tilde = omab[k - 1] / omab[k] * beta
    return float(c0), float(ct), float(tilde), beta


def _ddim_coefficients(schedule: Schedule, k: int, kp: int, eta: float
                       ) -> tuple[float, float, float, float, float]:
    """u_k, √(1 − ᾱ_k), u_{k'}, κ = √(1 − ᾱ_{k'} − σ²), σ."""
    ab, omab = schedule.alpha_bar, schedule.one_minus_alpha_bar
    ratio = ab[k] / ab[kp]
    sigma2 = eta ** 2 * omab[kp] / omab[k] * (1.0 - ratio)
    kappa = np.sqrt(max(omab[kp] - sigma2, 0.0))
    return (float(np.sqrt(ab[k])), float(np.sqrt(omab[k])), float(np.sqrt(ab[kp])),
            float(kappa), float(np.sqrt(sigma2)))


def sample_reverse(data: GaussianMixture, schedule: Schedule, x_start: np.ndarray,
                   method: Literal["ddpm", "ddim", "probability_flow"],
                   output_steps: list[int], rng: np.random.Generator, *,
                   variance: Variance = "fixed_small", eta: float = 0.0,
                   steps: list[int] | None = None, rtol: float = 1e-8
                   ) -> dict[int, np.ndarray]:
    """Run a sampler from x_start at step ``steps[0]`` (default T) down to 0; return the
    samples at each of ``output_steps`` that the sampler visits."""
    n_steps = schedule.timesteps
    visit = steps if steps is not None else list(range(n_steps, -1, -1))
    wanted = set(output_steps)
    out: dict[int, np.ndarray] = {}
    x = np.array(x_start, dtype=np.float64)
    if method == "probability_flow":
        u_grid = np.sqrt(schedule.alpha_bar)
        k0 = visit[0]
        marks = sorted((k for k in wanted if k <= k0), reverse=True)
        n, d = x.shape
        if k0 in wanted:
            out[k0] = x.copy()
        targets = [k for k in marks if k != k0]
        if targets:
            def rhs(u: float, y: np.ndarray) -> np.ndarray:
                return data.flow_velocity(y.reshape(n, d), u).reshape(-1)

            sol = solve_ivp(rhs, (u_grid[k0], 1.0), x.reshape(-1), method="DOP853",
                            t_eval=[u_grid[k] for k in targets], rtol=rtol, atol=rtol * 1e-2)
            if not sol.success:
                raise RuntimeError(f"probability-flow ODE failed: {sol.message}")
            for j, k in enumerate(targets):
                out[k] = sol.y[:, j].reshape(n, d)
        return out
    if visit[0] in wanted:
        out[visit[0]] = x.copy()
    ab = schedule.alpha_bar
    for k, kp in itertools.pairwise(visit):
        if method == "ddpm":
            if variance == "exact":
                c0, ct, tilde, _ = _ddpm_coefficients(schedule, k)
                r, means, post = data.posterior(x, ab[k])
                comp = _choose(r, rng)
                mean = c0 * means[np.arange(len(x)), comp] + ct * x
                cov = tilde * np.eye(data.dim)[None] + c0 ** 2 * post
                chol = np.linalg.cholesky(cov)
                z = rng.standard_normal(x.shape)
                x = mean + _apply(chol, z[:, None, :].repeat(len(chol), axis=1))[
                    np.arange(len(x)), comp]
            else:
                x = ddpm_step(data, schedule, x, k, variance,
                              rng.standard_normal(x.shape) if k > 1 else None)
        else:
            sigma = _ddim_coefficients(schedule, k, kp, eta)[4]
            x = ddim_step(data, schedule, x, k, kp, eta,
                          rng.standard_normal(x.shape) if sigma > 0 else None)
        if kp in wanted:
            out[kp] = x.copy()
    return out


def ddpm_step(data: GaussianMixture, schedule: Schedule, x: np.ndarray, k: int,
              variance: Literal["fixed_small", "fixed_large"], z: np.ndarray | None
              ) -> np.ndarray:
    """One DDPM ancestral step k → k − 1 with a fixed variance and the given N(0, I) draw
    ``z`` (unused, and may be None, on the last step, which adds no noise)."""
    c0, ct, tilde, beta = _ddpm_coefficients(schedule, k)
    mean = c0 * data.denoise(x, float(schedule.alpha_bar[k])) + ct * x
    if k == 1:
        return mean
    assert z is not None
    return mean + np.sqrt(tilde if variance == "fixed_small" else beta) * z


def ddim_step(data: GaussianMixture, schedule: Schedule, x: np.ndarray, k: int, kp: int,
              eta: float, z: np.ndarray | None) -> np.ndarray:
    """One DDIM step k → k' with the given N(0, I) draw ``z`` (None when σ = 0)."""
    uk, sk, up, kappa, sigma = _ddim_coefficients(schedule, k, kp, eta)
    x0 = data.denoise(x, float(schedule.alpha_bar[k]))
    out = up * x0 + kappa * (x - uk * x0) / sk
    if sigma > 0:
        assert z is not None
        out = out + sigma * z
    return out


def _choose(r: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if r.shape[1] == 1:
        return np.zeros(len(r), dtype=int)
    u = rng.random(len(r))
    return np.minimum((np.cumsum(r, axis=1) < u[:, None]).sum(axis=1), r.shape[1] - 1)


def affine_moments(mean: float, var: float, schedule: Schedule,
                   method: Literal["ddpm", "ddim", "probability_flow"], start: tuple[float, float],
                   *, variance: Variance = "fixed_small", eta: float = 0.0,
                   steps: list[int] | None = None) -> dict[int, tuple[float, float]]:
    """Exact mean and variance of a 1-D sampler's output at every visited step, for data
    N(``mean``, ``var``) and x at the first step ~ N(start[0], start[1]) (module docstring)."""
    n_steps = schedule.timesteps
    ab = schedule.alpha_bar
    omab = schedule.one_minus_alpha_bar
    visit = steps if steps is not None else list(range(n_steps, -1, -1))
    m, v = start
    out = {visit[0]: (m, v)}

    def dd(k: int) -> float:
        return ab[k] * var + omab[k]

    if method == "probability_flow":
        k0 = visit[0]
        u0 = np.sqrt(ab[k0])
        for k in visit[1:]:
            g = np.sqrt(dd(k) / dd(k0))
            out[k] = (np.sqrt(ab[k]) * mean + g * (m - u0 * mean), g * g * v)
        return out
    for k, kp in itertools.pairwise(visit):
        u = np.sqrt(ab[k])
        a = u * var / dd(k)
        b = mean * omab[k] / dd(k)
        if method == "ddpm":
            c0, ct, tilde, beta = _ddpm_coefficients(schedule, k)
            coef, const = c0 * a + ct, c0 * b
            if variance == "exact":
                noise = tilde + c0 ** 2 * var * omab[k] / dd(k)
            elif k > 1:
                noise = tilde if variance == "fixed_small" else beta
            else:
                noise = 0.0
        else:
            uk, sk, up, kappa, sigma = _ddim_coefficients(schedule, k, kp, eta)
            coef = up * a + kappa * (1.0 - uk * a) / sk
            const = up * b - kappa * uk * b / sk
            noise = sigma ** 2
        m, v = coef * m + const, coef * coef * v + noise
        out[kp] = (m, v)
    return out
