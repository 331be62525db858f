"""``diffusion.fick`` with ``solver.method: telegrapher``: finite-speed diffusion (Cattaneo),

    τ·∂²c/∂t² + ∂c/∂t = D·∂²c/∂x²,      front speed √(D/τ),

on a 1-D slab with closed faces, by the core's asymptotic-preserving scheme
(:mod:`medtransport.numerics.telegrapher`); ``solver.relaxation_time`` is τ (τ = 0 is Fick's
law, solved exactly as ``backward_euler`` solves it). Audits: the core's mass balance (nothing
may leave), finite propagation beyond x₀ ± ct (up to the scheme's stated front width), and the
diffusive limit (the same scheme at τ = 0 equals the core's backward-Euler solution).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from medtransport.audit.finite_speed import audit_diffusive_limit, audit_finite_propagation
from medtransport.audit.report import AuditContext, AuditResult
from medtransport.errors import ScenarioError
from medtransport.ledger import Ledger
from medtransport.numerics.telegrapher import front_margin, solve_telegrapher
from medtransport_diffusion.initial import place

if TYPE_CHECKING:
    from medtransport.model import Progress
    from medtransport_diffusion.model import FickDiffusion


def relaxation_time(model: FickDiffusion) -> float:
    tau = model.options.get("relaxation_time")
    if tau is None:
        raise ScenarioError([("solver.relaxation_time", "the telegrapher method needs the "
                                                        "relaxation time τ (e.g. '2 s')")])
    return float(tau.m_as("s"))


def check(model: FickDiffusion) -> None:
    grid = model.grid
    problems = []
    if grid.geometry != "cartesian" or grid.ndim != 1:
        problems.append(("domain", "the telegrapher method runs on a 1-D box"))
    if model.params.decay_rate.magnitude > 0 or model.params.source is not None:
        problems.append(("solver.method", "the telegrapher method has no decay or source"))
    if model.injections:
        problems.append(("events", "the telegrapher method takes no injections"))
    if problems:
        raise ScenarioError(problems)


def simulate(model: FickDiffusion, progress: Progress | None
             ) -> tuple[np.ndarray, np.ndarray, Ledger, dict[str, Any]]:
    check(model)
    tg = model.scenario.time
    d = float(model.params.diffusivity.m_as("m^2/s"))
    u0 = place(model.params.initial, model.grid, model.field_units).ravel()
    sol = solve_telegrapher(model.grid, d, relaxation_time(model), u0, tg.dt, tg.n_steps,
                            tg.steps_per_output)
    if progress is not None:
        progress(1.0)
    # closed faces: nothing enters or leaves, the ledger claims no flows
    ledger = Ledger.of("solute", model.amount_units, len(sol.times))
    return sol.times, sol.u.reshape(len(sol.times), *model.grid.cells), ledger, {}


def audits(model: FickDiffusion) -> list[Any]:
    def finite_propagation(ctx: AuditContext) -> list[AuditResult]:
        tau = relaxation_time(model)
        grid = model.grid
        d = float(model.params.diffusivity.m_as("m^2/s"))
        u = ctx.states["concentration"].values.reshape(len(ctx.times), -1)  # type: ignore[arg-type]
        x = grid.centers(0)
        if tau == 0:
            return [AuditResult("finite_propagation", True, 0.0, 0.0, "", "not applicable: "
                                "τ = 0 is diffusion, whose speed is unbounded")]
        speed = math.sqrt(d / tau)
        h = grid.spacing[0]
        occupied = np.flatnonzero(u[0] != 0)
        support = (x[occupied[0]] - h / 2, x[occupied[-1]] + h / 2)
        assert ctx.times is not None
        t = ctx.times - ctx.times[0]
        margin = front_margin(speed, model.scenario.time.dt, h, t)
        return [audit_finite_propagation(ctx.times, x, u, grid.weights.ravel(), support, speed,
                                         margin)]

    def diffusive_limit(ctx: AuditContext) -> list[AuditResult]:
        from medtransport.numerics.finite_volume import DiffusionProblem, solve

        tg = model.scenario.time
        d = float(model.params.diffusivity.m_as("m^2/s"))
        u0 = place(model.params.initial, model.grid, model.field_units).ravel()
        limit = solve_telegrapher(model.grid, d, 0.0, u0, tg.dt, tg.n_steps,
                                  tg.steps_per_output)
        ref = solve(DiffusionProblem(model.grid, d), u0, tg.dt, tg.n_steps,
                    output_every=tg.steps_per_output, method="backward_euler")
        return [audit_diffusive_limit(limit.u, np.asarray(ref.states).reshape(limit.u.shape))]

    return [finite_propagation, diffusive_limit]
