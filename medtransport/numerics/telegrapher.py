"""The telegrapher's (Cattaneo) equation: finite-speed transport whose long-time limit is
diffusion.

    τ·∂²u/∂t² + ∂u/∂t = D·∂²u/∂x²,        speed c = √(D/τ)

is the density of a persistent random walk: particles moving at ±c that reverse direction at
rate a = 1/(2τ) (Goldstein 1951; Kac 1974). In flux form (Cattaneo's law for the flux j)

    ∂u/∂t + ∂j/∂x = 0,        τ·∂j/∂t + j = −D·∂u/∂x,

which as τ → 0 becomes Fick's law and the diffusion equation.

**Asymptotic-preserving scheme** (in the spirit of Jin 1999, *SIAM J Sci Comput* 21:441): u at
the cell centres of the core's 1-D finite-volume grid, j at the faces, both implicit:

    j^{n+1} = (τ·j^n − Δt·D·∂ₓu^{n+1}) / (τ + Δt),
    u^{n+1} = u^n − Δt·∂ₓj^{n+1},

which eliminates to one sparse solve per step,

    (M − Δt²D/(τ + Δt)·L) u^{n+1} = M u^n − Δt·τ/(τ + Δt)·(face-flux divergence of j^n),

with M the cell measures and L the core's finite-volume Laplacian
(:func:`~medtransport.numerics.finite_volume.assemble` with D = 1). It is stable for any Δt and
any τ ≥ 0 — the step does not shrink with τ — and at τ = 0 it *is* the core's backward-Euler
diffusion scheme on the same grid. Walls are closed (j = 0 at both ends), so the mass Σ M u is
conserved exactly: the divergence telescopes.

Implicit stepping spreads the sharp fronts at x₀ ± ct over about √(c²Δt·t) + Δx (numerical
dissipation of the backward Euler step; no unconditionally stable linear scheme keeps a finite
numerical speed): :func:`front_margin` states that width, and the finite-propagation audit
allows it.

**Green's function** for u(x, 0) = δ(x), j(x, 0) = 0 (Kac 1974), with ρ = (a/c)√(c²t² − x²):

    u = ½e^{−at}[δ(x − ct) + δ(x + ct)]
        + e^{−at}/(2c)·[a·I₀(ρ) + a·c·t·I₁(ρ)/√(c²t² − x²)]        for |x| < ct, else 0.

**Persistent random walk**: exact event-driven simulation (exponential reversal times).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu
from scipy.special import i0e, i1e

from medtransport.boundary import BoundaryCondition
from medtransport.domain import Grid
from medtransport.numerics.finite_volume import DiffusionProblem, assemble

__all__ = ["TelegrapherSolution", "front_margin", "goldstein_kac", "persistent_walk",
           "solve_telegrapher"]


@dataclass(frozen=True)
class TelegrapherSolution:
    """``u`` (n_out, cells) and face fluxes ``j`` (n_out, cells + 1) at ``times``; ``mass``
    Σ M u at each output."""

    times: np.ndarray
    u: np.ndarray
    j: np.ndarray
    mass: np.ndarray


def _check_grid(grid: Grid) -> None:
    if grid.geometry != "cartesian" or grid.ndim != 1:
        raise ValueError("the telegrapher scheme runs on a 1-D Cartesian grid")


def solve_telegrapher(grid: Grid, diffusivity: float, relaxation_time: float,
                      u0: np.ndarray, dt: float, n_steps: int, output_every: int = 1,
                      j0: np.ndarray | None = None) -> TelegrapherSolution:
    """Advance (u, j) from ``u0`` (and ``j0`` at the faces, default 0) with the AP scheme."""
    _check_grid(grid)
    if not (diffusivity > 0 and math.isfinite(diffusivity)):
        raise ValueError("the diffusivity must be positive and finite")
    if not (relaxation_time >= 0 and math.isfinite(relaxation_time)):
        raise ValueError("the relaxation time must be non-negative and finite")
    if not (dt > 0 and math.isfinite(dt)) or n_steps < 0 or output_every < 1:
        raise ValueError("dt must be positive, n_steps ≥ 0 and output_every ≥ 1")
    n = grid.cells[0]
    h = grid.spacing[0]
    u = np.asarray(u0, float).reshape(n).copy()
    j = np.zeros(n + 1) if j0 is None else np.asarray(j0, float).reshape(n + 1).copy()
    j[0] = j[-1] = 0.0
    closed = {f: BoundaryCondition(f, "no_flux") for f in grid.faces}
    lap, _ = assemble(DiffusionProblem(grid, 1.0, closed))  # dm/dt = L u for D = 1
    w = grid.weights.ravel()
    tau, d = relaxation_time, diffusivity
    k = dt * dt * d / (tau + dt)
    lu = splu((sp.diags(w) - k * lap).tocsc())
    area = 1.0  # 1-D slab: unit face area, cell measure h
    steps = list(range(0, n_steps + 1, output_every))
    if steps[-1] != n_steps:
        steps.append(n_steps)
    out_u = np.empty((len(steps), n))
    out_j = np.empty((len(steps), n + 1))
    out_u[0], out_j[0] = u, j
    k_out = 1
    for step in range(1, n_steps + 1):
        div = (j[1:] - j[:-1]) * area  # net outflow of each cell per unit time
        rhs = w * u - dt * tau / (tau + dt) * div
        u = lu.solve(rhs)
        j_new = np.zeros(n + 1)
        j_new[1:-1] = (tau * j[1:-1] - dt * d * (u[1:] - u[:-1]) / h) / (tau + dt)
        j = j_new
        if k_out < len(steps) and steps[k_out] == step:
            out_u[k_out], out_j[k_out] = u, j
            k_out += 1
    times = np.asarray(steps, float) * dt
    return TelegrapherSolution(times, out_u, out_j, out_u @ w)


def front_margin(speed: float, dt: float, spacing: float, t: float | np.ndarray) -> np.ndarray:
    """How far beyond x₀ ± ct the implicit scheme spreads the front: 6·√(c²Δt·t + Δx²) + 2Δx
    (six standard deviations of its numerical dissipation)."""
    t = np.asarray(t, float)
    return 6.0 * np.sqrt(speed * speed * dt * t + spacing * spacing) + 2.0 * spacing


def goldstein_kac(x: np.ndarray, t: float, speed: float, rate: float) -> tuple[np.ndarray, float]:
    """(absolutely continuous density at ``x``, mass of each of the two fronts) at time t > 0
    for u(x, 0) = δ(x), j = 0; ``rate`` a = 1/(2τ) reversals per unit time."""
    x = np.asarray(x, float)
    c, a = speed, rate
    inside = np.abs(x) < c * t
    s = np.sqrt(np.maximum(c * c * t * t - x * x, 0.0))
    rho = a * s / c
    # I_ν(ρ)·e^{−at} = I_νe(ρ)·e^{ρ − at}: the scaled Bessel functions keep this finite
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(s > 0, i1e(rho) / np.where(s > 0, s, 1.0), a / (2 * c))
    dens = np.exp(rho - a * t) / (2 * c) * (a * i0e(rho) + a * c * t * ratio)
    return np.where(inside, dens, 0.0), 0.5 * math.exp(-a * t)


def persistent_walk(n: int, speed: float, rate: float, times: Sequence[float], seed: int,
                    x0: float = 0.0) -> np.ndarray:
    """Positions (len(times), n) of n particles moving at ±``speed``, reversing at ``rate``,
    starting at ``x0`` with a random direction — exactly (exponential reversal times)."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(int(seed))))
    direction = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    x = np.full(n, float(x0))
    clock = np.zeros(n)
    next_flip = rng.exponential(1.0 / rate, n) if rate > 0 else np.full(n, np.inf)
    out = np.empty((len(times), n))
    for k, target in enumerate(times):
        while True:
            due = next_flip < target
            if not due.any():
                break
            idx = np.flatnonzero(due)
            x[idx] += direction[idx] * speed * (next_flip[idx] - clock[idx])
            clock[idx] = next_flip[idx]
            direction[idx] *= -1.0
            next_flip[idx] += rng.exponential(1.0 / rate, idx.size)
        out[k] = x + direction * speed * (target - clock)
    return out
