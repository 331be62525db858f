"""The model contract: what a plugin's model declares, and what it returns.

A model answers, in code, the five questions a careful reviewer asks of any transport model:

1. what is counted — :attr:`Model.conserved` (species, each with its state variable);
2. where — :meth:`Model.build_domain` (compartments, a grid, particles);
3. what may leave — :meth:`Model.build_boundaries` and :meth:`Model.routes`;
4. what is conserved — the ledger terms it claims in :class:`Trajectory.ledgers`;
5. how much it starts with — :meth:`Model.initial_amounts`, from the scenario, before it runs.

The framework checks those declarations against the numbers :meth:`Model.simulate` returns.
A model can add audits (:meth:`Model.audits`); it cannot remove the core's.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pint
import xarray as xr
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from medtransport.boundary import BoundaryCondition
from medtransport.domain import Domain
from medtransport.errors import ScenarioError
from medtransport.ledger import Ledger, Species
from medtransport.population import PatientBatch, sample_population
from medtransport.scenario import Scenario, bools_taken_as_numbers, format_validation_error

if TYPE_CHECKING:
    from medtransport.audit import AuditContext, AuditResult, StabilityMargin

__all__ = ["Model", "Params", "Tolerance", "Trajectory"]

Progress = Callable[[float], None]


class Params(BaseModel):
    """Base class of a model's parameters: unknown fields are errors, quantities via ``Qty``."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Tolerance:
    """Audit tolerances: ``|residual| ≤ atol + rtol·scale``; ``n_sigma`` for statistical
    checks. ``atol`` is in the ledger's amount unit."""

    rtol: float = 1e-9
    atol: float = 0.0
    n_sigma: float = 5.0

    def tightened(self, rtol: float | None, atol: float | None,
                  n_sigma: float | None) -> Tolerance:
        """The scenario's values where they are tighter; looser ones are refused."""
        problems = []
        for name, mine, theirs in (("rtol", self.rtol, rtol), ("atol", self.atol, atol),
                                   ("n_sigma", self.n_sigma, n_sigma)):
            if theirs is not None and theirs > mine:
                problems.append((f"audit.{name}", f"a scenario may tighten the model's default "
                                                  f"{mine:g}, not loosen it (got {theirs:g})"))
        if problems:
            raise ScenarioError(problems)
        return Tolerance(self.rtol if rtol is None else rtol,
                         self.atol if atol is None else atol,
                         self.n_sigma if n_sigma is None else n_sigma)


@dataclass
class Trajectory:
    """What :meth:`Model.simulate` returns.

    ``states`` is an :class:`xarray.Dataset` over ``time`` (seconds) and the domain's dims;
    every variable and coordinate carries ``units`` and ``long_name`` attributes. ``ledgers``
    maps species name → :class:`Ledger`. ``standard_errors`` maps species name → the standard
    error of the stored amount at each output time, for stochastic solvers.
    """

    states: xr.Dataset
    ledgers: dict[str, Ledger]
    standard_errors: dict[str, Any] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)


