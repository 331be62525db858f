#!/usr/bin/env python
"""CPU time of one audited population chunk, as ``run_population`` computes it, and of its
parts: the scenario read from its JSON, ``prepare`` (model, sampling), ``run`` (simulate and
audit every patient at every solve time), and what the chunk keeps (per-patient metrics, the
chunk's books over time, the counts of the streamed bands).

    python bench/bench_chunk.py              # 2100 patients, 7 chunks, per part
    python bench/bench_chunk.py --quick      # 3 chunks
    python bench/bench_chunk.py --profile    # and a cProfile of 3 more chunks

The problem: ``examples/scenarios/vancomycin_population_virtual_trial.yaml`` with
``population.output: {curves: none}`` (metrics + streamed bands), chunks of ``--n`` patients
(default 2100, the default chunk size for its 1441 output times). Each chunk is a different
block of patients; the first is a warm-up (imports, numba's cache). Thread CPU time, so
other processes on the machine stretch it less than wall time, but not to nothing: say
"under load" when they run. Parts are timed by wrapping the functions named in the output
(their CPU time, callees included); "run_audited" includes the audits.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

#: (module, function) pairs timed as parts of a chunk
PARTS = (("medtransport.batch", "_chunk_scenario"), ("medtransport.runner", "prepare"),
         ("medtransport.runner", "run_audited"), ("medtransport.runner", "attach_covariates"),
         ("medtransport.batch", "_stored_part"), ("medtransport.summaries", "curve_metrics"),
         ("medtransport.batch", "chunk_ledger"), ("medtransport.bands", "count_keys"))


def timed_parts() -> dict[str, float]:
    """Wrap each part so that its thread CPU time adds up in the returned dict."""
    import importlib

    spent: dict[str, float] = collections.defaultdict(float)

    def wrap(name: str, f: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kw: Any) -> Any:
            c = time.thread_time()
            try:
                return f(*args, **kw)
            finally:
                spent[name] += time.thread_time() - c
        return timed

    for module, name in PARTS:
        mod = importlib.import_module(module)
        if hasattr(mod, name):
            setattr(mod, name, wrap(name, getattr(mod, name)))
    return spent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2100, help="patients per chunk")
    ap.add_argument("--repeats", type=int, default=7, help="chunks timed (after a warm-up)")
    ap.add_argument("--quick", action="store_true", help="3 chunks")
    ap.add_argument("--profile", action="store_true", help="cProfile 3 more chunks")
    a = ap.parse_args()
    repeats = 3 if a.quick else a.repeats
    spent = timed_parts()

    from bench_population import scenario

    import medtransport.batch as batch

    sc = scenario(10**6)
    sc = sc.with_changes(population={**batch.json_section(sc.population),
                                     "output": {"curves": "none"}})
    text = sc.to_json()
    keep = batch._keep(sc)

    def chunk(i: int) -> float:
        task = batch.ChunkTask(text, i, i * a.n, (i + 1) * a.n, "unused", None, None, keep)
        c = time.thread_time()
        record, _ = batch.compute_chunk(task)
        if record["status"] != "passed":
            raise SystemExit(f"chunk {i} failed: {record['reason']}")
        return time.thread_time() - c

    chunk(0)
    cpu, parts = [], collections.defaultdict(list)
    for i in range(1, repeats + 1):
        spent.clear()
        cpu.append(chunk(i))
        for name, total in spent.items():
            parts[name].append(total)
    print(f"chunk of {a.n} patients, {repeats} chunks: min {min(cpu) * 1e3:.1f} ms CPU, "
          f"median {statistics.median(cpu) * 1e3:.1f} ms "
          f"({min(cpu) / a.n * 1e3:.4f}–{statistics.median(cpu) / a.n * 1e3:.4f} ms/patient)")
    for name, times in parts.items():
        print(f"  {name:18s} median {statistics.median(times) * 1e3:7.2f} ms, "
              f"min {min(times) * 1e3:7.2f} ms per chunk")
    if a.profile:
        pr = cProfile.Profile()
        pr.enable()
        for i in range(repeats + 1, repeats + 4):
            chunk(i)
        pr.disable()
        pstats.Stats(pr).sort_stats("cumtime").print_stats(45)


if __name__ == "__main__":
    main()
