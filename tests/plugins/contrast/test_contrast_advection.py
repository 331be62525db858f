"""The core's upwind advection (medtransport.numerics.advection), added for the contrast
plugin's convection option: conservation and the numerical diffusion it reports."""

from __future__ import annotations

import numpy as np
import pytest

from medtransport.domain import Grid
from medtransport.numerics.advection import numerical_diffusion, upwind


def test_interior_faces_conserve_and_boundaries_book_the_rest() -> None:
    grid = Grid("cylinder", (1e-5,), (1e-4,), (30,))
    q = 2e-6 * 1e-5 / grid.edges(0)  # divergence-free outward flux on a cylinder
    op = upwind(grid, q)
    u = np.random.default_rng(0).uniform(0, 1, 30)
    rate = op.a @ u + op.inflow["r-"] * 0.7
    # what the cells gain = what enters at r− minus what leaves at r+
    out_rminus = op.out_weight["r-"] * u[op.out_cell["r-"]] - op.in_weight["r-"] * 0.7
    out_rplus = op.out_weight["r+"] * u[op.out_cell["r+"]] - op.in_weight["r+"] * 0.0
    assert rate.sum() == pytest.approx(-(out_rminus + out_rplus), rel=1e-12)
    # a uniform field in a divergence-free flow only changes at the boundary cells
    rate_uniform = op.a @ np.ones(30) + op.inflow["r-"]
    np.testing.assert_allclose(rate_uniform[1:-1], 0.0, atol=1e-20)


def test_explicit_upwind_spreads_a_pulse_by_the_reported_numerical_diffusion() -> None:
    """Forward Euler, C = 0.4: a pulse's variance grows as 2·D_num·t with
    D_num = vΔx(1 − C)/2 (the modified equation of first-order upwind)."""
    n, dx, v = 2000, 1.0, 1.0
    dt = 0.4 * dx / v
    grid = Grid("cartesian", (0.0,), (n * dx,), (n,))
    op = upwind(grid, np.full(n + 1, v))
    u = np.zeros(n)
    u[200] = 1.0 / dx
    x = grid.centers(0)

    def variance(c: np.ndarray) -> float:
        m = np.sum(c * x) / np.sum(c)
        return float(np.sum(c * (x - m) ** 2) / np.sum(c))

    v0 = variance(u)
    steps = 1500
    for _ in range(steps):
        u = u + dt * (op.a @ u) / dx
    d_num = float(numerical_diffusion(v, dx, dt, "ftcs"))
    assert d_num == pytest.approx(v * dx * 0.6 / 2)
    assert variance(u) - v0 == pytest.approx(2 * d_num * steps * dt, rel=1e-6)


def test_upwind_refuses_bad_input() -> None:
    grid = Grid("cartesian", (0.0,), (1.0,), (10,))
    with pytest.raises(ValueError, match="11 values"):
        upwind(grid, np.ones(10))
