#!/usr/bin/env python
"""Threaded kernels on a busy machine: each workload idle and with a busy core, side by side.

    .venv/bin/python bench/bench_threads.py --out bench/results   # ~20 s on a quiet machine
    .venv/bin/python bench/bench_threads.py --quick               # smoke run: 200 patients, 64³

"Loaded" = one process this script starts that spins on a core (``while True: pass``) for the
duration of the loaded repeats, then is killed; on a 2-core machine it leaves one core free.
Each workload runs alternately idle and loaded (interleaved repeats, median reported), with:

- ``auto``: the thread count :mod:`medtransport.numerics.threads` chooses (the cores other
  processes leave free: 2 idle, 1 loaded on 2 cores);
- ``2 threads``: ``--threads 2`` forced — what every run did before the back-off.

Workloads: the saturable (Michaelis–Menten) one-compartment PK population of bench_pk
(1,000 patients, 24 h every 10 min, ``medtransport.run``: one stacked Radau solve; its BLAS
pools are what threads); the linear 2-compartment PK population (``amounts``, 1,000 patients ×
1,441 times: numba's threaded propagation loop); FTCS diffusion on 128³ (40 steps,
``solve(method="ftcs")``: the threaded stencil). Goal (issue 23): saturable PK, 1,000 patients,
loaded within 1.5× of idle.

Prints a markdown table; ``--out DIR`` also writes ``threads-latest.{md,json}`` there
(``threads-latest-quick`` for ``--quick``) — nothing is written unless asked.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("NUMBA_NUM_THREADS", "2")

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
try:
    import medtransport  # noqa: F401
except ImportError:
    sys.path.insert(0, str(BENCH.parent))

import machine  # noqa: E402
from bench_diffusion import write_atomic  # noqa: E402


def now() -> float:
    return time.perf_counter()


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ workloads


def saturable(n: int) -> Callable[[], float]:
    import medtransport as mt

    sc = {"name": "saturable", "model": "pk.one_compartment",
          "parameters": {"clearance": "0 L/h", "central_volume": "40 L",
                         "michaelis_menten": {"vmax": "30 mg/h", "km": "5 mg/L"}},
          "events": [{"type": "bolus", "amount": "800 mg"}],
          "time": {"stop": "24 h", "step": "10 min"},
          "population": {"size": n, "variability": {"central_volume": 0.2, "vmax": 0.3,
                                                    "km": 0.2}},
          "seed": 20231123}
    mt.run({**sc, "population": {**sc["population"], "size": 2}})  # warm-up

    def go() -> float:
        ds = mt.run(sc)
        return float(ds["concentration"].values.sum())

    return go


def linear_pk(n: int) -> Callable[[], float]:
    from medtransport.numerics.compartments import Addition, amounts

    rng = np.random.default_rng(1)
    cl, v1, q, v2 = (m * np.exp(w * rng.standard_normal(n))
                     for m, w in ((4.6, 0.3), (30.0, 0.2), (6.9, 0.2), (40.0, 0.2)))
    k = np.zeros((n, 3, 3))
    k[:, 0, 0] = -(cl + q) / v1
    k[:, 1, 0] = q / v1
    k[:, 0, 1] = q / v2
    k[:, 1, 1] = -q / v2
    k[:, 2, 0] = cl / v1
    t = np.arange(1441) / 60.0
    add = [Addition(0.0, [1000.0, 0.0, 0.0])]
    amounts(k, t, additions=add)  # warm-up (compile / cache load)

    def go() -> float:
        return float(amounts(k, t, additions=add)[:, -1, 0].sum())

    return go


def ftcs(n: int, steps: int) -> Callable[[], float]:
    from medtransport.domain import Grid
    from medtransport.numerics.finite_volume import DiffusionProblem, ftcs_stability, solve

    grid = Grid("cartesian", (0.0,) * 3, (1.0,) * 3, (n, n, n))
    problem = DiffusionProblem(grid, 1.0)
    u0 = np.random.default_rng(2).uniform(0, 1, grid.cells)
    dt = 0.9 * ftcs_stability(problem, 1.0).max_stable_dt
    solve(problem, u0, dt, 2, output_every=2, method="ftcs")  # warm-up

    def go() -> float:
        return float(solve(problem, u0, dt, steps, output_every=steps,
                           method="ftcs").states[-1].sum())

    return go


# --------------------------------------------------------------------------------- the load


class BusyCore:
    """A child process spinning on one core while the block runs."""

    def __enter__(self) -> BusyCore:
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.3)  # let it be scheduled and show in the run queue
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.kill()
        self.proc.wait()


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


# ---------------------------------------------------------------------------------- the run


def measure(name: str, work: Callable[[], float], repeats: int, forced_repeats: int
            ) -> list[dict[str, Any]]:
    from medtransport.numerics import threads

    rows: dict[tuple[str, str], dict[str, Any]] = {}

    def one(mode: str, loaded: bool) -> None:
        key = (mode, "loaded" if loaded else "idle")
        row = rows.setdefault(key, {"workload": name, "mode": mode, "condition": key[1],
                                    "times_s": [], "threads": [], "check": []})
        request = 2 if mode == "2 threads" else None
        threads._cache = None  # decide afresh for each run, as a new process would
        with threads.requested_for(request):
            if loaded:
                with BusyCore():
                    chosen = threads.choose()
                    t = now()
                    row["check"].append(work())
                    row["times_s"].append(now() - t)
            else:
                chosen = threads.choose()
                t = now()
                row["check"].append(work())
                row["times_s"].append(now() - t)
        row["threads"].append(chosen)

    for rep in range(repeats):
        for loaded in (False, True):
            one("auto", loaded)
            if rep < forced_repeats:
                one("2 threads", loaded)
        log(f"  {name}: repeat {rep + 1}/{repeats} (load average {loadavg()})")
    out = []
    for row in rows.values():
        row["median_s"] = statistics.median(row["times_s"])
        # the same result whatever the thread count (the kernels are bitwise independent)
        row["same_result"] = len(set(row["check"])) == 1
        out.append(row)
    checks = {c for r in out for c in r["check"]}
    for row in out:
        row["same_result_all_modes"] = len(checks) == 1
    idle = {r["mode"]: r["median_s"] for r in out if r["condition"] == "idle"}
    for row in out:
        row["over_idle_auto"] = row["median_s"] / idle["auto"]
    return out


def render(res: dict[str, Any]) -> str:
    lines = [f"# Threaded kernels idle and with a busy core — {'quick' if res['quick'] else 'full'}"
             " run", "",
             f"{res['date']}, {res['cpu']}, {res['cores']} cores, NUMBA_NUM_THREADS="
             f"{res['numba_threads']}; load average {res['load_start']} at the start, "
             f"{res['load_end']} at the end (other processes than this bench's busy core).",
             f"Total wall time: {res['total_s']:.0f} s.", "",
             "Loaded = one busy-loop process started by the bench (one core of two taken). "
             "Median of the repeats; ÷ idle auto = this row's median over the same workload's "
             "idle `auto` median.", "",
             "| workload | threads | condition | threads used | median s | repeats | "
             "÷ idle auto | same result in every row |",
             "|---|---|---|---:|---:|---:|---:|---|"]
    for r in res["rows"]:
        used = "/".join(str(x) for x in sorted(set(r["threads"])))
        lines.append(f"| {r['workload']} | {r['mode']} | {r['condition']} | {used} | "
                     f"{r['median_s']:.3g} | {len(r['times_s'])} | {r['over_idle_auto']:.2f}× | "
                     f"{'yes' if r['same_result_all_modes'] else '**no**'} |")
    lines += ["", "| goal | measured | met |", "|---|---|---|"]
    for g in res["goals"]:
        lines.append(f"| {g['goal']} | {g['measured']} | {g['met']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="200 patients, 64³, 2 repeats")
    ap.add_argument("--out", type=Path, default=None,
                    help="directory to write threads-latest.{md,json} to (default: none)")
    args = ap.parse_args(argv)
    t0 = now()
    import numba

    res: dict[str, Any] = {"quick": args.quick, "date": time.strftime("%Y-%m-%d %H:%M %Z"),
                           "cpu": machine.cpu_model(), "cores": os.cpu_count(),
                           "numba_threads": numba.config.NUMBA_NUM_THREADS,
                           "load_start": loadavg()}
    patients = 200 if args.quick else 1000
    repeats = 2 if args.quick else 5
    cases = [(f"saturable PK, {patients:,} patients (`run`)", saturable(patients), repeats, 1),
             (f"linear PK, {patients:,} patients (`amounts`)", linear_pk(patients), repeats,
              repeats),
             ("FTCS 64³ × 40 steps" if args.quick else "FTCS 128³ × 40 steps",
              ftcs(64 if args.quick else 128, 40), repeats, repeats)]
    rows = []
    for name, work, reps, forced in cases:
        log(f"{name} …")
        rows += measure(name, work, reps, forced)
    res["rows"] = rows
    res["load_end"] = loadavg()
    sat = next(r for r in rows if r["workload"].startswith("saturable") and r["mode"] == "auto"
               and r["condition"] == "loaded")
    res["goals"] = [{"goal": f"saturable PK {patients:,} patients: loaded within 1.5× of idle",
                     "measured": f"{sat['over_idle_auto']:.2f}×",
                     "met": "yes" if sat["over_idle_auto"] <= 1.5 else "**no**"}]
    res["total_s"] = now() - t0
    text = render(res)
    print(text)
    if args.out is not None:
        stem = "threads-latest-quick" if args.quick else "threads-latest"
        write_atomic(args.out / f"{stem}.md", text + "\n")
        write_atomic(args.out / f"{stem}.json", json.dumps(res, indent=1, default=str) + "\n")
        log(f"written {args.out / stem}.md and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
