"""Dosing events in the NONMEM sense, read from the scenario's ``events`` section.

Every event becomes one record of a :class:`~medtransport_pk.records.RecordTable`
(:func:`records_from_events`), which the event engine (:mod:`medtransport_pk.engine`) runs
with exactly the semantics of a NONMEM data set. The vocabulary, per event:

=====================  ===================================================================
``type``               ``bolus`` (into central unless ``compartment`` says otherwise),
                       ``oral`` (a bolus into the depot), ``infusion``, or ``reset``
                       (EVID 3: every amount to zero, pending doses and running infusions
                       cancelled); ``dialysis`` and ``crrt`` are clearances, not records
                       (:mod:`medtransport_pk.extracorporeal`)
``amount``             AMT, a mass or an amount of substance
``compartment``        CMT by name: ``depot``, ``central``, ``peripheral``, ``peripheral_2``
``rate``               RATE: an amount per time, or ``modelled`` (RATE −1: the parameter
                       ``infusion_rate`` of the compartment)
``duration``           a time (RATE = AMT/duration, so F changes the duration as for any
                       given rate), or ``modelled`` (RATE −2: ``infusion_duration``)
``at`` ``every``       TIME, II and ADDL + 1
``count``
``steady_state``       ``true`` or ``1`` (SS 1: reset, then steady state), ``2`` (SS 2:
                       steady state added without reset); an infusion with ``rate``,
                       ``steady_state`` and no ``amount`` nor ``every`` is a constant
                       infusion at steady state (AMT 0, RATE > 0, II 0)
``reset``              ``true`` on a dose: EVID 4, reset then dose
=====================  ===================================================================

The older reading below (:func:`read_regimens`) remains for the nonlinear (Michaelis–Menten)
solver, which takes bolus, oral and infusion doses only.

Per event (``type`` bolus, infusion or oral):

- ``amount`` — the dose, a mass or an amount of substance (AMT);
- infusions take exactly one of ``rate`` (amount per time, RATE) or ``duration`` (RATE = −2);
- ``at`` (TIME), ``every`` (II) and ``count`` (ADDL + 1) as the core's ``Event.times()``;
- ``steady_state: true`` (SS = 1): the regimen has run long enough to reach steady state before
  its first dose; needs ``every`` and a first dose at the start of the simulation.

Oral doses are delayed by the lag time (ALAG) as a whole — NONMEM shifts the dose record — and
split at that time into F·amount to the gut depot and (1 − F)·amount to the unabsorbed sink.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pint

from medtransport.errors import ScenarioError
from medtransport.scenario import Scenario
from medtransport_pk.records import RecordTable

__all__ = ["Regimen", "amount_unit", "read_regimens", "records_from_events"]

ROUTES = ("bolus", "infusion", "oral")
_ALLOWED = {"bolus": {"amount", "steady_state"}, "oral": {"amount", "steady_state"},
            "infusion": {"amount", "rate", "duration", "steady_state"}}


@dataclass(frozen=True)
class Regimen:
    """One event line: a dose repeated ``count`` times every ``every`` hours from ``at``.

    Amounts are in the ledger's amount unit, times in hours; ``duration`` is 0 for bolus and
    oral doses.
    """

    index: int
    route: str
    amount: float
    at: float
    every: float | None
    count: int
    duration: float = 0.0
    steady_state: bool = False

    def times(self) -> list[float]:
        step = self.every or 0.0
        return [self.at + i * step for i in range(self.count)]


def _is_amount(q: object) -> bool:
    return isinstance(q, pint.Quantity) and (q.check("[mass]") or q.check("[substance]"))


def amount_unit(scenario: Scenario) -> str:
    """The ledger's amount unit: mg for doses given as a mass, mmol for substance (the first
    dose decides; others are converted with ``molar_mass``)."""
    for event in scenario.events:
        q = event.get("amount")
        if _is_amount(q):
            return "mg" if q.check("[mass]") else "mmol"
    return "mg"


def _convert(q: pint.Quantity, unit: str, molar_mass: pint.Quantity | None, path: str
             ) -> float:
    if q.is_compatible_with(unit):
        return float(q.m_as(unit))
    if molar_mass is None:
        raise ScenarioError([(path, f"{q:~P} cannot be converted to {unit} without "
                                    "parameters.molar_mass")])
    converted = q * molar_mass if q.check("[substance]") or q.check("[substance]/[time]") \
        else q / molar_mass
    return float(converted.m_as(unit))


def read_regimens(scenario: Scenario, unit: str, molar_mass: pint.Quantity | None
                  ) -> list[Regimen]:
    """Validate the events and convert them; every problem names its field path."""
    problems: list[tuple[str, str]] = []
    out: list[Regimen] = []
    t0 = scenario.time.start.m_as("h")
    for i, event in enumerate(scenario.events):
        if event.type in ("dialysis", "crrt"):
            continue  # a clearance, not a dose (medtransport_pk.extracorporeal)
        base = f"events.{i}"
        extra = dict(event.model_extra or {})
        for key in sorted(set(extra) - _ALLOWED.get(event.type, set())):
            problems.append((f"{base}.{key}", f"a {event.type} dose does not take {key!r}"))
        q = extra.get("amount")
        if not _is_amount(q):
            problems.append((f"{base}.amount", f"expected [mass] or [substance], got {q!r}"))
            continue
        assert isinstance(q, pint.Quantity)
        if q.magnitude <= 0:
            problems.append((f"{base}.amount", f"must be positive, got {q:~P}"))
            continue
        try:
            amount = _convert(q, unit, molar_mass, f"{base}.amount")
        except ScenarioError as exc:
            problems += exc.problems
            continue
        at = float(event.at.m_as("h"))
        if at < t0 - 1e-12:
            problems.append((f"{base}.at", f"the dose at {event.at:~P} precedes time.start"))
        every = None if event.every is None else float(event.every.m_as("h"))
        duration = 0.0
        if event.type == "infusion":
            rate, dur = extra.get("rate"), extra.get("duration")
            if (rate is None) == (dur is None):
                problems.append((f"{base}.rate", "an infusion takes exactly one of 'rate' and "
                                                 "'duration'"))
                continue
            if dur is not None:
                if not (isinstance(dur, pint.Quantity) and dur.check("[time]")
                        and dur.magnitude > 0):
                    problems.append((f"{base}.duration", f"expected a positive [time], got "
                                                         f"{dur!r}"))
                    continue
                duration = float(dur.m_as("h"))
            else:
                ok = isinstance(rate, pint.Quantity) and rate.magnitude > 0 and (
                    rate.check("[mass]/[time]") or rate.check("[substance]/[time]"))
                if not ok:
                    problems.append((f"{base}.rate", f"expected a positive amount per time, "
                                                     f"got {rate!r}"))
                    continue
                try:
                    r = _convert(rate, f"{unit}/h", molar_mass, f"{base}.rate")
                except ScenarioError as exc:
                    problems += exc.problems
                    continue
                duration = amount / r
        ss = extra.get("steady_state", False)
        if not isinstance(ss, bool):
            problems.append((f"{base}.steady_state", f"expected true or false, got {ss!r}"))
            continue
        if ss:
            if every is None:
                problems.append((f"{base}.steady_state", "steady state needs 'every' (the "
                                                         "dosing interval)"))
                continue
            if abs(at - t0) > 1e-9:
                problems.append((f"{base}.steady_state", "a steady-state regimen must start at "
                                                         "time.start"))
            if duration > every:
                problems.append((f"{base}.steady_state", "steady state with infusions longer "
                                                         "than the interval is not supported"))
        out.append(Regimen(i, event.type, amount, at, every, event.count, duration, ss))
    if problems:
        raise ScenarioError(problems)
    return out


_RECORD_KEYS = {
    "bolus": {"amount", "steady_state", "compartment", "reset"},
    "oral": {"amount", "steady_state", "reset"},
    "infusion": {"amount", "rate", "duration", "steady_state", "compartment", "reset"},
    "reset": set(),
}
_MODELLED = "modelled"


def records_from_events(scenario: Scenario, unit: str, molar_mass: pint.Quantity | None,
                        compartments: tuple[str, ...]) -> RecordTable:
    """The scenario's ``events`` as a record table (one subject, ID 1), in time order (events
    at one time in the order written). ``compartments`` are the model's body compartments in
    CMT order. Every problem names its field path; ``row`` is the event's index."""
    problems: list[tuple[str, str]] = []
    rows: list[tuple[float, int, int, float, int, float, float, int, int]] = []
    t0 = scenario.time.start.m_as("h")
    for i, event in enumerate(scenario.events):
        base = f"events.{i}"
        extra = dict(event.model_extra or {})
        kind = event.type
        if kind in ("dialysis", "crrt"):
            continue  # a clearance, not a record (medtransport_pk.extracorporeal)
        for key in sorted(set(extra) - _RECORD_KEYS.get(kind, set())):
            problems.append((f"{base}.{key}", f"a {kind} event does not take {key!r}"))
        at = float(event.at.m_as("h"))
        if at < t0 - 1e-12:
            problems.append((f"{base}.at", f"the event at {event.at:~P} precedes time.start"))
        ii = 0.0 if event.every is None else float(event.every.m_as("h"))
        addl = event.count - 1
        if kind == "reset":
            if event.every is not None or event.count != 1:
                problems.append((f"{base}.every", "a reset happens once (no every/count)"))
            rows.append((at, i, 3, 0.0, 0, 0.0, 0.0, 0, 0))
            continue
        default = "depot" if kind == "oral" else "central"
        name = extra.get("compartment", default) if kind != "oral" else "depot"
        if not isinstance(name, str) or name not in compartments:
            where = f"{base}.compartment" if "compartment" in extra else f"{base}.type"
            problems.append((where, f"expected one of {', '.join(compartments)}, got "
                                    f"{name!r}"))
            continue
        cmt = compartments.index(name) + 1
        ss_value = extra.get("steady_state", False)
        if isinstance(ss_value, bool) or (isinstance(ss_value, int) and ss_value in (1, 2)):
            ss = int(ss_value)
        else:
            problems.append((f"{base}.steady_state", f"expected true, false, 1 or 2, got "
                                                     f"{ss_value!r}"))
            continue
        reset = extra.get("reset", False)
        if not isinstance(reset, bool):
            problems.append((f"{base}.reset", f"expected true or false, got {reset!r}"))
            continue
        q = extra.get("amount")
        rate_q, dur_q = extra.get("rate"), extra.get("duration")
        constant = (kind == "infusion" and q is None and ss == 1 and event.every is None
                    and rate_q is not None)
        amount = 0.0
        if not constant:
            if not _is_amount(q):
                problems.append((f"{base}.amount", f"expected [mass] or [substance], got "
                                                   f"{q!r}"))
                continue
            assert isinstance(q, pint.Quantity)
            if q.magnitude <= 0:
                problems.append((f"{base}.amount", f"must be positive, got {q:~P}"))
                continue
            try:
                amount = _convert(q, unit, molar_mass, f"{base}.amount")
            except ScenarioError as exc:
                problems += exc.problems
                continue
        rate = 0.0
        if kind == "infusion":
            if (rate_q is None) == (dur_q is None):
                problems.append((f"{base}.rate", "an infusion takes exactly one of 'rate' and "
                                                 "'duration'"))
                continue
            if rate_q == _MODELLED:
                rate = -1.0
            elif dur_q == _MODELLED:
                rate = -2.0
            elif dur_q is not None:
                if constant or not (isinstance(dur_q, pint.Quantity) and dur_q.check("[time]")
                                    and dur_q.magnitude > 0):
                    problems.append((f"{base}.duration", f"expected a positive [time] or "
                                                         f"'modelled', got {dur_q!r}"))
                    continue
                rate = amount / float(dur_q.m_as("h"))
            else:
                ok = isinstance(rate_q, pint.Quantity) and rate_q.magnitude > 0 and (
                    rate_q.check("[mass]/[time]") or rate_q.check("[substance]/[time]"))
                if not ok:
                    problems.append((f"{base}.rate", f"expected a positive amount per time or "
                                                     f"'modelled', got {rate_q!r}"))
                    continue
                try:
                    rate = _convert(rate_q, f"{unit}/h", molar_mass, f"{base}.rate")
                except ScenarioError as exc:
                    problems += exc.problems
                    continue
        if ss and not constant and event.every is None:
            problems.append((f"{base}.steady_state", "steady state needs 'every' (the dosing "
                                                     "interval)"))
            continue
        rows.append((at, i, 4 if reset else 1, amount, cmt, rate, ii, addl, ss))
    if problems:
        raise ScenarioError(problems)
    rows.sort(key=lambda r: (r[0], r[1]))
    cols = list(zip(*rows, strict=True)) if rows else [()] * 9
    n = len(rows)
    return RecordTable(
        id=np.ones(n, np.int64), time=np.array(cols[0], float), evid=np.array(cols[2], np.int64),
        amt=np.array(cols[3], float), cmt=np.array(cols[4], np.int64),
        rate=np.array(cols[5], float), ii=np.array(cols[6], float),
        addl=np.array(cols[7], np.int64), ss=np.array(cols[8], np.int64),
        mdv=np.ones(n, np.int64), dv=np.full(n, np.nan), row=np.array(cols[1], np.int64),
        amount_unit=unit, source="events")
