"""Drug removal by dialysis and CRRT, read from the scenario's ``events``.

A dialysis session is a time-limited extra clearance CL_D on the central compartment; CRRT is
the same clearance running continuously. Over a session [t₁, t₂)::

    dA_c/dt = … − (CL + CL_D)·A_c/V,    dialysate(t) = ∫ CL_D·A_c/V dt

and the drug removed by session i is dialysate(t₂) − dialysate(t₁). The event engine carries
each session as two more segments of every subject
(:func:`medtransport_pk.engine.with_clearance`) and books ``dialysate`` apart from
``eliminated`` (renal and non-renal elimination by ``parameters.clearance``).

Per event:

=================================  ==========================================================
``type: dialysis``                 ``at``, ``duration`` (required), ``every``/``count``, or
                                   a weekly calendar: ``days: [Mon, Wed, Fri]`` with ``at``
                                   the time of day and optionally ``weeks``
                                   (:mod:`medtransport_dialysis.calendar`)
``type: crrt``                     ``at``; ``duration`` optional (without it CRRT runs to the
                                   end); no ``every``
``clearance``                      CL_D given (volume per time), or the dialyser form:
``koa``, ``free_fraction``,        the drug's own KoA, its unbound fraction f_u and the
``blood_flow``, ``dialysate_flow`` flows: CL_D = f_u·K(KoA, Q_b, Q_d)
                                   (:func:`medtransport_dialysis.drug_clearance.
                                   drug_dialysis_clearance`)
``effluent_flow``                  CRRT only, with ``free_fraction``: CL = f_u·Q_eff
=================================  ==========================================================
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import pint

from medtransport.errors import ScenarioError
from medtransport.scenario import Scenario

__all__ = ["KINDS", "Session", "read_sessions"]

KINDS = ("dialysis", "crrt")
_DIALYSER = ("koa", "blood_flow", "dialysate_flow")
_KEYS = {"dialysis": {"duration", "clearance", "free_fraction", "days", "weeks", *_DIALYSER},
         "crrt": {"duration", "clearance", "free_fraction", "effluent_flow"}}


@dataclass(frozen=True)
class Session:
    """One session: the event's index, start and stop (h; stop inf for open-ended CRRT) and
    the extra clearance (L/h)."""

    index: int
    kind: str
    start: float
    stop: float
    clearance: float


def _flow(value: Any, path: str, problems: list[tuple[str, str]]) -> pint.Quantity | None:
    if isinstance(value, pint.Quantity) and value.check("[volume]/[time]") \
            and value.magnitude > 0:
        return value
    problems.append((path, f"expected a positive volume per time, got {value!r}"))
    return None


def _fraction(value: Any, path: str, problems: list[tuple[str, str]]) -> float | None:
    if isinstance(value, pint.Quantity) and value.dimensionless:
        value = float(value.m_as(""))
    if isinstance(value, int | float) and not isinstance(value, bool) \
            and 0.0 < float(value) <= 1.0:
        return float(value)
    problems.append((path, f"expected a number in (0, 1], got {value!r}"))
    return None


def _clearance(kind: str, extra: dict[str, Any], base: str,
               problems: list[tuple[str, str]]) -> float | None:
    """CL (L/h) of one event: given, or from the dialyser (dialysis) or effluent (CRRT)."""
    from medtransport_dialysis.drug_clearance import crrt_clearance, drug_dialysis_clearance

    n0 = len(problems)
    fu = 1.0
    if "free_fraction" in extra:
        fu = _fraction(extra["free_fraction"], f"{base}.free_fraction", problems) or 1.0
    if "clearance" in extra:
        others = sorted(set(extra) & {*_DIALYSER, "effluent_flow", "free_fraction"})
        if others:
            problems.append((f"{base}.{others[0]}", "give the clearance or the form it is "
                             f"computed from, not both ({others[0]!r} with 'clearance')"))
            return None
        q = _flow(extra["clearance"], f"{base}.clearance", problems)
        return None if q is None else float(q.m_as("L/h"))
    if kind == "crrt":
        if "effluent_flow" not in extra:
            problems.append((f"{base}.clearance", "CRRT needs 'clearance' or "
                             "'effluent_flow' (with 'free_fraction')"))
            return None
        q = _flow(extra["effluent_flow"], f"{base}.effluent_flow", problems)
        if q is None or len(problems) > n0:
            return None
        return float(crrt_clearance(q, fu).m_as("L/h"))
    missing = [k for k in _DIALYSER if k not in extra]
    if missing:
        problems.append((f"{base}.clearance", "a dialysis session needs 'clearance', or the "
                         f"drug's 'koa' with 'blood_flow' and 'dialysate_flow' (missing "
                         f"{', '.join(repr(m) for m in missing)})"))
        return None
    flows = {k: _flow(extra[k], f"{base}.{k}", problems) for k in _DIALYSER}
    if len(problems) > n0:
        return None
    try:
        cl = drug_dialysis_clearance(free_fraction=fu, **flows)
    except ValueError as exc:
        problems.append((f"{base}.koa", str(exc)))
        return None
    return float(cl.m_as("L/h"))


def _calendar(event: Any, extra: dict[str, Any], duration: float, base: str,
              scenario: Scenario, problems: list[tuple[str, str]]) -> list[float] | None:
    """The start times (h) of a dialysis event's weekly calendar (``days``, ``at`` the time of
    day, ``weeks``), or None after appending problems."""
    from medtransport_dialysis.calendar import weekly_starts

    if "days" not in extra:
        problems.append((f"{base}.weeks", "'weeks' goes with 'days'"))
        return None
    if event.every is not None or event.count != 1:
        problems.append((f"{base}.days", "a weekly calendar takes 'days' (and 'weeks'), not "
                                         "'every' or 'count'"))
        return None
    t0 = float(scenario.time.start.m_as("h"))
    t_end = float(scenario.time.stop.m_as("h"))
    starts = weekly_starts(extra["days"], float(event.at.m_as("h")), extra.get("weeks"), t0,
                           t_end, base, problems)
    if starts is None:
        return None
    for a, b in itertools.pairwise(starts):
        if b - a < duration - 1e-9:
            problems.append((f"{base}.duration", f"sessions of {duration:g} h on this "
                             f"calendar would overlap (starts at {a:g} h and {b:g} h)"))
            return None
    return starts


def read_sessions(scenario: Scenario) -> list[Session]:
    """Every dialysis and CRRT occurrence, in time order; every problem names its field."""
    problems: list[tuple[str, str]] = []
    out: list[Session] = []
    t0 = float(scenario.time.start.m_as("h"))
    for i, event in enumerate(scenario.events):
        if event.type not in KINDS:
            continue
        base = f"events.{i}"
        kind = event.type
        extra = dict(event.model_extra or {})
        for key in sorted(set(extra) - _KEYS[kind]):
            problems.append((f"{base}.{key}", f"a {kind} event does not take {key!r}; it "
                             f"takes {', '.join(sorted(_KEYS[kind]))}"))
        at = float(event.at.m_as("h"))
        weekly = "days" in extra
        if at < t0 - 1e-12 and not weekly:
            problems.append((f"{base}.at", f"the {kind} at {event.at:~P} precedes time.start"))
        dur = extra.get("duration")
        duration = math.inf
        if dur is not None or kind == "dialysis":
            if isinstance(dur, pint.Quantity) and dur.check("[time]") and dur.magnitude > 0:
                duration = float(dur.m_as("h"))
            else:
                problems.append((f"{base}.duration", f"expected a positive [time], got "
                                 f"{dur!r}"))
                continue
        if kind == "crrt" and (event.every is not None or event.count != 1):
            problems.append((f"{base}.every", "CRRT is continuous: give 'at' and optionally "
                             "'duration', no every/count"))
            continue
        if event.every is not None and duration > float(event.every.m_as("h")):
            problems.append((f"{base}.duration", f"a session of {dur:~P} is longer than the "
                             f"interval {event.every:~P}: sessions would overlap"))
            continue
        if weekly or "weeks" in extra:
            starts = _calendar(event, extra, duration, base, scenario, problems)
            if starts is None:
                continue
        else:
            starts = [float(t) for t in event.times() / 3600.0]
        cl = _clearance(kind, {k: v for k, v in extra.items()
                               if k not in ("duration", "days", "weeks")}, base, problems)
        if cl is None:
            continue
        for t in starts:
            out.append(Session(i, kind, t, t + duration, cl))
    if problems:
        raise ScenarioError(problems)
    out.sort(key=lambda s: (s.start, s.index))
    return out
