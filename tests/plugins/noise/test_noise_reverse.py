"""The analytic reverse process: the exact affine recursion against N(μ, s²) and the forward
marginals, the biased samplers against their recursion by Monte Carlo, mixtures, no NaN."""

from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from medtransport.errors import ScenarioError
from medtransport.runner import run
from medtransport.testing import build_model, failed_audits
from medtransport_noise.reverse import GaussianMixture, affine_moments, ddim_steps, sample_reverse
from medtransport_noise.reverse_model import ReverseDiffusion
from medtransport_noise.schedules import Schedule

MU, VAR = 1.5, 0.3
ALPHA = 1e-4


def _gauss() -> GaussianMixture:
    return GaussianMixture(np.array([1.0]), np.array([[MU]]), np.array([[[VAR]]]))


def _marginal(s: Schedule, k: int) -> tuple[float, float]:
    """q(x_k) for N(μ, s²) data, written out: N(√ᾱμ, ᾱs² + 1 − ᾱ)."""
    ab = s.alpha_bar[k]
    return math.sqrt(ab) * MU, ab * VAR + 1 - ab


@pytest.mark.parametrize("kind", ["linear", "squaredcos_cap_v2", "sigmoid"])
def test_exact_ddpm_reproduces_every_forward_marginal(kind: str) -> None:
    s = Schedule.build(kind)
    moments = affine_moments(MU, VAR, s, "ddpm", _marginal(s, 1000), variance="exact")
    for k in (999, 700, 300, 10, 1):
        assert moments[k] == pytest.approx(_marginal(s, k), rel=1e-10)
    assert moments[0] == pytest.approx((MU, VAR), rel=1e-12)


def test_zero_terminal_snr_makes_the_standard_normal_start_exact() -> None:
    s = Schedule.build("linear", rescale=True)
    for method, kw in (("ddpm", {"variance": "exact"}), ("probability_flow", {})):
        m = affine_moments(MU, VAR, s, method, (0.0, 1.0), **kw)  # type: ignore[arg-type]
        assert m[0] == pytest.approx((MU, VAR), rel=1e-12), method
    # with the plain schedule the N(0, 1) start leaves a (small) bias
    m = affine_moments(MU, VAR, Schedule.build("linear"), "ddpm", (0.0, 1.0), variance="exact")
    assert 1e-6 < abs(m[0][0] - MU) < 1e-2


def test_biased_samplers_and_known_identities() -> None:
    s = Schedule.build("linear")
    start = _marginal(s, 1000)
    small = affine_moments(MU, VAR, s, "ddpm", start, variance="fixed_small")[0]
    large = affine_moments(MU, VAR, s, "ddpm", start, variance="fixed_large")[0]
    ddim0 = affine_moments(MU, VAR, s, "ddim", start, eta=0.0)[0]
    ddim1 = affine_moments(MU, VAR, s, "ddim", start, eta=1.0)[0]
    # means are exact (every step is exact in the mean); variances biased by known amounts
    for m in (small, large, ddim0, ddim1):
        assert m[0] == pytest.approx(MU, rel=1e-12)
    assert small[1] < VAR < large[1]
    # DDIM with η = 1 over all steps is DDPM with β̃ (Song et al. 2021, §4.1)
    assert ddim1[1] == pytest.approx(small[1], rel=1e-12)
    assert 0.29 < small[1] < ddim0[1] < VAR


SHORT = Schedule.build("linear", timesteps=100, beta_end=0.2)


@pytest.mark.parametrize(("method", "kw"), [
    ("ddpm", {"variance": "fixed_small"}), ("ddpm", {"variance": "fixed_large"}),
    ("ddpm", {"variance": "exact"}), ("ddim", {"eta": 0.0}), ("ddim", {"eta": 0.7}),
    ("probability_flow", {}),
])
def test_monte_carlo_agrees_with_the_recursion(method: str, kw: dict[str, Any]) -> None:
    n = 20_000
    rng = np.random.default_rng(3)
    x = rng.standard_normal((n, 1))
    steps = ddim_steps(100, 25) if method == "ddim" else None  # DDIM starts at its first step
    out = sample_reverse(_gauss(), SHORT, x, method, [0], rng, steps=steps, **kw)[0][:, 0]
    m, v = affine_moments(MU, VAR, SHORT, method, (0.0, 1.0), steps=steps, **kw)[0]
    assert abs(out.mean() - m) < 5 * math.sqrt(v / n)
    assert abs(out.var() - v) < 5 * v * math.sqrt(2 / n)
    assert stats.kstest(out, "norm", args=(m, math.sqrt(v))).pvalue > ALPHA


