"""``diffusion.fick`` with ``solver.method: telegrapher``: finite-speed diffusion (Cattaneo),

    τ·∂²c/∂t² + ∂c/∂t = D·∂²c/∂x²,      front speed √(D/τ),

on a 1–3-D box whose faces are closed (``no_flux``) or open (``absorbing``, ``dirichlet``), by
the core's asymptotic-preserving relaxed-flux scheme (:mod:`medtransport.numerics.cattaneo`,
the variable-coefficient form of :mod:`medtransport.numerics.telegrapher`); ``solver.
relaxation_time`` is τ (τ = 0 is Fick's law, solved exactly as ``backward_euler`` solves it).
Audits: the core's mass balance (what leaves through open faces booked per face), finite
propagation beyond the initial support ± ct (Euclidean distance from its bounding box, up to
the scheme's stated front width), and the diffusive limit (the same scheme at τ = 0 equals the
core's backward-Euler solution).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from medtransport.audit.finite_speed import audit_diffusive_limit, audit_finite_propagation
from medtransport.audit.report import AuditContext, AuditResult
from medtransport.errors import ScenarioError
from medtransport.ledger import Ledger
from medtransport.numerics.telegrapher import front_margin
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
    if grid.geometry != "cartesian":
        problems.append(("domain", "the telegrapher method runs on a 1–3-D box"))
    if model.params.decay_rate.magnitude > 0 or model.params.source is not None:
        problems.append(("solver.method", "the telegrapher method has no decay or source"))
    if model.injections:
        problems.append(("events", "the telegrapher method takes no injections"))
    if problems:
        raise ScenarioError(problems)


def relaxed_solution(model: FickDiffusion, tau: float, every: int | None = None
                     ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(output steps' states (T, cells), cumulative outflow per open face at the outputs) of
    the relaxed-flux scheme with relaxation time ``tau`` on the model's grid and faces."""
    from medtransport.numerics.cattaneo import RelaxedFluxStepper
    from medtransport.numerics.finite_volume import DiffusionProblem

    tg = model.scenario.time
    d = float(model.params.diffusivity.m_as("m^2/s"))
    u = place(model.params.initial, model.grid, model.field_units).ravel()
    every = tg.steps_per_output if every is None else every
    steps = list(range(0, tg.n_steps + 1, every))
    if steps[-1] != tg.n_steps:
        steps.append(tg.n_steps)
    stepper = RelaxedFluxStepper(DiffusionProblem(model.grid, d, model.boundaries), tg.dt, tau)
    faces = [f for f in model.grid.faces if model.boundaries[f].lets_through]
    out = np.empty((len(steps), u.size))
    outflow = {f: np.zeros(len(steps)) for f in faces}
    running = dict.fromkeys(faces, 0.0)
    out[0] = u
    k = 1
    for step in range(1, tg.n_steps + 1):
        u, flows = stepper.step(u)
        for f in faces:
            running[f] += flows.outflow[f]
        if k < len(steps) and steps[k] == step:
            out[k] = u
            for f in faces:
                outflow[f][k] = running[f]
            k += 1
    return np.asarray(steps, float) * tg.dt, out, outflow


def simulate(model: FickDiffusion, progress: Progress | None
             ) -> tuple[np.ndarray, np.ndarray, Ledger, dict[str, Any]]:
    check(model)
    times, states, outflow = relaxed_solution(model, relaxation_time(model))
    if progress is not None:
        progress(1.0)
    # closed faces claim no flow; an open face books what crossed it
    ledger = Ledger.of("solute", model.amount_units, len(times), outflow=outflow or None)
    return times, states.reshape(len(times), *model.grid.cells), ledger, {}


def distance_from_support(model: FickDiffusion, u0: np.ndarray) -> np.ndarray:
    """Euclidean distance of each cell centre from the bounding box of the initially occupied
    cells (their half cells included): 0 inside it."""
    grid = model.grid
    occupied = np.asarray(u0).reshape(grid.cells) != 0
    centres = np.meshgrid(*(grid.centers(k) for k in range(grid.ndim)), indexing="ij")
    total = np.zeros(grid.cells)
    for k in range(grid.ndim):
        x = centres[k]
        lo = x[occupied].min() - grid.spacing[k] / 2
        hi = x[occupied].max() + grid.spacing[k] / 2
        total += np.maximum(0.0, np.maximum(lo - x, x - hi)) ** 2
    return np.sqrt(total).ravel()


