"""A weekly dialysis calendar: week days and a time of day, expanded to session start times.

An event line such as ``{days: [Mon, Wed, Fri], at: 8 h, weeks: 4}`` means a session at
t = 168 h·w + 24 h·d + at for every week w < weeks and every listed day d (Mon = 0 … Sun = 6),
time 0 of the scenario being Monday 00:00. ``at`` is the time of day (< 24 h); ``weeks``
defaults to as many weeks as the run spans; days before ``time.start`` are skipped (the
calendar does not move with the start). Used by the urea sessions
(:mod:`medtransport_dialysis.sessions`) and by the PK models' dialysis events
(:mod:`medtransport_pk.extracorporeal`), so both read a calendar the same way.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["DAYS", "weekly_starts"]

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_MAX_WEEKS = 520


def weekly_starts(days: Any, at_h: float, weeks: Any, t0_h: float, t_end_h: float, base: str,
                  problems: list[tuple[str, str]]) -> list[float] | None:
    """The start times (h, sorted, ≥ ``t0_h``) of a weekly calendar, or None after appending
    (``base``.field, message) problems. ``weeks`` None means the weeks the run spans."""
    if not isinstance(days, list) or not days or not all(
            isinstance(d, str) and len(d) >= 3 and d[:3].lower() in DAYS for d in days):
        problems.append((f"{base}.days", f"expected a list of week days such as "
                                         f"[Mon, Wed, Fri], got {days!r}"))
        return None
    if not 0.0 <= at_h < 24.0:
        problems.append((f"{base}.at", "with 'days', 'at' is the time of day (0 h to < 24 h)"))
        return None
    if weeks is None:
        weeks = max(1, math.ceil(t_end_h / 168.0))
    if not isinstance(weeks, int) or isinstance(weeks, bool) or not 1 <= weeks <= _MAX_WEEKS:
        problems.append((f"{base}.weeks", f"expected a whole number of weeks from 1 to "
                                          f"{_MAX_WEEKS}, got {weeks!r}"))
        return None
    offsets = sorted({DAYS.index(d[:3].lower()) for d in days})
    return [x for x in (168.0 * w + 24.0 * d + at_h for w in range(weeks) for d in offsets)
            if x >= t0_h - 1e-12]
