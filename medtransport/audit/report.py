"""Audit results, the report that collects them, and the context audits read.

An audit is a function ``audit(context) -> list[AuditResult]``. A result records what was
measured, the tolerance it was held to, the verdict, and — for a failure — where in time and
space it failed.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from medtransport.audit import ledger_pass as one_pass
from medtransport.audit.extremes import extremes
from medtransport.units import ureg

if TYPE_CHECKING:
    from medtransport.model import Model, Tolerance, Trajectory

__all__ = ["AuditContext", "AuditReport", "AuditResult"]


@dataclass
class AuditResult:
    """One audit's verdict. ``measured`` and ``tolerance`` are in ``units``."""

    name: str
    passed: bool
    measured: float
    tolerance: float
    units: str = ""
    detail: str = ""
    where: dict[str, Any] = field(default_factory=dict)
    stage: str = "post"
    source: str = "core"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("measured", "tolerance"):
            v = out[key]
            out[key] = v if math.isfinite(v) else str(v)
        return out


@dataclass
class AuditReport:
    """All audit results of one run."""

    results: list[AuditResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> list[AuditResult]:
        return [r for r in self.results if not r.passed]

    def extend(self, results: list[AuditResult]) -> None:
        self.results.extend(results)

    def to_json(self) -> str:
        return json.dumps({"passed": self.passed,
                           "results": [r.to_dict() for r in self.results]}, default=str)

    @classmethod
    def from_json(cls, text: str) -> AuditReport:
        data = json.loads(text)
        results = []
        for r in data["results"]:
            r = dict(r)
            for key in ("measured", "tolerance"):
                r[key] = float(r[key])
            results.append(AuditResult(**r))
        return cls(results)

    def summary(self) -> str:
        if self.passed:
            return f"all {len(self.results)} audits passed"
        names = ", ".join(r.name for r in self.failures)
        return f"{len(self.failures)} of {len(self.results)} audits failed: {names}"


@dataclass
class AuditContext:
    """What audits read: the model (its declarations), its trajectory, and amounts the
    framework computed itself.

    ``stored[species]`` is Σ w·u recomputed from the states (+ the amount the species keeps
    beyond the domain's cells, :attr:`medtransport.ledger.Species.outside`), in the ledger's
    unit — (T,), or (T, P) for a batch of patients; ``initial[species]`` the declared initial
    amount in that unit (a float, or one per patient); ``times`` in seconds.
    """

    model: Model
    tolerance: Tolerance
    trajectory: Trajectory | None = None
    times: np.ndarray | None = None
    stored: dict[str, np.ndarray] = field(default_factory=dict)
    initial: dict[str, Any] = field(default_factory=dict)
    unit_problems: dict[str, str] = field(default_factory=dict)
    #: (min, max) by the memory they describe (``ledger_pass.memory_key``): a state that is
    #: also a ledger route, or an array the mass balance's pass has read, is not read again
    _extremes_at: dict[tuple[Any, ...], tuple[float, float]] = field(default_factory=dict,
                                                                     repr=False)
    #: reductions a patient-major batch's mass balance pass made on the way (by memory, and
    #: max |residual| by species), for what a population chunk keeps of its books
    _patient_sums_at: dict[tuple[Any, ...], np.ndarray] = field(default_factory=dict,
                                                                repr=False)
    _residual_abs_max: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict,
                                                                        repr=False)
    _expected: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _residual: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _display: Any = field(default=None, repr=False)

    def display_unit(self, name: str, canonical: str) -> str | None:
        """The unit tables show variable or species ``name`` in when the scenario wrote one
        of its dimension or the model declares one (see :mod:`medtransport.display`), else
        None: the audits' details in words use it, their measured numbers stay canonical."""
        from medtransport.display import DisplayUnits, dimensionality

        if self._display is None:
            try:
                self._display = DisplayUnits(self.model)
            except Exception:  # a model without declarations only costs the preference
                self._display = DisplayUnits()
        display = self._display
        if dimensionality(canonical) not in display.written and name not in display.declared:
            return None
        return str(display.unit(name, canonical))

    def expected(self, species: str) -> np.ndarray:
        """What the ledger accounts for, initial + inflow + source − outflow − sink: (T,), or
        (T, P) when the ledger is kept per patient; computed once per run."""
        hit = self._expected.get(species)
        if hit is None:
            if self._one_pass(species):
                return self._expected[species]
            assert self.trajectory is not None and self.times is not None
            ledger = self.trajectory.ledgers[species]
            hit = self._expected[species] = ledger.expected_stored(self.initial[species],
                                                                   len(self.times))
        return hit

    def residual(self, species: str) -> np.ndarray:
        """stored − expected, shaped like the stored amount; computed once per run. Raises
        ValueError when the ledger is kept per patient but the states are not."""
        hit = self._residual.get(species)
        if hit is None:
            if self._one_pass(species):
                return self._residual[species]
            stored = self.stored[species]
            expected = self.expected(species)
            if expected.ndim > stored.ndim:
                raise ValueError(f"the ledger of {species} is kept per patient but the states "
                                 "are not")
            if stored.ndim == 2:
                expected = expected.reshape(len(stored), -1)
            hit = self._residual[species] = stored - expected
        return hit

    def _one_pass(self, species: str) -> bool:
        """Expected and residual of a batch, and the extremes of what they are made of, from
        one pass over its memory (:mod:`medtransport.audit.ledger_pass`); False when that
        pass does not apply (or has already run and not applied)."""
        if species in self._expected or species not in self.stored:
            return False
        assert self.trajectory is not None and self.times is not None
        ledger = self.trajectory.ledgers[species]
        done = one_pass.ledger_pass(self.stored[species], self.initial[species],
                                    ledger.signed_terms(len(self.times)))
        if done is None:
            return False
        self._expected[species] = done.expected
        self._residual[species] = done.residual
        self._extremes_at.update(done.extremes)
        if done.patient_sums is not None:
            self._patient_sums_at.update(done.patient_sums)
        if done.residual_abs_max is not None:
            self._residual_abs_max[species] = done.residual_abs_max
        return True

    def patient_sums(self, values: np.ndarray) -> np.ndarray | None:
        """Σ over patients at each time of a (time, patient) array the mass balance's pass
        read or wrote (stored, a ledger term, expected) — numpy's ``sum(axis=1)`` bit for
        bit — or None when the pass did not make it."""
        return self._patient_sums_at.get(one_pass.memory_key(np.asarray(values)))

    def residual_abs_max(self, species: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(max |residual| over time for each patient, over the patients at each time), NaN
        where a NaN is, when the mass balance's pass made them; else None."""
        return self._residual_abs_max.get(species)

    def extremes(self, name: str) -> tuple[float, float]:
        """(min, max) of a numeric state variable or coordinate, (nan, nan) if any value is
        NaN; computed once per run and shared by the audits that ask (finiteness,
        non-negativity)."""
        return self.extremes_of(self.states[name].values)

    def extremes_of(self, values: np.ndarray) -> tuple[float, float]:
        """(min, max) of an array the audits read, (nan, nan) if any value is NaN; once per
        piece of memory (a state that is also a ledger route is read once)."""
        values = np.asarray(values)
        if values.size == 0:
            return extremes(values)  # refused, as ever
        key = one_pass.memory_key(values)
        hit = self._extremes_at.get(key)
        if hit is None:
            hit = self._extremes_at[key] = extremes(values)
        return hit

    def magnitude(self, values: np.ndarray) -> float:
        """max |u| of an array the audits read (NaN if any u is NaN; 0 for no values)."""
        values = np.asarray(values)
        if values.size == 0:
            return 0.0
        lo, hi = self.extremes_of(values)
        return max(-lo, hi) if lo == lo else float("nan")

    def unrecomputable(self, name: str, species: str) -> AuditResult | None:
        """A failed result for an audit of ``species`` whose stored amount the framework could
        not recompute (a unit mismatch, a missing ledger), or None."""
        problem = self.unit_problems.get(species)
        if problem is None:
            return None
        return AuditResult(name, False, float("nan"), 0.0,
                           detail=f"cannot recompute the stored amount: {problem}")

    @property
    def states(self) -> xr.Dataset:
        assert self.trajectory is not None
        return self.trajectory.states

    @classmethod
    def after_run(cls, model: Model, tolerance: Tolerance, trajectory: Trajectory) -> AuditContext:
        """Recompute every species' stored amount from the states with the domain's
        quadrature, independently of the model's ledger."""
        ctx = cls(model, tolerance, trajectory)
        states = trajectory.states
        ctx.times = np.asarray(states["time"].values, dtype=float)
        declared = model.initial_amounts()
        for species in model.conserved:
            ledger = trajectory.ledgers.get(species.name)
            if ledger is None:
                ctx.unit_problems[species.name] = "the model returned no ledger for it"
                continue
            try:
                density = states[species.variable]
                # Dimensions beyond time and the domain's (a batch of patients) are kept.
                batch = [d for d in density.dims if d != "time" and d not in model.domain.dims]
                dims = ("time", *batch, *model.domain.dims)
                values = density.transpose(*dims).values
                units = ureg.parse_units(density.attrs["units"])
                if species.capacity is not None:
                    cap = states[species.capacity]
                    values = values * cap.transpose(*model.domain.dims).values
                    # As quantities, so that an offset unit (degC × J/(m³·K)) is refused.
                    units = (ureg.Quantity(1.0, units)
                             * ureg.Quantity(1.0, cap.attrs["units"])).units
                stored = np.asarray(model.domain.integrate(values, units).m_as(ledger.units),
                                    dtype=float)
                if species.outside is not None:
                    # amount held beyond the domain's cells: stored, since it can come back
                    apart = states[species.outside]
                    stored = stored + ureg.Quantity(
                        apart.transpose("time", *batch).values,
                        apart.attrs["units"]).m_as(ledger.units)
                ctx.stored[species.name] = stored
                initial = np.asarray(declared[species.name].m_as(ledger.units), dtype=float)
                ctx.initial[species.name] = float(initial) if initial.ndim == 0 else initial
            except Exception as exc:  # a unit mismatch is a failed audit, not a crash
                ctx.unit_problems[species.name] = f"{type(exc).__name__}: {exc}"
        for species in model.conserved:
            # before finiteness reads the states: a state that is also a ledger route (a
            # batch's cumulative eliminated amount) is then read once, by this pass
            try:
                ctx._one_pass(species.name)
            except ValueError:
                pass  # a misshapen ledger: the mass balance reports it
        return ctx
