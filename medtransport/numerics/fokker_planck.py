"""The Fokker–Planck equation of a constant-coefficient scalar SDE, by the core's finite volumes.

For dX = a dt + b dW (Itô; Brownian motion with drift a) the density p(x, t) obeys

    ∂p/∂t = −∂(a p)/∂x + ½ ∂²(b² p)/∂x²

(REFERENCES §8). On a 1-D :class:`~medtransport.domain.Grid` the diffusion part is the core's
finite-volume operator (:func:`~medtransport.numerics.finite_volume.assemble`) and the drift
the core's upwind operator (:func:`~medtransport.numerics.advection.upwind`); upwinding adds
the numerical diffusion |a|Δx/2 (:func:`~medtransport.numerics.advection.numerical_diffusion`
in space), which is taken off the physical D = b²/2, so that the sum is the second-order central
scheme (it needs D > |a|Δx/2, a cell Péclet number below 2). Walls: ``reflecting`` (no total
flux) or ``absorbing`` (p = 0 on the face; its advective face flux is dropped, an O(Δx) error
next to that wall). Time: Crank–Nicolson after four half steps of backward Euler (Rannacher's
start, which damps the point source's highest modes), one sparse LU per step size.

The initial density is a point mass at x₀, split between the two nearest cell centres so that
its mean stays at x₀.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu

from medtransport.boundary import BoundaryCondition
from medtransport.domain import Grid
from medtransport.numerics.advection import upwind
from medtransport.numerics.finite_volume import DiffusionProblem, assemble

__all__ = ["drifted_bm_density"]

Wall = Literal["reflecting", "absorbing"]


def drifted_bm_density(grid: Grid, drift: float, noise: float, x0: float,
                       times: Sequence[float], *, walls: tuple[Wall, Wall] =
                       ("reflecting", "reflecting"), max_dt: float | None = None) -> np.ndarray:
    """p(x, t) at the cell centres of ``grid`` at ``times`` (T, n_cells), from a point mass at
    ``x0``; ``noise`` is b (so D = b²/2)."""
    if grid.ndim != 1 or grid.radial:
        raise ValueError("the Fokker–Planck solver runs on a 1-D Cartesian grid")
    h = grid.spacing[0]
    diff = 0.5 * noise * noise
    d_eff = diff - 0.5 * abs(drift) * h
    if d_eff <= 0:
        raise ValueError(f"cell Péclet number |a|Δx/D = {abs(drift) * h / diff:.3g} ≥ 2: use "
                         "smaller cells")
    faces = grid.faces
    bcs = {f: BoundaryCondition(f, "absorbing" if w == "absorbing" else "no_flux")
           for f, w in zip(faces, walls, strict=True)}
    a_diff, b_diff = assemble(DiffusionProblem(grid, d_eff, bcs))
    n = grid.cells[0]
    q = np.full(n + 1, float(drift))
    q[0] = q[-1] = 0.0  # no advective flux through a wall
    a_adv = upwind(grid, q).a
    op = (a_diff + a_adv).tocsc()
    w = grid.weights.ravel()
    lo, hi = grid.lower[0], grid.upper[0]
    if not lo <= x0 <= hi:
        raise ValueError("x0 must lie on the grid")
    # the point mass split between the two nearest cell centres, keeping its mean at x0
    s = float(np.clip((x0 - lo) / h - 0.5, 0.0, n - 1.0))
    left = min(int(s), n - 2) if n > 1 else 0
    frac = s - left
    p = np.zeros(n)
    p[left] = (1.0 - frac) / w[left]
    if n > 1:
        p[left + 1] = frac / w[left + 1]
    t_out = np.asarray(times, float)
    out = np.empty((t_out.size, n))
    mass = sp.diags(w).tocsc()
    t = 0.0
    cache: dict[tuple[str, float], object] = {}

    def step(p: np.ndarray, dt: float, theta: float) -> np.ndarray:
        key = (f"{theta}", dt)
        lu = cache.get(key)
        if lu is None:
            lu = cache[key] = splu((mass - theta * dt * op).tocsc())
        rhs = mass @ p + (1.0 - theta) * dt * (op @ p)
        return lu.solve(rhs)  # type: ignore[attr-defined]

    positive = t_out[t_out > 0]
    dt_base = max_dt if max_dt is not None else (positive[0] / 50.0 if positive.size else 1.0)
    implicit_left = 4  # Rannacher: four backward-Euler half steps first
    for k, target in enumerate(t_out):
        while target - t > 1e-12 * max(1.0, abs(target)):
            if implicit_left:
                dt, theta = min(0.5 * dt_base, target - t), 1.0
                implicit_left -= 1
            else:
                dt, theta = min(dt_base, target - t), 0.5
            p = step(p, dt, theta)
            t += dt
        t = max(t, target)
        out[k] = p
    del b_diff  # no sources: the walls hold p = 0
    return out
