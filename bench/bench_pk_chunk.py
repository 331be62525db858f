#!/usr/bin/env python
"""The PK plugin's part of an audited population chunk, in CPU time (issue 22, plugin side).

    python bench/bench_pk_chunk.py            # chunks of 2100 patients, 9 repeats per row
    python bench/bench_pk_chunk.py --quick    # 700 patients, 3 repeats

The problem: one chunk of ``examples/scenarios/vancomycin_population_virtual_trial.yaml``
(bench_population's scenario: 2-compartment vancomycin, 1 g over 1 h q12h, 1441 output times
at 1-min resolution, covariates and IIV), the patients ``[n, 2n)`` after a warm-up chunk.
Rows, each the minimum and median thread CPU time over the repeats (a fresh chunk each time,
so the output buffers are fresh pages as in a run):

1. the event loop: ``engine._run_linear`` (eigen-systems of every patient, then the compiled
   loop writing amounts, concentrations and the cumulative books at every output time);
2. the same loop with ``engine.FAST_RUNS`` off: every grid output through the generic event
   step (the loop before its tight runs of outputs between two events); the two must give
   the same bits, checked here on every array of the chunk;
3. the model's ``simulate`` (the engine and the Dataset it returns);
4. the audited ``run()`` of the chunk (simulate, the core's audits, the ledger attached), for
   scale: the plugin's part is rows 3 of 4.

Prints the machine header (bench/machine.py, measured after the rows) and a markdown table
(CPU ms per chunk; ns per patient-output for the loop), and writes them to
pk-chunk-latest.md in ``--out`` (default bench/results/local/), the raw numbers to
pk-chunk-latest.json, each atomically; ``--quick`` writes pk-chunk-latest-quick.*. The
machine is shared: the header says how busy it was.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import machine
import numpy as np

BENCH = Path(__file__).resolve().parent


def chunk_model(n: int, i: int) -> Any:
    from bench_population import scenario

    from medtransport.runner import prepare

    return prepare(scenario(10**6), patients=(i * n, (i + 1) * n))


def loop_times(n: int, repeats: int, fast: bool) -> tuple[list[float], list[Any]]:
    """CPU seconds of engine._run_linear per chunk, and the engine results."""
    from medtransport_pk import engine

    times: list[float] = []
    results: list[Any] = []
    original = engine._run_linear

    def timed(*args: Any, **kw: Any) -> None:
        t0 = time.thread_time()
        original(*args, **kw)
        times.append(time.thread_time() - t0)

    engine._run_linear = timed
    saved = engine.FAST_RUNS
    engine.FAST_RUNS = fast
    try:
        for i in range(repeats + 1):
            traj = chunk_model(n, i).simulate()
            results.append(traj.notes["engine"] if i == 1 else None)
    finally:
        engine._run_linear = original
        engine.FAST_RUNS = saved
    return times[1:], results[1:2]


def cpu_of(call: Any, n: int, repeats: int) -> list[float]:
    out = []
    for i in range(repeats + 1):
        model = chunk_model(n, i)
        t0 = time.thread_time()
        call(model)
        out.append(time.thread_time() - t0)
    return out[1:]


def same_bits(a: Any, b: Any) -> bool:
    fields = ("grid_amounts", "grid_concentrations", "grid_ledger", "grid_nonzero",
              "record_amounts", "record_ledger")
    return all(np.array_equal(np.ascontiguousarray(getattr(a, f)).view(np.uint8),
                              np.ascontiguousarray(getattr(b, f)).view(np.uint8))
               for f in fields)


def row(name: str, times: list[float], outputs: int | None) -> dict[str, Any]:
    return {"row": name, "cpu_ms_min": 1e3 * min(times),
            "cpu_ms_median": 1e3 * statistics.median(times),
            "ns_per_patient_output": None if outputs is None else 1e9 * min(times) / outputs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="700 patients, 3 repeats")
    ap.add_argument("--patients", type=int, default=None, help="patients per chunk")
    ap.add_argument("--repeats", type=int, default=None)
    machine.add_out_argument(ap)
    args = ap.parse_args()
    n = args.patients or (700 if args.quick else 2100)
    repeats = args.repeats or (3 if args.quick else 9)
    from medtransport.runner import run

    fast, (fast_res,) = loop_times(n, repeats, True)
    generic, (generic_res,) = loop_times(n, repeats, False)
    bits = same_bits(fast_res, generic_res)
    outputs = fast_res.grid_amounts.shape[0] * fast_res.grid_amounts.shape[1]
    rows = [row("event loop (eigen-systems + compiled loop)", fast, outputs),
            row("event loop, tight runs off (generic step per output)", generic, outputs),
            row("model.simulate (engine + Dataset)", cpu_of(lambda m: m.simulate(), n,
                                                            repeats), None),
            row("audited run() of the chunk", cpu_of(run, n, repeats), None)]
    lines = [f"PK plugin's part of an audited chunk: {n} patients x "
             f"{fast_res.grid_amounts.shape[1]} output times, {repeats} repeats; tight runs "
             f"and generic steps give the same bits: {'yes' if bits else 'NO'}.", "",
             "| row | CPU ms per chunk (min) | median | ns per patient-output |",
             "|---|---:|---:|---:|"]
    for r in rows:
        ns = "" if r["ns_per_patient_output"] is None else f"{r['ns_per_patient_output']:.1f}"
        lines.append(f"| {r['row']} | {r['cpu_ms_min']:.1f} | {r['cpu_ms_median']:.1f} | "
                     f"{ns} |")
    lines.append("")
    ratio = rows[0]["cpu_ms_min"] / rows[1]["cpu_ms_min"]
    lines.append(f"The loop with tight runs costs {ratio:.2f} of the loop with the generic step "
                 f"per output (minima).")
    text = "\n".join(lines)
    # the header last: its bandwidth probe starts numba's thread pool, whose spinning
    # workers disturbed the rows timed right after it
    info = machine.announce(quick=args.quick)
    print(text)
    out = machine.output_dir(args.out)
    stem = "pk-chunk-latest" + ("-quick" if args.quick else "")
    from bench_diffusion import write_atomic

    write_atomic(out / f"{stem}.md", machine.header(info) + "\n\n" + text + "\n")
    write_atomic(out / f"{stem}.json", json.dumps({"machine": info, "patients": n,
                                                   "repeats": repeats, "same_bits": bits,
                                                   "rows": rows}, indent=2) + "\n")
    if not bits:
        sys.exit("the tight runs and the generic steps gave different bits")


if __name__ == "__main__":
    main()
