"""The telegrapher (Cattaneo) equation: the AP scheme against Kac's Green's function, the
persistent random walk, its τ → 0 limit (the core's backward Euler) and its audits, each with
a mutant it catches."""

from __future__ import annotations

import copy
import itertools
import math
from typing import Any

import numpy as np
import pytest
from scipy import stats
from scipy.integrate import quad

import medtransport
from medtransport.domain import Grid
from medtransport.numerics.finite_volume import DiffusionProblem, solve
from medtransport.numerics.telegrapher import (
    front_margin,
    goldstein_kac,
    persistent_walk,
    solve_telegrapher,
)
from medtransport.plugins import get_registry
from medtransport.testing import failed_audits

D, TAU = 1.0, 0.5
C, A = math.sqrt(D / TAU), 1 / (2 * TAU)


def point_source(n: int = 1000, half: float = 10.0) -> tuple[Grid, np.ndarray]:
    g = Grid("cartesian", (-half,), (half,), (n,))
    u0 = np.zeros(n)
    u0[n // 2 - 1: n // 2 + 1] = 1 / (2 * g.spacing[0])  # x = 0 is a face: split the mass
    return g, u0


def test_the_green_function_is_a_probability_density_with_two_fronts() -> None:
    t = 1.3
    inner = quad(lambda x: goldstein_kac(np.array([x]), t, C, A)[0][0], -C * t, C * t,
                 limit=200)[0]
    _, front = goldstein_kac(np.array([0.0]), t, C, A)
    assert inner + 2 * front == pytest.approx(1.0, abs=1e-9)
    assert goldstein_kac(np.array([1.01 * C * t]), t, C, A)[0][0] == 0.0


def test_the_ap_scheme_matches_the_goldstein_kac_green_function() -> None:
    g, u0 = point_source()
    t, dt = 2.0, 0.005
    sol = solve_telegrapher(g, D, TAU, u0, dt, round(t / dt), output_every=100)
    x = g.centers(0)
    exact, _ = goldstein_kac(x, t, C, A)
    inner = np.abs(x) < 0.7 * C * t  # away from the smeared fronts
    err = np.max(np.abs(sol.u[-1][inner] - exact[inner])) / exact[inner].max()
    assert err < 5e-3
    assert np.all(np.abs(sol.mass - 1.0) < 1e-12)  # closed walls: mass exact


def test_the_persistent_walk_is_the_microscopic_model_of_the_scheme() -> None:
    """Walkers at ±c reversing at rate 1/(2τ): a front mass e^{−t/2τ}/2 at each of ±ct, and the
    interior histogram agrees with the scheme (Pearson χ², level 1e-3)."""
    t, n = 2.0, 40_000
    x = persistent_walk(n, C, A, [t], seed=3)[0]
    assert np.max(np.abs(x)) <= C * t * (1 + 1e-12)
    on_front = np.isclose(np.abs(x), C * t, rtol=1e-12)
    p_front = math.exp(-A * t)
    assert abs(on_front.mean() - p_front) < 5 * math.sqrt(p_front * (1 - p_front) / n)
    g, u0 = point_source()
    sol = solve_telegrapher(g, D, TAU, u0, 0.005, 400, output_every=400)
    edges = 7 * g.spacing[0] * np.arange(-14, 15)  # whole cells, inside ±0.7ct
    counts, _ = np.histogram(x[~on_front], edges)
    centres = g.centers(0)
    prob = np.array([np.sum(sol.u[-1][(centres > lo) & (centres < hi)]) * g.spacing[0]
                     for lo, hi in itertools.pairwise(edges)])
    x2 = np.sum((counts - n * prob) ** 2 / (n * prob))
    assert stats.chi2.sf(x2, len(prob)) > 1e-3


def test_tau_zero_is_the_cores_backward_euler_and_the_step_does_not_shrink_with_tau() -> None:
    g, u0 = point_source(200)
    dt = 0.05
    limit = solve_telegrapher(g, D, 0.0, u0, dt, 40, output_every=10)
    ref = solve(DiffusionProblem(g, D), u0, dt, 40, output_every=10, method="backward_euler")
    np.testing.assert_allclose(limit.u, np.asarray(ref.states), rtol=0,
                               atol=1e-10 * float(np.max(ref.states[-1])))
    # a step 10⁴ × τ stays bounded and converges to diffusion as τ → 0
    prev = math.inf
    for tau in (1e-1, 1e-3, 1e-5):
        u = solve_telegrapher(g, D, tau, u0, dt, 40, output_every=40).u[-1]
        dev = np.max(np.abs(u - ref.states[-1]))
        assert np.all(np.isfinite(u)) and dev < prev
        prev = dev
    assert prev < 1e-4 * np.max(ref.states[-1])


def test_front_stays_within_ct_plus_the_stated_margin() -> None:
    g, u0 = point_source()
    dt = 0.01
    sol = solve_telegrapher(g, D, TAU, u0, dt, 300, output_every=50)
    x = g.centers(0)
    for k, t in enumerate(sol.times[1:], start=1):
        beyond = np.abs(x) > C * t + front_margin(C, dt, g.spacing[0], t)
        assert np.sum(np.abs(sol.u[k][beyond])) * g.spacing[0] < 1e-6


# ----------------------------------------------------------------------------- the model

def fick() -> Any:
    return get_registry().model_class("diffusion.fick")


def telegrapher_example() -> dict[str, Any]:
    return copy.deepcopy(next(s for s in fick().example_scenarios()
                              if s["solver"]["method"] == "telegrapher"))


def test_the_diffusion_model_offers_the_telegrapher_method_with_its_audits() -> None:
    ds = medtransport.run(telegrapher_example())
    assert ds.attrs["audit_status"] == "passed"
    import json

    names = {r["name"] for r in json.loads(ds.attrs["audit_report"])["results"]}
    assert {"finite_propagation", "diffusive_limit", "mass_balance[solute]"} <= names


def test_plain_diffusion_passed_off_as_finite_speed_is_caught() -> None:
    """A mutant that ignores τ (solves Fick's law): mass arrives beyond x₀ ± ct."""
    from medtransport_diffusion import telegrapher

    class IgnoresTau(fick()):  # type: ignore[misc]
        def simulate(self, progress: Any = None) -> Any:
            real = telegrapher.relaxation_time
            telegrapher.relaxation_time = lambda model: 0.0  # type: ignore[assignment]
            try:
                return super().simulate(progress)
            finally:
                telegrapher.relaxation_time = real

    assert "finite_propagation" in failed_audits(IgnoresTau, telegrapher_example())


def test_a_scheme_whose_limit_is_not_the_cores_diffusion_is_caught(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A mutant scheme with an explicit flux update: at τ = 0 it is FTCS, not backward Euler."""
    from medtransport_diffusion import telegrapher

    real = telegrapher.relaxed_solution

    def explicit_flux(model: Any, tau: float, every: int | None = None) -> Any:
        times, states, outflow = real(model, tau, every)
        if tau > 0:
            return times, states, outflow
        grid, tg = model.grid, model.scenario.time
        d = float(model.params.diffusivity.m_as("m^2/s"))
        every = tg.steps_per_output if every is None else every
        u = states[0].copy()
        out = [u.copy()]
        h = grid.spacing[0]
        for step in range(1, tg.n_steps + 1):
            flux = np.zeros(u.size + 1)
            flux[1:-1] = -d * (u[1:] - u[:-1]) / h
            u = u - tg.dt * (flux[1:] - flux[:-1]) / h
            if step % every == 0 or step == tg.n_steps:
                out.append(u.copy())
        return times, np.array(out), outflow

    monkeypatch.setattr(telegrapher, "relaxed_solution", explicit_flux)
    sc = telegrapher_example()
    sc["time"] = {"stop": "60 s", "step": "0.2 s", "output_every": "10 s"}
    assert "diffusive_limit" in failed_audits(fick(), sc)


def test_telegrapher_inputs_are_refused_naming_the_field() -> None:
    sc = telegrapher_example()
    del sc["solver"]["relaxation_time"]
    with pytest.raises(medtransport.errors.ScenarioError, match=r"solver\.relaxation_time"):
        medtransport.run(sc)
    sc = telegrapher_example()
    sc["boundaries"] = {"x+": {"kind": "robin", "coefficient": "1 um/s", "value": "0 mM"}}
    with pytest.raises(medtransport.errors.ScenarioError, match="boundaries"):
        medtransport.run(sc)


# ----------------------------------------------------------------------------- open faces, 2-D

def test_an_open_face_books_what_leaves_and_the_audits_pass() -> None:
    sc = telegrapher_example()
    sc["boundaries"] = {"x+": {"kind": "absorbing"}}
    ds = medtransport.run(sc)  # the mass balance would fail if the outflow were not booked
    assert ds.attrs["audit_status"] == "passed"
    closed = medtransport.run(telegrapher_example())
    w = float(np.diff(ds["x"].values[:2])[0])
    left = (closed["concentration"].values[-1] - ds["concentration"].values[-1]).sum() * w
    assert left > 0  # something reached the sink and left


def square_example() -> dict[str, Any]:
    sc = telegrapher_example()
    size = sc["domain"]["size"][0]
    sc["domain"] = {"shape": "box", "size": [size, size], "cells": [40, 40]}
    sc["parameters"] = {**sc["parameters"], "initial": {
        "kind": "uniform", "amount": "1 nmol/cm",  # per unit depth on a 2-D box
        "region": {"x": sc["parameters"]["initial"]["region"]["x"],
                   "y": sc["parameters"]["initial"]["region"]["x"]}}}
    return sc


def test_a_square_keeps_its_front_and_its_books() -> None:
    from medtransport_diffusion import telegrapher

    sc = square_example()
    ds = medtransport.run(sc)
    assert ds.attrs["audit_status"] == "passed"

    class IgnoresTau(fick()):  # type: ignore[misc]
        def simulate(self, progress: Any = None) -> Any:
            real = telegrapher.relaxation_time
            telegrapher.relaxation_time = lambda model: 0.0  # type: ignore[assignment]
            try:
                return super().simulate(progress)
            finally:
                telegrapher.relaxation_time = real

    assert "finite_propagation" in failed_audits(IgnoresTau, square_example())
