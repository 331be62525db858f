"""The weekly calendar against Python's own calendar: a Monday 00:00 as time 0, every
listed week day at the time of day, for the weeks asked."""

from __future__ import annotations

import datetime as dt

import pytest

from medtransport_dialysis.calendar import weekly_starts

MONDAY = dt.datetime(2024, 1, 1)  # a Monday


def _by_datetime(days: list[str], at_h: float, weeks: int, t0: float) -> list[float]:
    wanted = {d[:3].lower() for d in days}
    out = []
    for n in range(7 * weeks):
        day = MONDAY + dt.timedelta(days=n)
        if day.strftime("%a").lower() in wanted:
            t = (day - MONDAY).total_seconds() / 3600 + at_h
            if t >= t0:
                out.append(t)
    return out


@pytest.mark.parametrize(("days", "at", "weeks", "t0"), [
    (["Mon", "Wed", "Fri"], 8.0, 4, 0.0),
    (["Tuesday", "Thursday", "Saturday"], 13.5, 2, 0.0),
    (["sun", "Mon"], 22.0, 3, 50.0),
    (["Fri", "Mon", "Wed", "Mon"], 7.0, 1, 0.0),   # unordered, repeated
    (["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"], 0.0, 2, 24.0),
])
def test_expansion_matches_the_datetime_calendar(days: list[str], at: float, weeks: int,
                                                 t0: float) -> None:
    problems: list[tuple[str, str]] = []
    got = weekly_starts(days, at, weeks, t0, 10_000.0, "events.0", problems)
    assert problems == []
    assert got == pytest.approx(_by_datetime(days, at, weeks, t0))


def test_weeks_default_to_the_span_of_the_run() -> None:
    problems: list[tuple[str, str]] = []
    assert weekly_starts(["Mon"], 8.0, None, 0.0, 400.0, "e", problems) == [8.0, 176.0, 344.0]


@pytest.mark.parametrize(("days", "at", "weeks", "field"), [
    (["Mon", "Funday"], 8.0, 1, "e.days"),
    ("Mon", 8.0, 1, "e.days"),
    ([], 8.0, 1, "e.days"),
    (["Mon"], 24.0, 1, "e.at"),
    (["Mon"], 8.0, 0, "e.weeks"),
    (["Mon"], 8.0, 2.5, "e.weeks"),
    (["Mon"], 8.0, True, "e.weeks"),
])
def test_bad_calendars_name_the_field(days: object, at: float, weeks: object,
                                      field: str) -> None:
    problems: list[tuple[str, str]] = []
    assert weekly_starts(days, at, weeks, 0.0, 168.0, "e", problems) is None
    assert problems[0][0] == field
