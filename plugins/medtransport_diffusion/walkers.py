"""Random-walker solutions of ``diffusion.fick``: the declared amount split over N walkers.

Each walker carries amount/N. The concentration is the walkers binned to the grid,
c_i = n_i·(amount/N)/w_i, so the stored amount Σ w·c is the number of walkers inside times the
amount per walker, and the outflow through each face is the number absorbed there times the
same — the books balance by counting, whatever the sampling error of the profile.

- ``lattice_walk``: walkers start in cells drawn (multinomially) from the initial amount per
  cell; jump probability r = D·Δt/Δx² per neighbour (mean occupancy = FTCS exactly).
- ``brownian``: walkers start at positions drawn from the initial condition (a point, uniform
  in the region, Gaussian), take N(0, 2D·Δt) steps, reflect exactly or are absorbed at faces.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from medtransport.domain import Grid
from medtransport.errors import ScenarioError
from medtransport.ledger import Ledger
from medtransport.numerics import random_walk as rw
from medtransport_diffusion.initial import place

if TYPE_CHECKING:
    from medtransport.model import Progress
    from medtransport_diffusion.model import FickDiffusion

PLACEMENT_STREAM = 1


def walls(model: FickDiffusion) -> dict[str, rw.WallKind]:
    return {face: "absorbing" if bc.kind == "absorbing" else "reflecting"
            for face, bc in model.boundaries.items()}


def _initial_positions(model: FickDiffusion, n: int, seed: int) -> np.ndarray:
    grid, ic = model.grid, model.params.initial
    if ic.kind == "point":
        center = [0.0] * (3 if grid.geometry == "sphere" else 2) if grid.radial and \
            ic.center is None else None
        if center is None:
            if ic.center is None:
                center = [0.5 * (lo + hi) for lo, hi in zip(grid.lower, grid.upper,
                                                             strict=True)]
            else:
                if grid.radial:
                    raise ScenarioError([("parameters.initial.center",
                                          "walkers in a sphere or cylinder start at its centre; "
                                          "leave out 'center'")])
                center = [float(c.m_as("m")) for c in ic.center]
        return rw.place_at_point(n, center)
    if ic.kind == "uniform":
        region = ic.region or {}
        lower = [float(region[d][0].m_as("m")) if d in region else grid.lower[i]
                 for i, d in enumerate(grid.dims)]
        upper = [float(region[d][1].m_as("m")) if d in region else grid.upper[i]
                 for i, d in enumerate(grid.dims)]
        lower = [max(a, b) for a, b in zip(lower, grid.lower, strict=True)]
        upper = [min(a, b) for a, b in zip(upper, grid.upper, strict=True)]
        box = Grid(grid.geometry, tuple(lower), tuple(upper), (1,) * grid.ndim)
        return rw.place_uniform(n, box, rw.make_rng(seed, PLACEMENT_STREAM))
    if grid.radial:
        raise ScenarioError([("parameters.initial.kind", "walkers in a sphere or cylinder start "
                                                         "from a point or a uniform region")])
    assert ic.width is not None
    mean = [0.5 * (lo + hi) for lo, hi in zip(grid.lower, grid.upper, strict=True)] \
        if ic.center is None else [float(c.m_as("m")) for c in ic.center]
    pos = rw.place_gaussian(n, mean, float(ic.width.m_as("m")),
                            rw.make_rng(seed, PLACEMENT_STREAM))
    # A Gaussian reaching beyond the walls is folded back in, as a reflecting wall would.
    lo, hi = np.asarray(grid.lower), np.asarray(grid.upper)
    span = hi - lo
    pos = np.abs(np.mod(pos - lo, 2 * span) - span)
    return hi - pos


def simulate(model: FickDiffusion, walkers: int,
             progress: Progress | None) -> tuple[np.ndarray, np.ndarray, Ledger, dict[str, Any]]:
    grid = model.grid
    tg = model.scenario.time
    assert model.seed is not None  # stochastic methods always get one
    seed = model.seed
    diffusivity = float(model.params.diffusivity.m_as("m^2/s"))
    amount = float(model.params.initial.amount.m_as(model.amount_units))
    per_walker = amount / walkers
    steps = tg.output_steps()
    if model.method == "lattice_walk":
        if grid.radial:
            raise ScenarioError([("solver.method", "the lattice walk runs on Cartesian boxes; "
                                                   "use 'brownian' in a sphere or cylinder")])
        c0 = place(model.params.initial, grid, model.field_units)
        share = (c0 * grid.weights).ravel()
        counts0 = rw.make_rng(seed, PLACEMENT_STREAM).multinomial(walkers, share / share.sum())
        res = rw.lattice_walk(grid, counts0.reshape(grid.cells), diffusivity, tg.dt, steps,
                              boundaries=walls(model), seed=seed)
        counts, absorbed, times = res.counts, res.absorbed, res.times
    else:
        positions = _initial_positions(model, walkers, seed)
        if grid.radial and grid.lower[0] > 0:
            raise ScenarioError([("domain.inner_radius", "walkers need a full sphere or "
                                                         "cylinder")])
        res_b = rw.brownian_walk(positions, diffusivity, tg.dt, steps, domain=grid,
                                 boundaries=walls(model), seed=seed, keep_positions=False,
                                 bin_grid=grid, progress=progress)
        assert res_b.counts is not None
        counts, absorbed, times = res_b.counts, res_b.absorbed, res_b.times
    if progress is not None:
        progress(1.0)
    states = rw.concentration(counts, grid, per_walker)
    inside = counts.reshape(len(times), -1).sum(axis=1)
    outflow = {face: np.asarray(n, dtype=float) * per_walker for face, n in absorbed.items()
               if model.boundaries[face].lets_through}
    ledger = Ledger.of("solute", model.amount_units, len(times), outflow=outflow)
    extra = {"walkers_inside": (inside.astype(float), {"units": "dimensionless",
                                                       "long_name": "walkers inside"})}
    return times, states, ledger, extra
