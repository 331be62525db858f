"""Cattaneo's relaxed flux on the core's finite volumes: the telegrapher's equation with
variable coefficients, exchange, sources and boundaries, on any grid the core assembles.

    capacity·∂u/∂t = −∇·j − decay·u + source + exchange·(u_ref − u),
    τ·∂j/∂t + j = −D∇u                              (Cattaneo 1958; Vernotte 1958)

— with τ = 0 the diffusion problem of :mod:`~medtransport.numerics.finite_volume`; for heat,
the thermal-wave (Cattaneo–Vernotte) model of bioheat, whose disturbances travel at
c = √(D/(τ·capacity)) instead of instantly. Eliminating j gives τ·capacity·u_tt + … : the
telegrapher's equation of :mod:`~medtransport.numerics.telegrapher`, of which this is the
variable-coefficient form.

**Scheme** (the asymptotic-preserving step of :mod:`~medtransport.numerics.telegrapher`): the
flux F_f through each interior face f, from cell lo to hi with the core's conductance g_f
(harmonic mean of the two half cells, times the face area), relaxes implicitly,

    F_f^{n+1} = r·F_f^n + (1 − r)·g_f·(u_lo^{n+1} − u_hi^{n+1}),     r = τ/(τ + Δt),

and the balance is backward Euler,

    M(u^{n+1} − u^n) = −Δt·div F^{n+1} + Δt·(A_rest·u^{n+1} + b) + added,

one sparse solve per step: (M − Δt·A + Δt·r·A_int)·u^{n+1} = M u^n + Δt·b − Δt·r·div F^n + added,
with A = A_int + A_rest the core's operator (A_int: conduction between cells; A_rest: boundary
faces, decay, exchange). At τ = 0 it *is* the core's backward Euler; its step does not shrink
with τ. Boundary faces follow the scenario's boundary law at once (a surface law; relaxation
acts on conduction inside the medium). The interior fluxes telescope, so
ΣM·u changes by exactly Δt·(source + exchange − decay − Σ boundary outflow) + added: the same
ledger terms as :class:`~medtransport.numerics.finite_volume.ThetaStepper`, whose interface
(:meth:`step`, :meth:`update`) this stepper shares.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import scipy.sparse as sp

from medtransport.boundary import BoundaryCondition
from medtransport.numerics.finite_volume import (
    DiffusionProblem,
    StepFlows,
    _discretise,
    _dot,
)
from medtransport.numerics.linear import ImplicitSystem

__all__ = ["RelaxedFluxStepper"]


class RelaxedFluxStepper:
    """Backward-Euler steps of ``problem`` with Cattaneo's flux relaxing over
    ``relaxation_time`` τ (module docstring); the interior face fluxes start at ``flux0``
    (default 0) and are kept in :attr:`flux` (amount per time, from the lower to the higher
    cell index of :attr:`faces`)."""

    method = "backward_euler"

    def __init__(self, problem: DiffusionProblem, dt: float, relaxation_time: float,
                 flux0: np.ndarray | None = None):
        if not (math.isfinite(dt) and dt > 0):
            raise ValueError(f"the time step must be positive and finite, got {dt}")
        if not (math.isfinite(relaxation_time) and relaxation_time >= 0):
            raise ValueError("the relaxation time must be non-negative and finite, got "
                             f"{relaxation_time}")
        self.dt = dt
        self.tau = relaxation_time
        self.r = relaxation_time / (relaxation_time + dt)
        self.problem = problem
        self.factorizations = 0
        self._iterations = 0
        self._build()
        self.flux = np.zeros(self.faces[0].size) if flux0 is None else \
            np.asarray(flux0, float).reshape(self.faces[0].size).copy()

    def _build(self) -> None:
        problem = self.problem
        disc = _discretise(problem)
        closed = {f: bc if bc.kind == "periodic" else BoundaryCondition(f, "no_flux")
                  for f, bc in ((f, problem.boundary(f)) for f in problem.grid.faces)}
        inner = _discretise(replace(problem, boundaries=closed, decay=0.0, source=0.0,
                                    exchange=0.0))
        a_int = inner.a
        tri = sp.triu(a_int, k=1).tocoo()
        self.faces = (tri.row.astype(np.int64), tri.col.astype(np.int64), tri.data.copy())
        self._disc = disc
        self._weights = np.broadcast_to(problem.grid.weights, problem.grid.cells).ravel()
        matrix = sp.diags(disc.mass) - self.dt * disc.a + (self.dt * self.r) * a_int
        self._system = ImplicitSystem(matrix.tocsr(), problem.grid.ndim)
        self._system.iterations = self._iterations
        self.factorizations += self._system.factorizations

    @property
    def iterations(self) -> int:
        return self._system.iterations

    @property
    def solver_name(self) -> str:
        if self._system.iterative:
            return f"conjugate gradients, Jacobi-preconditioned, rtol {self._system.rtol:g}"
        return "sparse LU, factorized once"

    def update(self, **coefficients: float | np.ndarray) -> None:
        """Replace coefficients of the problem (e.g. ``exchange=…``); the fluxes are kept."""
        self._iterations = self.iterations
        self.problem = replace(self.problem, **coefficients)
        self._build()

    def divergence(self, flux: np.ndarray) -> np.ndarray:
        """Net outflow of each cell through the interior faces (amount per time)."""
        lo, hi, _ = self.faces
        n = self._disc.mass.size
        return np.bincount(lo, flux, n) - np.bincount(hi, flux, n)

    def step(self, u: np.ndarray, extra: np.ndarray | None = None,
             guess: np.ndarray | None = None) -> tuple[np.ndarray, StepFlows]:
        """One step from the flat state ``u`` (``extra``: amount per unit cell measure added
        during the step); returns the new state and the step's ledger terms."""
        disc, dt = self._disc, self.dt
        added = None if extra is None else self._weights * np.ravel(extra)
        rhs = disc.mass * u + dt * disc.b
        if self.r > 0.0:
            rhs -= (dt * self.r) * self.divergence(self.flux)
        if added is not None:
            rhs += added
        new = self._system.solve(rhs, u if guess is None else guess)
        lo, hi, g = self.faces
        self.flux = self.r * self.flux + (1.0 - self.r) * g * (new[lo] - new[hi])
        flows = StepFlows(
            outflow={face: dt * op(new) for face, op in disc.faces.items()},
            sink=dt * _dot(disc.sink_weights, new),
            source=dt * disc.source_rate,
            exchange=dt * disc.exchange_gain(new),
            extra=0.0 if added is None else float(np.sum(added)))
        return new, flows
