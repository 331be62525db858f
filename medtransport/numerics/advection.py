"""Conservative first-order upwind advection on a 1-D :class:`~medtransport.domain.Grid`, and
the numerical diffusion it adds.

The equation (flux form, amounts m_i = w_i·capacity_i·u_i as in
:mod:`medtransport.numerics.finite_volume`)::

    capacity·∂u/∂t = −∇·(q·u)

with ``q`` the volumetric flux (a Darcy velocity, m/s) given at every cell face of the axis
(``cells + 1`` values, positive towards +axis). Each face carries the amount
``q_f·A_f·u_upwind`` per unit time from the upwind cell; interior faces move amount between
neighbours (so Σ m changes only at the boundary faces), the boundary faces let it in at a given
outside value or out at the cell's value. The result is affine, dm/dt = A·u + b, like the
diffusion operator, so it adds to :func:`~medtransport.numerics.finite_volume.assemble`'s and
shares its time stepping.

Numerical diffusion (REFERENCES §0, DESIGN "Shared numerics"): first-order upwind smears a
front as a diffusion of (Courant number C = |v|Δt/Δx, v = q/capacity)

    D_num = |v|·Δx·(1 − C)/2      with forward Euler in time,
    D_num = |v|·Δx/2              in space alone (Crank–Nicolson adds no first-order term),
    D_num = |v|·Δx·(1 + C)/2      with backward Euler,

(LeVeque, *Finite Volume Methods for Hyperbolic Problems*, 2002, §8.6); a model reports it next
to its physical diffusivity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from medtransport.domain import Grid

__all__ = ["UpwindOperator", "numerical_diffusion", "upwind"]


@dataclass(frozen=True)
class UpwindOperator:
    """dm/dt = a·u + inflow·u_outside (per face) for the advective fluxes; ``face_out[f]``
    gives the outward advective flux through boundary face f as
    ``out_weight[f]·u[out_cell[f]] − in_weight[f]·u_outside[f]``."""

    a: sp.csr_matrix
    inflow: dict[str, np.ndarray]
    out_cell: dict[str, int]
    out_weight: dict[str, float]
    in_weight: dict[str, float]


def upwind(grid: Grid, face_flux: np.ndarray) -> UpwindOperator:
    """The upwind operator for volumetric fluxes ``face_flux`` (m/s) at the ``cells + 1``
    faces of a 1-D grid (Cartesian slab, cylinder or sphere shell)."""
    if grid.ndim != 1:
        raise ValueError("upwind advection is implemented on 1-D grids")
    n = grid.cells[0]
    q = np.asarray(face_flux, dtype=float)
    if q.shape != (n + 1,):
        raise ValueError(f"face_flux needs {n + 1} values (one per face), got {q.shape}")
    area = np.broadcast_to(np.asarray(grid.face_area(0), dtype=float), (n + 1,))
    g = q * area  # volume per time through each face, + towards +axis
    rows, cols, vals = [], [], []
    for f in range(1, n):  # interior face between cell f−1 and f
        src, dst = (f - 1, f) if g[f] >= 0 else (f, f - 1)
        rate = abs(g[f])
        rows += [src, dst]
        cols += [src, src]
        vals += [-rate, rate]
    inflow: dict[str, np.ndarray] = {}
    out_cell: dict[str, int] = {}
    out_weight: dict[str, float] = {}
    in_weight: dict[str, float] = {}
    for face, f, cell, sign in ((f"{grid.dims[0]}-", 0, 0, -1.0),
                                (f"{grid.dims[0]}+", n, n - 1, 1.0)):
        outward = sign * g[f]  # > 0: leaving the domain
        vec = np.zeros(n)
        if face not in grid.faces:  # r = 0: no face
            continue
        if outward > 0:
            rows.append(cell)
            cols.append(cell)
            vals.append(-outward)
            out_weight[face], in_weight[face] = outward, 0.0
        else:
            vec[cell] = -outward
            out_weight[face], in_weight[face] = 0.0, -outward
        inflow[face] = vec
        out_cell[face] = cell
    a = sp.csr_matrix((vals, (rows, cols)), shape=(n, n))
    return UpwindOperator(a, inflow, out_cell, out_weight, in_weight)


def numerical_diffusion(velocity: np.ndarray | float, dx: float, dt: float,
                        scheme: str = "crank_nicolson") -> np.ndarray:
    """D_num of first-order upwind for the interstitial velocity ``velocity`` (m/s), cell size
    ``dx`` and step ``dt`` (module docstring); ``scheme`` is ``ftcs``, ``crank_nicolson`` or
    ``backward_euler``."""
    v = np.abs(np.asarray(velocity, dtype=float))
    courant = v * dt / dx
    factor = {"ftcs": 1.0 - courant, "crank_nicolson": np.ones_like(courant),
              "backward_euler": 1.0 + courant}[scheme]
    return v * dx * factor / 2.0
