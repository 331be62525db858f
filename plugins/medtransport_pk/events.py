"""Dosing events in the NONMEM sense, read from the scenario's ``events`` section.

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

import pint

from medtransport.errors import ScenarioError
from medtransport.scenario import Scenario

__all__ = ["Regimen", "amount_unit", "read_regimens"]

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
