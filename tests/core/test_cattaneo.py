"""Cattaneo's relaxed flux on the core's finite volumes (``numerics.cattaneo``):

- τ = 0 is the core's backward Euler, to round-off, with Robin and Dirichlet faces, exchange,
  a source and an added per-step amount;
- a cosine mode of a closed slab (and of a closed square) against the closed form of the
  semi-discrete thermal-wave equations (ρc·s + a)(τ·s + 1) + k·λ_h = 0, λ_h the grid's
  eigenvalue: it overshoots below the reference, which Pennes' (τ = 0) never does;
- the ledger closes to round-off with τ > 0.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from medtransport.boundary import BoundaryCondition
from medtransport.domain import Grid
from medtransport.numerics.cattaneo import RelaxedFluxStepper
from medtransport.numerics.finite_volume import DiffusionProblem, ThetaStepper

RHO_C, K, A, T_A = 3.6e6, 0.5, 2000.0, 310.0  # J/(m³K), W/(mK), W/(m³K), K


def slab(n: int = 40, length: float = 0.01, **bcs: BoundaryCondition) -> DiffusionProblem:
    grid = Grid("cartesian", (0.0,), (length,), (n,))
    return DiffusionProblem(grid, K, bcs, capacity=RHO_C, exchange=A, exchange_reference=T_A)


def mode_amplitude(t: np.ndarray, lam_h: float, tau: float) -> np.ndarray:
    """θ(t) of T = T_a + θ(t)·φ_h with θ(0) = 1 and no initial flux."""
    if tau == 0.0:  # Pennes: one decaying exponential
        return np.exp(-(A + K * lam_h) / RHO_C * t)
    roots = np.roots([RHO_C * tau, RHO_C + A * tau, A + K * lam_h]).astype(complex)
    s1, s2 = roots
    c1 = (-A / RHO_C - s2) / (s1 - s2)
    return np.real(c1 * np.exp(s1 * t) + (1 - c1) * np.exp(s2 * t))


def test_zero_relaxation_is_the_core_backward_euler() -> None:
    p = slab(30, **{"x-": BoundaryCondition("x-", "robin", coefficient=10.0,
                                              value=298.0),
                    "x+": BoundaryCondition("x+", "dirichlet", value=310.0)})
    p = DiffusionProblem(p.grid, p.diffusivity, p.boundaries, source=400.0, capacity=RHO_C,
                         exchange=A, exchange_reference=T_A)
    u0 = np.linspace(300.0, 320.0, 30)
    extra = np.where(np.arange(30) < 5, 1e4, 0.0)
    ours, core = RelaxedFluxStepper(p, 0.5, 0.0), ThetaStepper(p, 0.5, "backward_euler")
    a, b = u0.copy(), u0.copy()
    for _ in range(40):
        a, fa = ours.step(a, extra)
        b, fb = core.step(b, extra)
    np.testing.assert_allclose(a, b, rtol=1e-13)
    for face in fa.outflow:
        assert fa.outflow[face] == pytest.approx(fb.outflow[face], rel=1e-9, abs=1e-9)
    assert fa.exchange == pytest.approx(fb.exchange, rel=1e-9)


@pytest.mark.parametrize("tau", [0.0, 5.0, 20.0])
def test_a_cosine_mode_follows_the_thermal_wave_closed_form(tau: float) -> None:
    n, length, dt, steps = 40, 0.005, 0.02, 5_000
    p = slab(n, length)  # closed walls: cos(πx/L) at the centres is an exact eigenvector
    x = p.grid.centers(0)
    phi = np.cos(math.pi * x / length)
    h = length / n
    lam_h = (2.0 / h * math.sin(math.pi * h / (2 * length))) ** 2
    stepper = RelaxedFluxStepper(p, dt, tau)
    u = T_A + phi
    times, amp = [0.0], [1.0]
    for k in range(1, steps + 1):
        u, _ = stepper.step(u)
        if k % 250 == 0:
            times.append(k * dt)
            amp.append(float((u - T_A) @ phi / (phi @ phi)))
    exact = mode_amplitude(np.array(times), lam_h, tau)
    # backward Euler's O(Δt) error: Δt·t·|s|²/2 ≲ 2e-3 here
    np.testing.assert_allclose(amp, exact, atol=3e-3)
    if tau == 20.0:  # the wave overshoots below the arterial temperature; Pennes never does
        assert min(amp) < -0.05 and min(exact) < -0.05
    if tau == 0.0:
        assert min(amp) > 0.0


def test_a_cosine_mode_of_a_closed_square() -> None:
    n, length, dt, tau = 16, 0.01, 0.05, 10.0
    grid = Grid("cartesian", (0.0, 0.0), (length, length), (n, n))
    p = DiffusionProblem(grid, K, {}, capacity=RHO_C, exchange=A, exchange_reference=T_A)
    x = (np.arange(n) + 0.5) * length / n
    phi = np.outer(np.cos(math.pi * x / length), np.cos(math.pi * x / length)).ravel()
    h = length / n
    lam_h = 2 * (2.0 / h * math.sin(math.pi * h / (2 * length))) ** 2
    stepper = RelaxedFluxStepper(p, dt, tau)
    u = T_A + phi
    for _ in range(2000):
        u, _ = stepper.step(u)
    amp = float((u - T_A) @ phi / (phi @ phi))
    assert amp == pytest.approx(float(mode_amplitude(np.array([100.0]), lam_h, tau)[0]),
                                abs=3e-3)


def test_the_ledger_closes_with_relaxation() -> None:
    p = slab(25, **{"x-": BoundaryCondition("x-", "robin", coefficient=20.0,
                                              value=295.0),
                    "x+": BoundaryCondition("x+", "dirichlet", value=312.0)})
    p = DiffusionProblem(p.grid, p.diffusivity, p.boundaries, source=700.0, capacity=RHO_C,
                         exchange=A, exchange_reference=T_A)
    w = p.grid.weights.ravel()
    u = np.full(25, 305.0)
    stepper = RelaxedFluxStepper(p, 1.0, 15.0)
    energy0 = float(np.sum(RHO_C * w * u))
    booked = 0.0
    for k in range(300):
        extra = np.full(25, 5e3) if k < 50 else None
        u, f = stepper.step(u, extra)
        booked += f.source + f.exchange + f.extra - f.sink - sum(f.outflow.values())
    energy = float(np.sum(RHO_C * w * u))
    assert abs(energy - energy0 - booked) <= 1e-11 * energy0
    assert abs(booked) > 1e-3 * energy0 * 1e-3  # something did flow


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="relaxation time"):
        RelaxedFluxStepper(slab(), 1.0, -1.0)
    with pytest.raises(ValueError, match="time step"):
        RelaxedFluxStepper(slab(), 0.0, 1.0)