class Model:
    """Base class of every model. Subclasses set the class attributes and implement
    :meth:`build_domain`, :meth:`initial_amounts` and :meth:`simulate`."""

    #: ``"<plugin>.<name>"``, e.g. ``"diffusion.fick"``
    id: ClassVar[str]
    title: ClassVar[str]
    version: ClassVar[str]
    description: ClassVar[str]
    Params: ClassVar[type[Params]]
    conserved: ClassVar[tuple[Species, ...]]
    #: Conformance and audit tags: ``deterministic``/``stochastic``, ``grid``, ``series``,
    #: ``compartments``, ``batched`` …
    tags: ClassVar[frozenset[str]] = frozenset()
    #: Solver methods and their default audit tolerances; the first is the default method.
    methods: ClassVar[dict[str, Tolerance]] = {"default": Tolerance()}
    #: The methods that draw random numbers (their output depends on the scenario's seed).
    stochastic_methods: ClassVar[frozenset[str]] = frozenset()
    #: The event types (``events[].type``) the model interprets; any other is refused.
    event_types: ClassVar[frozenset[str]] = frozenset()
    #: Parameters that may vary between virtual patients (``population.variability``); a
    #: model that declares none runs one patient at a time. A batched model reads
    #: :attr:`etas` and returns states and ledger terms with a ``patient`` dimension.
    population_parameters: ClassVar[frozenset[str]] = frozenset()
    #: Conformance checks the model cannot pass yet, each with the reason (check → reason);
    #: the suite runs them as strict expected failures (:mod:`medtransport.testing`).
    known_failures: ClassVar[dict[str, str]] = {}

    def __init__(self, scenario: Scenario, params: Params, *,
                 patients: tuple[int, int] | None = None):
        self.scenario = scenario
        #: For a population: the block of patients [start, stop) this instance runs (a chunk
        #: of :func:`medtransport.batch.run_population`); None means all of them.
        self.patients = patients
        self.params = params
        self.method = scenario.solver.method or next(iter(self.methods))
        if self.method not in self.methods:
            raise ScenarioError([("solver.method", f"{self.id} offers "
                                  f"{', '.join(self.methods)}; got {self.method!r}")])
        self.options = self._validate_options()
        # A stochastic run without a seed gets a fresh one, recorded with the result, so that
        # every result can be reproduced.
        self.seed: int | None = scenario.seed
        if self.seed is None and self.stochastic:
            self.seed = secrets.randbits(63)
        #: Covariates of each virtual patient, when the population draws them.
        self.covariates: PatientBatch | None = None
        self.etas = self._sample_population()
        self._check_events()
        self.domain = self.build_domain()
        self.boundaries = self.build_boundaries()
        _ = self.tolerance  # a loosened audit section is refused before anything runs

    def solver_options(self) -> dict[str, Any]:
        """The options ``solver`` may carry for :attr:`method`: name → annotated type with its
        default, e.g. ``{"walkers": (Annotated[int, Field(ge=1)], 100_000)}``."""
        return {}

    def _validate_options(self) -> dict[str, Any]:
        given = dict(self.scenario.solver.model_extra or {})
        known = self.solver_options()
        problems = [(f"solver.{k}", f"unknown option for method {self.method!r} of {self.id}"
                     + (f"; it takes {', '.join(sorted(known))}" if known else
                        "; it takes none"))
                    for k in sorted(set(given) - set(known))]
        values: dict[str, Any] = {}
        for name, (kind, default) in known.items():
            if name not in given:
                values[name] = default
                continue
            try:
                values[name] = TypeAdapter(kind).validate_python(given[name])
            except ValidationError as exc:
                problems += format_validation_error(exc, f"solver.{name}")
        if problems:
            raise ScenarioError(problems)
        return values

    def _check_events(self) -> None:
        problems = []
        for i, event in enumerate(self.scenario.events):
            if event.type not in self.event_types:
                takes = (f"it interprets {', '.join(sorted(self.event_types))}"
                         if self.event_types else "it interprets no events")
                from medtransport.suggest import did_you_mean

                hint = did_you_mean(event.type, self.event_types)
                problems.append((f"events.{i}.type", f"{self.id} does not know events of "
                                                     f"type {event.type!r}{hint}; {takes}"))
        if problems:
            raise ScenarioError(problems)

    # -- validation --------------------------------------------------------------------------
    @classmethod
    def validate_params(cls, parameters: dict[str, Any]) -> Params:
        """Validate the scenario's ``parameters`` section; errors name ``parameters.<field>``."""
        try:
            params = cls.Params.model_validate(parameters)
        except ValidationError as exc:
            raise ScenarioError(format_validation_error(exc, "parameters", data=parameters,
                                                        schema=cls.Params)) from None
        flagged = bools_taken_as_numbers(parameters, params, "parameters")
        if flagged:
            raise ScenarioError(flagged)
        return params

    # -- the five answers --------------------------------------------------------------------
    def build_domain(self) -> Domain:
        raise NotImplementedError

    def build_boundaries(self) -> dict[str, BoundaryCondition]:
        return {}

    def initial_amounts(self) -> dict[str, pint.Quantity]:
        """The amount of each species present at the start, as declared by the scenario."""
        raise NotImplementedError

    @property
    def stochastic(self) -> bool:
        return self.method in self.stochastic_methods or self.scenario.population is not None

    @property
    def n_patients(self) -> int | None:
        """The number of virtual patients, or None for a single-patient run."""
        pop = self.scenario.population
        if pop is None:
            return None
        start, stop = self.patient_range
        return stop - start

    @property
    def patient_range(self) -> tuple[int, int]:
        """[start, stop) of the patients this instance runs (the whole population unless it
        runs a chunk)."""
        pop = self.scenario.population
        if self.patients is not None:
            return self.patients
        return (0, 0 if pop is None else pop.size or 0)

    @property
    def patient_ids(self) -> np.ndarray:
        """The population-wide index of each patient of this instance."""
        return np.arange(*self.patient_range)

    def _sample_population(self) -> dict[str, np.ndarray] | None:
        pop = self.scenario.population
        if pop is None:
            return None
        if not self.population_parameters:
            raise ScenarioError([("population", f"{self.id} runs one patient at a time; it "
                                                "has no population parameters")])
        where = {n: "variability" for n in pop.variability}
        if pop.covariance is not None:
            where.update({n: "covariance.parameters" for n in pop.covariance.parameters})
        problems = [(f"population.{where[name]}.{name}", f"{self.id} lets "
                     f"{', '.join(sorted(self.population_parameters))} vary between patients")
                    for name in sorted(set(pop.eta_names()) - self.population_parameters)]
        if pop.size is None:
            raise ScenarioError([("population.size", "required: how many virtual patients "
                                                     "to draw")])
        start, stop = self.patient_range
        if not 0 <= start <= stop <= pop.size:
            problems.append(("population.size", f"patients [{start}, {stop}) are not among the "
                                                f"{pop.size} of the population"))
        if problems:
            raise ScenarioError(problems)
        assert self.seed is not None
        sample = sample_population(pop, self.seed, start, stop, self.scenario.patient)
        self.covariates = sample.covariates
        return sample.etas

    def ledger_units(self) -> dict[str, str]:
        """The unit each species' ledger is kept in, when known before the run (for
        ``explain``); empty if only the trajectory knows."""
        return {}

    def routes(self) -> dict[str, list[str]]:
        """Per species, the ways it may leave or be removed (faces that let flux through,
        sinks). Defaults to the boundary faces that let anything through."""
        leaving = [f"boundary {f}: {bc.describe()}" for f, bc in self.boundaries.items()
                   if bc.lets_through]
        return {s.name: leaving for s in self.conserved}

    # -- before the run ----------------------------------------------------------------------
    def stability(self) -> list[StabilityMargin]:
        """Stability margins to check before time advances."""
        return []

    def truncations(self) -> list[Any]:
        """Series truncations (objects with ``n_terms``, ``tail_bound``, ``tolerance``,
        ``sum_at_t0``, ``exact_sum_at_t0``) to audit before the run."""
        return []

    def working_memory_bytes(self) -> int | None:
        """The solver's peak working memory beyond the saved states, in bytes, if the model
        knows it better than the core's estimate (:mod:`medtransport.limits`); checked
        before the run allocates."""
        return None

    @property
    def tolerance(self) -> Tolerance:
        a = self.scenario.audit
        return self.methods[self.method].tightened(a.rtol, a.atol, a.n_sigma)

    # -- the run -----------------------------------------------------------------------------
    def simulate(self, progress: Progress | None = None) -> Trajectory:
        raise NotImplementedError

    def audits(self) -> list[Callable[[AuditContext], list[AuditResult]]]:
        """Extra audits of this model, run after the core's."""
        return []

    # -- presentation ------------------------------------------------------------------------
    def plot(self, dataset: xr.Dataset, figure: Any) -> None:
        """Draw the model family's main plot on a matplotlib figure (default: the first
        conserved species' stored amount over time and its density at the last time)."""
        from medtransport.plotting import default_plot

        default_plot(self, dataset, figure)

    def summary(self, dataset: xr.Dataset) -> tuple[str, list[str], list[list[str]]] | None:
        """A table the CLI prints after a run, as (title, column headers, rows of text) — e.g.
        one row per subject of a data set; None (the default) for none."""
        return None

    @classmethod
    def example_scenarios(cls) -> list[dict[str, Any]]:
        """Small scenarios (mappings) the conformance suite runs; each must pass its audits."""
        return []

    @classmethod
    def invalid_parameters(cls) -> list[tuple[dict[str, Any], str]]:
        """``(parameters, field)`` pairs that must be rejected with an error naming
        ``parameters.<field>`` (used by the conformance suite)."""
        return []