def audits(model: FickDiffusion) -> list[Any]:
    def finite_propagation(ctx: AuditContext) -> list[AuditResult]:
        tau = relaxation_time(model)
        grid = model.grid
        d = float(model.params.diffusivity.m_as("m^2/s"))
        u = ctx.states["concentration"].values.reshape(len(ctx.times), -1)  # type: ignore[arg-type]
        if tau == 0:
            return [AuditResult("finite_propagation", True, 0.0, 0.0, "", "not applicable: "
                                "τ = 0 is diffusion, whose speed is unbounded")]
        speed = math.sqrt(d / tau)
        h = max(grid.spacing)
        r = distance_from_support(model, u[0])
        assert ctx.times is not None
        t = ctx.times - ctx.times[0]
        margin = front_margin(speed, model.scenario.time.dt, h, t)
        return [audit_finite_propagation(ctx.times, r, u, np.broadcast_to(
            grid.weights, grid.cells).ravel(), (-math.inf, 0.0), speed, margin)]

    def diffusive_limit(ctx: AuditContext) -> list[AuditResult]:
        from medtransport.numerics.finite_volume import DiffusionProblem, solve

        tg = model.scenario.time
        d = float(model.params.diffusivity.m_as("m^2/s"))
        u0 = place(model.params.initial, model.grid, model.field_units).ravel()
        _, limit, _ = relaxed_solution(model, 0.0)
        ref = solve(DiffusionProblem(model.grid, d, model.boundaries),
                    u0.reshape(model.grid.cells), tg.dt, tg.n_steps,
                    output_every=tg.steps_per_output, method="backward_euler")
        return [audit_diffusive_limit(limit, np.asarray(ref.states).reshape(limit.shape))]

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
    fick = solve(DiffusionProblem(grid, d, model.boundaries), u0.reshape(grid.cells), tg.dt,
                 tg.n_steps,
                 output_every=tg.steps_per_output, method="backward_euler")
    # in 2-D/3-D: the line along the first axis through the middle of the initial support
    occ = np.nonzero(np.asarray(u0).reshape(grid.cells))
    line = (slice(None), *(int((occ[k].min() + occ[k].max()) // 2) for k in range(1, grid.ndim)))

    def along(states: Any) -> np.ndarray:
        a = np.asarray(states)
        return a.reshape(a.shape[0], *grid.cells)[(slice(None), *line)]

    fick_line = along(fick.states)
    u0_line = np.asarray(u0).reshape(grid.cells)[line]
    x = grid.centers(0) * 1e3
    t = ds["time"].values - ds["time"].values[0]
    # concentrations as a person reads them (mM for this dye), the difference in the same unit
    canonical = str(ds["concentration"].attrs["units"])
    unit = DisplayUnits(model).unit("concentration", canonical, ds["concentration"].values)

    def shown(values: Any) -> np.ndarray:
        return convert(values, canonical, unit)

    u = shown(along(ds["concentration"].values))
    figure.set_size_inches(13, 4.5)
    ax1, ax2 = figure.subplots(1, 2)
    occupied = np.flatnonzero(u0_line != 0)
    edge = (grid.centers(0)[occupied[-1]] + grid.spacing[0] / 2) if occupied.size else 0.0
    speed = math.sqrt(d / tau) if tau > 0 else math.inf
    for n, i in enumerate(np.unique(np.linspace(1, len(t) - 1, 4).astype(int))):
        colour = f"C{n}"
        ax1.plot(x, u[i], color=colour, lw=2, label=f"telegrapher, t = {t[i]:.3g} s")
        ax1.plot(x, shown(fick_line[i]), color=colour, ls="--", lw=1)
        if math.isfinite(speed):
            ax1.axvline((edge + speed * t[i]) * 1e3, color=colour, ls=":", lw=1)
    ax1.plot([], [], "k--", lw=1, label="Fick's law (τ = 0), same grid")
    ax1.plot([], [], "k:", lw=1, label="reach x₀ + ct")
    ax1.set_xlabel("position x [mm]")
    ax1.set_ylabel(f"concentration [{pretty(unit)}]")
    where = ", ".join(f"{grid.dims[k]} = {grid.centers(k)[line[k]] * 1e3:.3g} mm"
                      for k in range(1, grid.ndim))
    ax1.set_title(f"finite-speed front, τ = {tau:g} s, c = {speed * 1e6:.3g} µm/s"
                  + (f" (along x at {where})" if where else ""))
    ax1.legend(fontsize="x-small")
    taus = [tau * f for f in (1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001)] if tau > 0 else []
    dev = []
    for tk in taus:
        _, sol, _ = relaxed_solution(model, tk, tg.n_steps)
        last = np.asarray(fick.states).reshape(-1, sol.shape[1])[-1]
        dev.append(float(np.max(np.abs(shown(sol[-1] - last)))))
    if taus:
        ax2.loglog(taus, dev, "o-",
                   label=f"max over x of |telegrapher − Fick| at t = {t[-1]:.3g} s")
        ax2.set_xlabel("relaxation time τ [s]")
        ax2.set_ylabel(f"difference [{pretty(unit)}]")
        ax2.legend(fontsize="x-small")
    ax2.set_title("convergence to diffusion as τ → 0 (same grid, same step)")
    figure.suptitle(model.scenario.name)
