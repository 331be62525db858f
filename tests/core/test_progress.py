"""Progress that moves: the Brownian walkers report as they go, a chunked run prints the
time left, and the steps after the last chunk are announced."""

from __future__ import annotations

import numpy as np

from medtransport.numerics.random_walk import brownian_walk
from medtransport.progress import ChunkProgress, format_duration


def test_the_brownian_walk_reports_its_fraction_as_it_goes() -> None:
    seen: list[float] = []
    positions = np.zeros((200, 1))
    brownian_walk(positions, 1e-9, 1e-3, [0, 500, 1000], seed=1, progress=seen.append)
    assert len(seen) >= 100  # about 200 reports, not one at the end
    assert seen == sorted(seen) and seen[0] == 0.0 and max(seen) < 1.0


def test_chunk_progress_prints_the_time_left_from_the_rate_so_far() -> None:
    lines: list[str] = []
    now = [0.0]
    progress = ChunkProgress(lines.append, quiet_for=2.0, clock=lambda: now[0])
    now[0] = 1.0
    progress(0.05)  # too early to be worth a line
    assert lines == []
    now[0] = 10.0
    progress(0.25)  # 10 s for a quarter: 30 s left
    assert lines == ["   25.0% of the chunks done, 10 s elapsed, about 30 s left"]
    progress(0.26)  # within the same 5 % step: silent
    now[0] = 40.0
    progress(1.0)
    assert lines[-1] == "  100.0% of the chunks done, 40 s elapsed"
    assert progress.shown


def test_durations_read_as_a_person_says_them() -> None:
    assert format_duration(75) == "1 min 15 s"
    assert format_duration(4000) == "1 h 6 min"
    assert format_duration(3.4) == "3 s"
