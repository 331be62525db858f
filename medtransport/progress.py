"""Progress a person can read: a line per step of a chunked run with the time left, once the
run has taken long enough to be worth a line.

The time left is the elapsed time scaled by the work remaining, ``elapsed·(1 − f)/f`` for a
fraction ``f`` done — the chunks of a population are alike, so the rate so far is the best
guess of the rate to come.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["ChunkProgress", "format_duration"]


def format_duration(seconds: float) -> str:
    """``75`` → ``1 min 15 s``; ``4000`` → ``1 h 7 min``."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


class ChunkProgress:
    """A progress callback (fraction of chunks done) that prints, every ``every`` of the
    work and once ``quiet_for`` seconds have passed, ``  35.0 % of the chunks done, 12 s
    elapsed, about 22 s left``."""

    def __init__(self, echo: Callable[[str], None], *, every: float = 0.05,
                 quiet_for: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.echo, self.every, self.quiet_for, self.clock = echo, every, quiet_for, clock
        self.start = clock()
        self.last_step = 0
        self.shown = False

    def __call__(self, fraction: float) -> None:
        step = int(fraction / self.every + 1e-9)
        elapsed = self.clock() - self.start
        if step <= self.last_step or elapsed < self.quiet_for or fraction <= 0:
            return
        self.last_step = step
        self.shown = True
        left = elapsed * (1.0 - fraction) / fraction
        tail = "" if fraction >= 1.0 else f", about {format_duration(left)} left"
        self.echo(f"  {fraction:6.1%} of the chunks done, {format_duration(elapsed)} "
                  f"elapsed{tail}")
