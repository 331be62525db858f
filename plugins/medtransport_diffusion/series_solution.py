"""Crank's series solutions of ``diffusion.fick``, with audited truncation.

A slab (1-D box) or a full sphere, loaded uniformly (c₀ = amount/measure), with perfect sinks on
every face (Crank eqs. 4.17–4.18 and 6.18–6.20; the shared numerics in
:mod:`medtransport.numerics.series`). The states are analytic cell averages, and the outflow is
M₀·M_t/M_∞ from the same truncated sum, so the ledger closes to rounding; whether enough terms
were taken is the truncation audit's question, answered before the run from the closed-form tail
bound at the first positive output time. At t = 0 the known uniform state is used, not the
series (which converges only like 1/N there).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from medtransport.ledger import Ledger
from medtransport.numerics import series

if TYPE_CHECKING:
    from medtransport_diffusion.model import FickDiffusion


def _setup(model: FickDiffusion) -> tuple[np.ndarray, float, float, float]:
    tg = model.scenario.time
    times = tg.output_times() - tg.start.m_as("s")
    grid = model.grid
    length = grid.upper[0] - grid.lower[0]
    amount = float(model.params.initial.amount.m_as(model.amount_units))
    c0 = amount / float(grid.weights.sum())
    return times, length, amount, c0


def truncation(model: FickDiffusion) -> series.Truncation:
    times, length, _, _ = _setup(model)
    d = float(model.params.diffusivity.m_as("m^2/s"))
    tol = model.tolerance.rtol
    if model.grid.geometry == "sphere":
        return series.sphere_truncation(times, d, length, tol)
    return series.slab_truncation(times, d, length, tol)


def simulate(model: FickDiffusion, n_terms: int | None = None
             ) -> tuple[np.ndarray, np.ndarray, Ledger]:
    times, length, amount, c0 = _setup(model)
    d = float(model.params.diffusivity.m_as("m^2/s"))
    n = truncation(model).n_terms if n_terms is None else n_terms
    if model.grid.geometry == "sphere":
        states = series.sphere_shell_average(model.grid, times, d, c0, n_terms=n)
        released = amount * series.sphere_release(times, d, length, n_terms=n)
        outflow = {"r+": released}
    else:
        states = series.slab_cell_average(model.grid, times, d, c0, n_terms=n)
        released = amount * series.slab_release(times, d, length, n_terms=n)
        # The slab is symmetric: each face lets out half.
        outflow = {"x-": 0.5 * released, "x+": 0.5 * released}
    return times, states, Ledger.of("solute", model.amount_units, len(times), outflow=outflow)
