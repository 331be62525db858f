"""Injections: ``events`` of type ``injection`` add an amount of solute at given times, placed on
the grid as the initial condition is, and booked as the ledger's inflow:

    c(t_s⁺) = c(t_s⁻) + δc_s,    Σ w·δc_s = amount_s,    inflow(t) = Σ_{t_s ≤ t} amount_s

Each event carries the fields of ``parameters.initial`` — ``kind`` (``uniform``, ``point``,
``gaussian``), ``amount`` and ``region``/``center``/``width`` — and ``at``, ``every``,
``count``. An injection falls on a time step (t_s − t0 a whole number of Δt, after the start:
what is there at the start is the initial condition); occurrences after the end of the run
are not given. The amount is added at the end of its step, so an output at t_s includes it
(states are right-continuous, as for the doses of the drug models). Injections need a
finite-volume method: the walkers and the series start from one initial condition.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from pydantic import ValidationError

from medtransport.errors import ScenarioError
from medtransport.scenario import format_validation_error
from medtransport_diffusion.initial import InitialCondition, amount_base, place

if TYPE_CHECKING:
    from medtransport_diffusion.model import FickDiffusion

FINITE_VOLUME = ("crank_nicolson", "backward_euler", "ftcs")
_FIELDS = ("kind", "amount", "region", "center", "width")


def injection_fields(model: FickDiffusion) -> dict[int, np.ndarray]:
    """Step number (1 … n_steps) → the concentration field its injections add."""
    events = [(i, e) for i, e in enumerate(model.scenario.events) if e.type == "injection"]
    if not events:
        return {}
    problems: list[tuple[str, str]] = []
    if model.method not in FINITE_VOLUME:
        raise ScenarioError([(f"events.{events[0][0]}.type",
                              f"injections need a finite-volume method ({', '.join(FINITE_VOLUME)}"
                              f"); {model.method} starts from one initial condition")])
    tg = model.scenario.time
    t0, dt, n_steps = float(tg.start.m_as("s")), float(tg.dt), int(tg.n_steps)
    out: dict[int, np.ndarray] = {}
    for i, event in events:
        extra = event.model_extra or {}
        unknown = sorted(set(extra) - set(_FIELDS))
        if unknown:
            problems += [(f"events.{i}.{k}", f"an injection takes {', '.join(_FIELDS)} besides "
                                             "at, every and count") for k in unknown]
            continue
        try:
            spec = InitialCondition.model_validate({k: extra[k] for k in _FIELDS if k in extra})
        except ValidationError as exc:
            problems += format_validation_error(exc, f"events.{i}")
            continue
        try:
            base = amount_base(spec.amount, model.grid, f"events.{i}.amount")
        except ScenarioError as exc:
            problems += exc.problems
            continue
        if base != model.base:
            problems.append((f"events.{i}.amount", f"the initial amount is counted in {model.base}"
                                                   f", this injection in {base}; use one kind "
                                                   "of amount"))
            continue
        field = None
        for t in event.times():
            steps = float(t - t0) / dt
            s = round(steps)
            if s > n_steps:
                break  # after the end of the run
            if abs(steps - s) > 1e-6 * max(1.0, steps):
                problems.append((f"events.{i}.at", f"an injection at {t:g} s is not on the time "
                                                   f"grid (start {t0:g} s, step {dt:g} s)"))
                break
            if s < 1:
                problems.append((f"events.{i}.at", f"an injection at {t:g} s is at the start of "
                                                   "the run; what is there at the start is "
                                                   "parameters.initial"))
                break
            if field is None:
                try:
                    field = place(spec, model.grid, model.field_units, path=f"events.{i}")
                except ScenarioError as exc:
                    problems += exc.problems
                    break
            out[s] = out[s] + field if s in out else field
    if problems:
        raise ScenarioError(problems)
    return out
