"""NONMEM's clock times and dates in a data set, as elapsed hours per individual.

NM-TRAN reads a TIME item written as a clock time ``hh:mm`` (24-hour clock; ``hh:mm:ss`` is
taken too) and, when the record has a date data item, the date in one of NONMEM's four forms
(NONMEM Users Guide IV, "$INPUT", date data items):

=======  ==========================================================
``DATE`` month/day/year  (``03/30/2024``, ``3-30-24``)
``DAT1`` day/month/year  (``30/03/2024``)
``DAT2`` year/month/day  (``2024/03/30``)
``DAT3`` year/day/month  (``2024/30/03``)
=======  ==========================================================

``/`` or ``-`` separate the fields; a two-digit year yy is 20yy when yy ≤ 50, else 19yy
(NM-TRAN's default LAST20 = 50); the year may be left out (``03/30``: the same year for every
record of the individual). A date may also be a plain number of days. Each record's time
becomes the hours elapsed since the individual's first record:

    TIME_j = 24·(day_j − day_0) + (clock_j − clock_0)   [h]

with ``day`` the calendar day number (leap years counted) and ``clock`` in hours. A clock time
or a date that does not exist (``25:10``, ``08:61``, ``02/30/2024``, a month 13) is refused
naming its data row; without a date, a clock that goes back (past midnight) reads as time going
backwards and is refused by the reader's ordering rule: give a date.
"""

from __future__ import annotations

import datetime as dt
import re

import numpy as np

__all__ = ["DATE_ITEMS", "elapsed_hours"]

#: the date data items and the order of their fields
DATE_ITEMS = {"DATE": ("month", "day", "year"), "DAT1": ("day", "month", "year"),
              "DAT2": ("year", "month", "day"), "DAT3": ("year", "day", "month")}
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}(?:\.\d*)?))?$")
_FIELD = re.compile(r"^\d{1,4}$")


def _clock(text: str) -> float | None:
    """Hours since midnight of ``hh:mm[:ss]``, or a plain number of hours; None if neither."""
    m = _CLOCK.match(text)
    if m is None:
        try:
            value = float(text)
        except ValueError:
            return None
        return value if np.isfinite(value) else None
    hours, minutes = int(m.group(1)), int(m.group(2))
    seconds = float(m.group(3) or 0.0)
    if hours > 24 or minutes > 59 or seconds >= 60 or (hours == 24 and (minutes or seconds)):
        return None
    return hours + minutes / 60.0 + seconds / 3600.0


def _day(text: str, item: str, year_of_individual: int | None) -> tuple[int | None, int | None]:
    """(day number, year) of a date in the form of ``item``; (None, None) if malformed."""
    try:
        return int(text), None  # a plain number of days
    except ValueError:
        pass
    parts = re.split(r"[/-]", text)
    order = DATE_ITEMS[item]
    if len(parts) == 2:  # the year left out
        order = tuple(f for f in order if f != "year")
    if len(parts) != len(order) or not all(_FIELD.match(p) for p in parts):
        return None, None
    fields = dict(zip(order, (int(p) for p in parts), strict=True))
    year = fields.get("year", year_of_individual if year_of_individual is not None else 2000)
    if "year" in fields and len(parts[order.index("year")]) <= 2:
        year = 2000 + year if year <= 50 else 1900 + year
    try:
        return dt.date(year, fields["month"], fields["day"]).toordinal(), year
    except ValueError:
        return None, None


def elapsed_hours(time_text: np.ndarray, date_text: np.ndarray | None, item: str | None,
                  individual: np.ndarray) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Hours since each individual's first record (see the module doc), and the problems as
    (record index, message). Missing fields (``.``) are reported as problems."""
    n = time_text.size
    out = np.full(n, np.nan)
    problems: list[tuple[int, str]] = []
    clock = np.full(n, np.nan)
    day = np.zeros(n)
    for i in range(n):
        text = str(time_text[i]).strip()
        c = _clock(text)
        if c is None:
            problems.append((i, f"TIME {text!r} is not a clock time hh:mm (00:00–24:00) or a "
                                "number of hours"))
        else:
            clock[i] = c
    if date_text is not None and item is not None:
        years: dict[int, int] = {}
        for i in range(n):
            text = str(date_text[i]).strip()
            d, year = _day(text, item, years.get(int(individual[i])))
            if d is None:
                fields = "/".join(DATE_ITEMS[item])
                problems.append((i, f"{item} {text!r} is not a date {fields} (or a number of "
                                    "days)"))
                continue
            if year is not None:
                years.setdefault(int(individual[i]), year)
            day[i] = d
    first = np.ones(n, bool)
    first[1:] = individual[1:] != individual[:-1]
    start = np.maximum.accumulate(np.where(first, np.arange(n), 0))
    out = 24.0 * (day - day[start]) + (clock - clock[start])
    return out, problems
