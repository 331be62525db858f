"""Dialysis sessions, read from the scenario's ``events`` (``type: session``).

A session line takes ``duration`` (required), ``ultrafiltration`` (the net fluid removed, a
volume; default 0 L), ``substitution`` (haemodiafiltration substitution volume; default 0 L)
and optionally ``blood_flow``/``dialysate_flow`` overriding the dialyser prescription, or
``clearance`` (a measured clearance, e.g. a drug's CL_D) replacing the dialyser model. It
repeats either as the core's ``at``/``every``/``count``, or on a weekly schedule::

    {type: session, days: [Mon, Wed, Fri], at: 8 h, weeks: 4, duration: 4 h, ...}

where day 0 (Mon) begins at time 0 of the scenario and ``at`` is the time of day; ``weeks``
defaults to as many weeks as the run spans, and days before ``time.start`` are skipped.
Sessions may not overlap.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import pint

from medtransport.errors import ScenarioError
from medtransport.scenario import Scenario
from medtransport_dialysis.calendar import DAYS, weekly_starts

__all__ = ["DAYS", "Session", "read_sessions"]
_ALLOWED = {"duration", "ultrafiltration", "substitution", "blood_flow", "dialysate_flow",
            "clearance", "days", "weeks"}


@dataclass(frozen=True)
class Session:
    """One session: start and duration (h), volumes (L), flows (mL/min, None: the dialyser's)
    and, when given, the clearance itself (mL/min; instead of the dialyser model)."""

    index: int
    start: float
    duration: float
    ultrafiltration: float
    substitution: float
    blood_flow: float | None
    dialysate_flow: float | None
    clearance: float | None = None

    @property
    def stop(self) -> float:
        return self.start + self.duration


def _quantity(value: object, dim: str, path: str, problems: list[tuple[str, str]],
              unit: str, *, positive: bool) -> float | None:
    ok = isinstance(value, pint.Quantity) and value.check(dim)
    if ok:
        assert isinstance(value, pint.Quantity)
        mag = float(value.m_as(unit))
        if math.isfinite(mag) and (mag > 0 or (not positive and mag >= 0)):
            return mag
    what = "positive" if positive else "non-negative"
    problems.append((path, f"expected a {what} {dim}, got {value!r}"))
    return None


def read_sessions(scenario: Scenario) -> list[Session]:
    """Every session occurrence (events of type ``session``), sorted; problems name
    ``events.<i>.<field>``."""
    problems: list[tuple[str, str]] = []
    out: list[Session] = []
    t_end = float(scenario.time.stop.m_as("h"))
    t0 = float(scenario.time.start.m_as("h"))
    for i, event in enumerate(scenario.events):
        if event.type != "session":
            continue
        base = f"events.{i}"
        extra = dict(event.model_extra or {})
        for key in sorted(set(extra) - _ALLOWED):
            problems.append((f"{base}.{key}", f"a session does not take {key!r}; it takes "
                                              f"{', '.join(sorted(_ALLOWED))}"))
        duration = _quantity(extra.get("duration"), "[time]", f"{base}.duration", problems, "h",
                             positive=True)
        uf = _quantity(extra.get("ultrafiltration", pint.Quantity(0.0, "L")),
                       "[length]**3", f"{base}.ultrafiltration", problems, "L",
                       positive=False)
        sub = _quantity(extra.get("substitution", pint.Quantity(0.0, "L")),
                        "[length]**3", f"{base}.substitution", problems, "L", positive=False)
        flows = {}
        for name in ("blood_flow", "dialysate_flow", "clearance"):
            flows[name] = None if name not in extra else _quantity(
                extra[name], "[length]**3/[time]", f"{base}.{name}", problems, "mL/min",
                positive=True)
        at = float(event.at.m_as("h"))
        days = extra.get("days")
        if days is not None:
            if event.every is not None or event.count != 1:
                problems.append((f"{base}.days", "a weekly schedule takes 'days' (and "
                                                 "'weeks'), not 'every' or 'count'"))
                continue
            # a calendar: the days before time.start (or a session running across it) are
            # not part of the run
            found = weekly_starts(days, at, extra.get("weeks"), t0, t_end, base, problems)
            if found is None:
                continue
            starts = found
        else:
            if "weeks" in extra:
                problems.append((f"{base}.weeks", "'weeks' goes with 'days'"))
            starts = [float(t) / 3600.0 for t in event.times()]
        if duration is None or uf is None or sub is None or None in (
                flows[n] for n in flows if n in extra):
            continue
        for s in starts:
            if s < t0 - 1e-12:
                problems.append((f"{base}.at", f"a session at {s:g} h precedes time.start"))
                break
            if s < t_end:
                out.append(Session(i, s, duration, uf, sub, flows["blood_flow"],
                                   flows["dialysate_flow"], flows["clearance"]))
    out.sort(key=lambda s: s.start)
    for prev, nxt in itertools.pairwise(out):
        if nxt.start < prev.stop - 1e-9:
            problems.append((f"events.{nxt.index}", f"the session at {nxt.start:g} h starts "
                                                    f"before the one at {prev.start:g} h ends"))
            break
    if problems:
        raise ScenarioError(problems)
    return out
