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


def plot(model: FickDiffusion, ds: Any, figure: Any) -> None:
    """The front at several times against Fick's law on the same grid (dashed), the reach
    x₀ + ct (dotted), and the distance to diffusion as τ → 0 (same grid and step)."""
    from medtransport.display import DisplayUnits, convert, pretty
    from medtransport.numerics.finite_volume import DiffusionProblem, solve

    tg = model.scenario.time
    grid = model.grid
    d = float(model.params.diffusivity.m_as("m^2/s"))
    tau = relaxation_time(model)
    u0 = place(model.params.initial, grid, model.field_units).ravel()
    fick = solve(DiffusionProblem(grid, d), u0, tg.dt, tg.n_steps,
                 output_every=tg.steps_per_output, method="backward_euler")
    x = grid.centers(0) * 1e3
    t = ds["time"].values - ds["time"].values[0]
    # concentrations as a person reads them (mM for this dye), the difference in the same unit
    canonical = str(ds["concentration"].attrs["units"])
    unit = DisplayUnits(model).unit("concentration", canonical, ds["concentration"].values)

    def shown(values: Any) -> np.ndarray:
        return convert(values, canonical, unit)

    u = shown(ds["concentration"].values)
    figure.set_size_inches(13, 4.5)
    ax1, ax2 = figure.subplots(1, 2)
    occupied = np.flatnonzero(u0 != 0)
    edge = (grid.centers(0)[occupied[-1]] + grid.spacing[0] / 2) if occupied.size else 0.0
    speed = math.sqrt(d / tau) if tau > 0 else math.inf
    for n, i in enumerate(np.unique(np.linspace(1, len(t) - 1, 4).astype(int))):
        colour = f"C{n}"
        ax1.plot(x, u[i], color=colour, lw=2, label=f"telegrapher, t = {t[i]:.3g} s")
        ax1.plot(x, shown(np.asarray(fick.states)[i]), color=colour, ls="--", lw=1)
        if math.isfinite(speed):
            ax1.axvline((edge + speed * t[i]) * 1e3, color=colour, ls=":", lw=1)
    ax1.plot([], [], "k--", lw=1, label="Fick's law (τ = 0), same grid")
    ax1.plot([], [], "k:", lw=1, label="reach x₀ + ct")
    ax1.set_xlabel("position x [mm]")
    ax1.set_ylabel(f"concentration [{pretty(unit)}]")
    ax1.set_title(f"finite-speed front, τ = {tau:g} s, c = {speed * 1e6:.3g} µm/s")
    ax1.legend(fontsize="x-small")
    taus = [tau * f for f in (1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001)] if tau > 0 else []
    dev = []
    for tk in taus:
        sol = solve_telegrapher(grid, d, tk, u0, tg.dt, tg.n_steps, tg.n_steps)
        dev.append(float(np.max(np.abs(shown(sol.u[-1] - np.asarray(fick.states)[-1])))))
    if taus:
        ax2.loglog(taus, dev, "o-",
                   label=f"max over x of |telegrapher − Fick| at t = {t[-1]:.3g} s")
        ax2.set_xlabel("relaxation time τ [s]")
        ax2.set_ylabel(f"difference [{pretty(unit)}]")
        ax2.legend(fontsize="x-small")
    ax2.set_title("convergence to diffusion as τ → 0 (same grid, same step)")
    figure.suptitle(model.scenario.name)
