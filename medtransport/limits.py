"""Resource limits checked before a run allocates or starts: memory, work and events.

A legal-looking scenario can ask for more than the machine has (a 300³ grid with two outputs)
or for hours of stepping (5·10⁷ steps); refused before anything is allocated, with the
estimate and what to change, it costs the user a second instead of a hang or a crash.

Memory, in bytes, for V = cells × patients values and T saved output times::

    peak ≈ 3·T·V·8            the saved states, the result's copy and the writer's copy
         + V·WORK_BYTES_PER_VALUE   the solver's working memory (a model can say better:
                                     :meth:`Model.working_memory_bytes`)

Work, in seconds on one core, for N steps::

    t ≈ N·STEP_SECONDS + N·V·VALUE_STEP_SECONDS

Both are upper-bound estimates for the core's grid solvers; closed-form models finish far
sooner. Limits: :func:`memory_limit` (the smaller of :data:`MAX_MEMORY_BYTES` and half the
machine's memory), :data:`MAX_WORK_SECONDS`, and :data:`MAX_EVENT_OCCURRENCES`.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING

from medtransport.errors import ScenarioError
from medtransport.scenario import MAX_EVENTS

if TYPE_CHECKING:
    from medtransport.model import Model
    from medtransport.scenario import Scenario

__all__ = ["MAX_EVENT_OCCURRENCES", "MAX_MEMORY_BYTES", "MAX_WORK_SECONDS", "check_resources",
           "estimate_memory", "estimate_seconds", "memory_limit", "precheck"]

#: The most memory one run may plan to use, whatever the machine.
MAX_MEMORY_BYTES = 6 * 2**30
#: The solver's working memory per state value: a 7-point sparse operator (8-byte values,
#: 4-byte indices) held in two formats, a dozen work vectors, the ledger's running sums.
WORK_BYTES_PER_VALUE = 256
#: The cost of one time step of the core's solvers whatever the grid (Python-level work:
#: boundaries, ledger, events), and of one value in one step (measured on a loaded 2-core
#: machine: a 10-cell slab steps at ~45 µs, a 96³ grid at ~2 ns per cell).
STEP_SECONDS = 20e-6
VALUE_STEP_SECONDS = 5e-9
#: The longest run accepted without a change to the scenario (10 minutes of estimated work).
MAX_WORK_SECONDS = 600.0
#: The most event occurrences (doses, power steps) one run may have, counting repeats.
MAX_EVENT_OCCURRENCES = MAX_EVENTS


def memory_limit() -> int:
    """:data:`MAX_MEMORY_BYTES`, or half of this machine's memory if that is less."""
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return MAX_MEMORY_BYTES
    return int(min(MAX_MEMORY_BYTES, physical // 2))


def _values(model: Model) -> int:
    return math.prod(model.domain.shape) * (model.n_patients or 1)


def estimate_memory(model: Model) -> tuple[int, int]:
    """``(saved_states_bytes, working_bytes)`` of a run, before it allocates."""
    values = _values(model)
    saved = 3 * len(model.scenario.time.output_times()) * values * 8
    working = model.working_memory_bytes()
    if working is None:
        working = values * WORK_BYTES_PER_VALUE
    return saved, int(working)


def estimate_seconds(model: Model) -> float:
    """Estimated single-core seconds of stepping (an upper bound for the core's solvers)."""
    steps = model.scenario.time.n_steps
    return steps * STEP_SECONDS + steps * _values(model) * VALUE_STEP_SECONDS


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n < 2**40 else f"{n / 2**40:.3g} TiB"


def precheck(scenario: Scenario, patients: tuple[int, int] | None = None) -> None:
    """Before a model is even built (building a grid allocates it, a population is sampled):
    refuse what the scenario's grid, compartments and population size alone show will not
    fit, and more event occurrences than the limit. ``patients``: the chunk a population run
    builds."""
    occurrences = sum(e.count for e in scenario.events)
    if occurrences > MAX_EVENT_OCCURRENCES:
        raise ScenarioError([("events", f"{occurrences} event occurrences in total (counting "
                                        f"'count' repeats); the limit is "
                                        f"{MAX_EVENT_OCCURRENCES} — lower 'count' or lengthen "
                                        "'every'")])
    domain = scenario.domain
    cells = math.prod(domain.cells) if domain is not None and domain.cells else \
        len(domain.compartments or ()) if domain is not None else 1
    pop = scenario.population
    n = (patients[1] - patients[0]) if patients else (pop.size or 1 if pop is not None else 1)
    values = max(cells, 1) * n
    working = values * WORK_BYTES_PER_VALUE
    saved = 3 * len(scenario.time.output_times()) * values * 8
    limit = memory_limit()
    if saved + working <= limit:
        return
    if pop is not None and patients is None:
        raise ScenarioError([("population.size", f"{n} patients in memory would need about "
                                                 f"{_gib(saved + working)}, more than the "
                                                 f"limit of {_gib(limit)} here — run them in "
                                                 "chunks streamed to a store (--population N "
                                                 "--store OUT.zarr), or use fewer patients")])
    raise ScenarioError([("domain.cells", f"{cells} cells would need about "
                                          f"{_gib(saved + working)} of memory, more than the "
                                          f"limit of {_gib(limit)} here — use fewer cells, or "
                                          "output less often (time.output_every)")])


def check_resources(model: Model) -> None:
    """Refuse (:class:`ScenarioError` naming the field to change) a run whose events, memory
    or work exceed the limits."""
    sc = model.scenario
    saved, working = estimate_memory(model)
    limit = memory_limit()
    if saved + working > limit:
        population = model.n_patients is not None
        field = "population.size" if population and model.patients is None else (
            "domain.cells" if sc.domain is not None else "time.output_every")
        fix = ("run it in chunks streamed to a store (--population N --store OUT.zarr), "
               "or use fewer patients" if population and model.patients is None else
               "use fewer cells (domain.cells) or output less often (time.output_every)")
        raise ScenarioError([(field, f"the run would need about {_gib(saved + working)} of "
                                     f"memory ({_gib(saved)} for the saved states and their "
                                     f"copies, {_gib(working)} for the solver), more than the "
                                     f"limit of {_gib(limit)} here — {fix}")])
    seconds = estimate_seconds(model)
    if seconds > MAX_WORK_SECONDS:
        raise ScenarioError([("time.step", f"{sc.time.n_steps} steps over {_values(model)} "
                                           f"values is about {seconds / 60:.0f} minutes of "
                                           f"work; the limit is {MAX_WORK_SECONDS / 60:.0f} "
                                           "minutes — use a larger time.step, a shorter run "
                                           "or fewer cells")])
