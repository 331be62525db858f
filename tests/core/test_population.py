"""Population sampling: log-normal, reproducible patient by patient whatever the batching."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medtransport.errors import ScenarioError
from medtransport.population import sample_etas
from medtransport.runner import prepare


def test_the_same_patient_gets_the_same_eta_in_any_block() -> None:
    whole = sample_etas(7, ["a", "b"], [0.3, 0.1], 0, 1000)
    for start, stop in [(0, 10), (10, 400), (399, 1000), (512, 513)]:
        block = sample_etas(7, ["a", "b"], [0.3, 0.1], start, stop)
        for name in ("a", "b"):
            np.testing.assert_array_equal(block[name], whole[name][start:stop])
    other = sample_etas(8, ["a", "b"], [0.3, 0.1], 0, 1000)
    assert not np.array_equal(other["a"], whole["a"])


def test_etas_are_normal_with_the_declared_sd() -> None:
    n, omega = 200_000, 0.3
    eta = sample_etas(1, ["cl", "v"], [omega, 0.2], 0, n)
    # SE of a sample mean σ/√n, of a sample SD ≈ σ/√(2n): 5 standard errors
    assert abs(eta["cl"].mean()) < 5 * omega / math.sqrt(n)
    assert abs(eta["cl"].std() - omega) < 5 * omega / math.sqrt(2 * n)
    assert abs(np.corrcoef(eta["cl"], eta["v"])[0, 1]) < 5 / math.sqrt(n)
    assert np.isfinite(eta["cl"]).all()


def test_a_model_without_population_parameters_refuses_a_population() -> None:
    with pytest.raises(ScenarioError, match=r"population: diffusion\.fick runs one patient"):
        prepare({"name": "x", "model": "diffusion.fick",
                 "domain": {"shape": "box", "size": ["1 mm"], "cells": [4]},
                 "parameters": {"diffusivity": "1e-9 m^2/s",
                                "initial": {"kind": "uniform", "amount": "1 mol/m^2"}},
                 "population": {"size": 3}, "time": {"stop": "1 s", "step": "1 s"}})
