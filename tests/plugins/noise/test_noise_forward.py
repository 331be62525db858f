"""The forward process: closed form and Markov chain against the exact marginals and against
each other, the variance-budget ledger, and clear errors for bad scenarios."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
from scipy import stats

from medtransport.errors import ScenarioError
from medtransport.runner import run
from medtransport.testing import build_model
from medtransport_noise.forward import ForwardDiffusion

ALPHA = 1e-4  # significance of the distribution tests (fixed seeds: reproducible)
STEPS = [1, 10, 100, 500, 1000]

BASE: dict[str, Any] = {
    "name": "forward test",
    "model": "noise.forward",
    "parameters": {"input": {"kind": "phantom", "size": [64, 64]}, "output_steps": STEPS},
    "time": {"stop": "1 s", "step": "1 ms"},
    "seed": 1,
}


def _run(**changes: Any) -> Any:
    sc = copy.deepcopy(BASE)
    for k, v in changes.items():
        if k == "parameters":
            sc["parameters"].update(v)
        else:
            sc[k] = v
    return run(sc)


def _residuals(ds: Any) -> dict[int, np.ndarray]:
    """(x_k − √ᾱ_k·x_0)/√(1 − ᾱ_k) per output step, ᾱ from the β written here."""
    beta = np.linspace(1e-4, 0.02, 1000)
    ab = np.concatenate([[1.0], np.cumprod(1 - beta)])
    x0 = ds["clean"].values.astype(float).ravel()
    out = {}
    for i, k in enumerate(ds["step"].values):
        if k:
            x = ds["image"].isel(time=i).values.astype(float).ravel()
            out[int(k)] = (x - np.sqrt(ab[k]) * x0) / np.sqrt(1 - ab[k])
    return out


@pytest.mark.parametrize("method", ["closed_form", "markov_chain"])
def test_marginals_are_the_exact_gaussians(method: str) -> None:
    ds = _run(solver={"method": method})
    assert ds.attrs["audit_status"] == "passed"
    for k, z in _residuals(ds).items():
        n = z.size
        assert abs(z.mean()) < 5 / np.sqrt(n), k
        assert abs(np.mean(z * z) - 1) < 5 * np.sqrt(2 / n), k
        assert stats.kstest(z, "norm").pvalue > ALPHA, k


def test_chain_and_closed_form_agree_in_distribution() -> None:
    a = _residuals(_run(solver={"method": "closed_form"}, seed=3))
    b = _residuals(_run(solver={"method": "markov_chain"}, seed=4))
    for k in a:
        assert stats.ks_2samp(a[k], b[k]).pvalue > ALPHA, k


def test_chain_is_a_chain_and_closed_form_is_not() -> None:
    """One chain path: Corr(r_k, r_k') = √(ᾱ_k'/ᾱ_k)·√((1 − ᾱ_k)/(1 − ᾱ_k')) for k < k'
    (x_k' = √(ᾱ_k'/ᾱ_k)·x_k + independent noise); independent marginals: 0."""
    beta = np.linspace(1e-4, 0.02, 1000)
    ab = np.concatenate([[1.0], np.cumprod(1 - beta)])
    chain = _residuals(_run(solver={"method": "markov_chain"}))
    closed = _residuals(_run())
    n = chain[10].size
    for k, kp in [(10, 100), (100, 500)]:
        exact = np.sqrt(ab[kp] / ab[k]) * np.sqrt((1 - ab[k]) / (1 - ab[kp]))
        measured = np.corrcoef(chain[k], chain[kp])[0, 1]
        se = (1 - exact ** 2) / np.sqrt(n)
        assert abs(measured - exact) < 5 * se, (k, kp, measured, exact)
        assert abs(np.corrcoef(closed[k], closed[kp])[0, 1]) < 5 / np.sqrt(n)


def test_chain_coefficients_follow_the_exact_affine_recursion() -> None:
    """m_k = √(1 − β_k)·m_{k−1}, v_k = (1 − β_k)·v_{k−1} + β_k give √ᾱ_k and 1 − ᾱ_k."""
    ds = _run(solver={"method": "markov_chain"},
              parameters={"schedule": {"kind": "sigmoid"}})
    s = ds["step"].values
    beta = ds["beta"].values
    ab = np.concatenate([[1.0], np.cumprod(1 - beta)])
    np.testing.assert_allclose(ds["signal_coefficient"].values, np.sqrt(ab[s]), rtol=1e-12)
    np.testing.assert_allclose(ds["noise_coefficient"].values ** 2, 1 - ab[s], rtol=1e-10)


def test_variance_budget_ledger_for_data_that_are_not_unit_variance() -> None:
    """minmax to [−1, 1]: m₂(x_k) = ᾱ·m₂(x_0) + 1 − ᾱ, within the stated standard error."""
    ds = _run(parameters={"normalize": "minmax"})
    x0 = ds["clean"].values.astype(float)
    m2 = float(np.mean(x0 ** 2))
    assert m2 < 0.9
    ab = ds["signal_fraction"].values
    measured = ds["variance_stored"].values
    n = x0.size
    se = np.sqrt((4 * ab * (1 - ab) * m2 + 2 * (1 - ab) ** 2) / n)
    assert np.all(np.abs(measured - (ab * m2 + 1 - ab)) <= 5 * se + 1e-6)
    assert measured[-1] == pytest.approx(1.0, abs=5 * np.sqrt(2 / n))
    np.testing.assert_allclose(ds["variance_sink"].values, (1 - ab) * m2, rtol=1e-6)


def test_float64_coefficients_keep_the_noise_at_small_t() -> None:
    """ᾱ_1 = 1 − 1e-4 rounds to 1 in float16: cast first, no noise. Cast last: sd 0.01."""
    ds = _run()
    z = ds["image"].isel(time=1).values.astype(float) - \
        np.sqrt(1 - 1e-4) * ds["clean"].values.astype(float)
    assert ds["step"].values[1] == 1
    assert np.std(z) == pytest.approx(0.01, rel=5 * np.sqrt(1 / (2 * z.size)))
    assert np.float16(1 - 1e-4) == 1.0  # the failure mode the float64 path avoids


def test_same_seed_same_images_and_snr_outputs() -> None:
    a, b = _run(), _run()
    assert np.array_equal(a["image"].values, b["image"].values)
    snr = a["snr"].values
    ab = a["alpha_bar"].values
    np.testing.assert_allclose(snr, ab / (1 - ab), rtol=1e-9)
    assert a.attrs["terminal_snr"] == pytest.approx(snr[-1])
    np.testing.assert_allclose(a["noise_level"].values, np.sqrt(1 - ab), rtol=1e-9)


@pytest.mark.parametrize(("changes", "field"), [
    ({"time": {"stop": "1 s", "step": "2 ms"}}, "time.step"),
    ({"parameters": {"output_steps": [5, 1001]}}, "parameters.output_steps"),
    ({"domain": {"shape": "box", "size": ["1 mm"], "cells": [4]}}, "domain"),
])
def test_bad_scenarios_name_the_field(changes: dict[str, Any], field: str) -> None:
    sc = copy.deepcopy(BASE)
    for k, v in changes.items():
        if k == "parameters":
            sc["parameters"].update(v)
        else:
            sc[k] = v
    with pytest.raises(ScenarioError) as err:
        build_model(ForwardDiffusion, sc)
    assert any(p.startswith(field) for p, _ in err.value.problems), err.value.problems