def test_probability_flow_solution_is_the_exact_transport_map() -> None:
    """x(u) = uμ + √(D(u)/D(u_T))·(x_T − u_T·μ), sample by sample."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 1))
    out = sample_reverse(_gauss(), SHORT, x, "probability_flow", [50, 0], rng, rtol=1e-10)
    ab = SHORT.alpha_bar
    for k in (50, 0):
        d = ab[k] * VAR + 1 - ab[k]
        d_t = ab[100] * VAR + 1 - ab[100]
        exact = math.sqrt(ab[k]) * MU + math.sqrt(d / d_t) * (x - math.sqrt(ab[100]) * MU)
        np.testing.assert_allclose(out[k], exact, rtol=1e-7, atol=1e-8)


def _mixture() -> GaussianMixture:
    return GaussianMixture(np.array([0.3, 0.7]), np.array([[-2.0, 0.0], [1.5, 1.0]]),
                           np.array([np.diag([0.2, 0.5]), [[0.4, 0.2], [0.2, 0.3]]]))


@pytest.mark.parametrize("method", ["ddpm", "probability_flow"])
def test_exact_samplers_generate_the_mixture(method: str) -> None:
    g = _mixture()
    n = 10_000
    rng = np.random.default_rng(8)
    x0 = g.marginal(float(SHORT.alpha_bar[100])).sample(n, rng)
    out = sample_reverse(g, SHORT, x0, method, [0], rng, variance="exact", rtol=1e-6)[0]
    mean, cov = g.moments()
    assert np.all(np.abs(out.mean(axis=0) - mean) < 5 * np.sqrt(np.diag(cov) / n))
    # each axis' marginal against the mixture's CDF Σ w_k Φ((x − μ_k)/σ_k)
    for a in range(2):
        sd = np.sqrt(g.covariances[:, a, a])

        def cdf(v: np.ndarray, a: int = a, sd: np.ndarray = sd) -> np.ndarray:
            return sum(w * stats.norm.cdf(v, m, s) for w, m, s in
                       zip(g.weights, g.means[:, a], sd, strict=True))

        assert stats.kstest(out[:, a], cdf).pvalue > ALPHA


def test_no_variance_option_gives_nan() -> None:
    g = _mixture()
    rng = np.random.default_rng(1)
    for kind in ("linear", "squaredcos_cap_v2"):
        for rescale in (False, True):
            s = Schedule.build(kind, timesteps=100, rescale=rescale)
            for variance in ("fixed_small", "fixed_large", "exact"):
                out = sample_reverse(g, s, rng.standard_normal((200, 2)), "ddpm", [0], rng,
                                     variance=variance)  # type: ignore[arg-type]
                assert np.isfinite(out[0]).all(), (kind, rescale, variance)
            for method in ("ddim", "probability_flow"):
                out = sample_reverse(g, s, rng.standard_normal((200, 2)), method,  # type: ignore[arg-type]
                                     [0], rng, eta=1.0)
                assert np.isfinite(out[0]).all(), (kind, rescale, method)


REVERSE: dict[str, Any] = {
    "name": "reverse test",
    "model": "noise.reverse",
    "parameters": {"schedule": {"timesteps": 100, "beta_end": 0.2},
                   "data": [{"mean": [1.0, -0.5], "covariance": [[0.5, 0.1], [0.1, 0.3]]}],
                   "samples": 3000, "output_steps": [60, 20, 0]},
    "time": {"stop": "1 s", "step": "10 ms"},
    "seed": 6,
}


def test_fixed_large_log_is_not_offered() -> None:
    sc = copy.deepcopy(REVERSE)
    sc["solver"] = {"method": "ddpm", "variance": "fixed_large_log"}
    with pytest.raises(ScenarioError) as err:
        build_model(ReverseDiffusion, sc)
    assert any(p == "solver.variance" for p, _ in err.value.problems)


@pytest.mark.parametrize("solver", [{"method": "ddpm", "variance": "fixed_large"},
                                    {"method": "ddim", "eta": 0.3, "inference_steps": 10,
                                     "spacing": "trailing"}])
def test_model_audits_moments_against_the_recursion(solver: dict[str, Any]) -> None:
    sc = copy.deepcopy(REVERSE)
    sc["solver"] = solver
    ds = run(sc)
    assert ds.attrs["audit_status"] == "passed"
    assert "affine recursion" in ds.attrs["moment_reference"]
    assert "reference_variance" in ds and ds["probability_stored"].values[-1] <= 1.0 + 1e-12


MIXTURE_EXAMPLE = (Path(__file__).parents[3] / "examples" / "scenarios"
                   / "noise_mixture_reverse.yaml")


def test_samples_outside_the_window_are_stored_not_booked_as_an_outflow() -> None:
    # samples start from N(0, I) and gather onto the mixture: the fraction outside the window
    # falls again, so as an "outflow" its cumulative curve went down
    ds = run(str(MIXTURE_EXAMPLE))
    outside = ds["outside_window"].values
    assert np.any(np.diff(outside) < 0) and np.max(outside) > 0
    assert "probability_outflow" not in ds
    # every sample is somewhere: in the window's density or outside it
    np.testing.assert_allclose(ds["probability_stored"].values, 1.0, rtol=1e-12)

    class Forgets(ReverseDiffusion):  # the mutant: the outside part left out of the store
        conserved = tuple(dataclasses.replace(sp, outside=None)
                          for sp in ReverseDiffusion.conserved)

    assert "mass_balance[probability]" in failed_audits(Forgets, str(MIXTURE_EXAMPLE))
