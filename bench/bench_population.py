#!/usr/bin/env python
"""Benchmark population runs at scale: sample, simulate, audit, write Zarr, summarise.

    python bench/bench_population.py --out bench/results  # metrics N = 1e5, 1e6; full 1e6
    python bench/bench_population.py --quick            # metrics N = 2e3, 1e4; full 1e4
    python bench/bench_population.py --sizes 10000,100000 --full-sizes 0 --no-cluster
    python bench/bench_population.py --sizes 1e6 --full-sizes 0 --cluster-chunk 700 \
        --threads 2   # issue 22's goal rows only

The problem: ``examples/scenarios/vancomycin_population_virtual_trial.yaml`` — a
2-compartment vancomycin model, 1 g over 1 h every 12 h, 24 h at 1-min resolution (1441
output times), covariates (weight, age, sex, serum creatinine → Cockcroft–Gault) driving
allometric and renal scaling, correlated log-normal variability on CL, V1, V2.

Rows, each in a fresh child process whose whole process tree (the client, and for a cluster
the scheduler, nannies and workers) is sampled with psutil every 0.1 s for its peak resident
memory (the sum over the tree; shared library pages are counted once per process, so this
overstates the truth a little):

1. **single chunk, in memory** — ``run()`` of one chunk of patients (the default chunk size)
   without any store: the batched rate the end-to-end runs are held to (median of 3, after a
   warm-up run).
2. **end-to-end, one process, metrics + bands** — ``run_population(…, store=…)`` with
   ``population.output: {curves: none}``: sample, simulate, audit every patient at every
   solve time, keep the per-patient metrics (parameters, covariates, NCA, max |ledger
   residual|) and count the percentile bands of the central concentration while the chunks
   run (:mod:`medtransport.bands`); then the bands (5, 25, 50, 75, 95 %) from those counts,
   NCA distributions and PTA of AUC24/MIC ≥ 400 for six MICs.
3. **end-to-end, 2-worker LocalCluster** (processes, one thread each, loopback) — the same,
   with ``client=`` the cluster (its start-up is timed separately and not counted).
3b. **end-to-end, one process, every curve** (today's full store: float32 states, LZ4; the
   exact bands read back from it) — ``--full-sizes``.
4. **per-patient ``solve_ivp`` loop** (LSODA, rtol 1e-8, atol 1e-8 mg; one call per patient
   and infusion segment with the minute grid as ``t_eval``) — what a per-subject ODE tool
   such as mrgsolve does; timed at N = 1000 (``--loop-n``) and extrapolated linearly. No
   audit, no file: it flatters the loop.

Writes a markdown table to stdout and population-latest.md into ``--out`` (default
bench/results/local/; header from bench/machine.py), raw numbers to
population-latest.json (``--quick``: population-latest-quick.*), each atomically. The
machine is shared with other processes: the CPU they used during each row is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import machine
from bench_diffusion import write_atomic

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
SCENARIO = REPO / "examples" / "scenarios" / "vancomycin_population_virtual_trial.yaml"
MICS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def now() -> float:
    return time.perf_counter()


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------- child processes

def scenario(n: int) -> Any:
    """The example scenario with ``n`` patients."""
    from medtransport.batch import json_section
    from medtransport.scenario import load_scenario

    sc = load_scenario(str(SCENARIO))
    return sc.with_changes(population={**json_section(sc.population), "size": n})


def child_chunk(args: argparse.Namespace) -> dict[str, Any]:
    from medtransport.batch import default_chunk_size
    from medtransport.runner import prepare, run

    sc = scenario(10**6)
    probe = prepare(sc, patients=(0, 1))
    chunk = args.chunk or default_chunk_size(probe, 10**6)
    times, cpus = [], []
    for rep in range(4):  # the first is a warm-up (imports, numba's cache)
        t, c = now(), time.thread_time()
        ds = run(prepare(sc, patients=(rep * chunk, (rep + 1) * chunk)))
        times.append(now() - t)
        cpus.append(time.thread_time() - c)
        del ds
    med = statistics.median(times[1:])
    cpu = statistics.median(cpus[1:])
    return {"chunk": chunk, "seconds": times, "cpu_seconds": cpus, "median_s": med,
            "patients_per_s": chunk / med, "cpu_s_per_patient": cpu / chunk}


def child_e2e(args: argparse.Namespace) -> dict[str, Any]:
    import dask

    from medtransport.batch import run_population

    client, cluster, startup = None, None, 0.0
    if args.cluster:
        from distributed import Client, LocalCluster

        t = now()
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=None)
        client = Client(cluster)
        client.wait_for_workers(2)
        startup = now() - t
    from medtransport.batch import json_section
    from medtransport.scenario import load_scenario

    sc = load_scenario(str(SCENARIO))
    # "metrics": per-patient metrics and streamed bands only; "all": every curve (and the
    # exact bands read back from the store, today's path)
    output = {"curves": "none"} if args.output == "metrics" else {"bands": False}
    sc = sc.with_changes(population={**json_section(sc.population), "size": args.n,
                                     "output": output})
    t0, c0 = now(), time.process_time()
    threads = 1 if client is not None else args.threads
    result = run_population(sc, client=client, store=args.store,
                            chunk_size=args.chunk, dtype="float32", overwrite=True,
                            threads=threads)
    t1 = now()
    bands = result.bands(source="stream" if args.output == "metrics" else "store")
    nca = result.nca()
    pta = result.pta(list(MICS))
    bands, nca, pta = dask.compute(bands, nca, pta)
    t2, c2 = now(), time.process_time()
    if client is not None:
        client.close()
        cluster.close()
    records = list(result.records.values())
    per_chunk = sorted(r["seconds"] for r in records)
    store_bytes = sum(f.stat().st_size for f in Path(args.store).rglob("*") if f.is_file())
    return {
        "n": args.n, "cluster": bool(args.cluster), "output": args.output,
        "threads": threads,
        "chunk": result.chunk_size,
        "chunks": len(records), "startup_s": startup, "run_s": t1 - t0,
        "summaries_s": t2 - t1, "wall_s": t2 - t0, "patients_per_s": args.n / (t2 - t0),
        "chunk_s_median": statistics.median(per_chunk), "chunk_s_max": per_chunk[-1],
        "simulate_s": sum(r.get("simulate_seconds", 0.0) for r in records),
        "audit_s": sum(r.get("audit_seconds", 0.0) for r in records),
        "write_s": sum(r.get("write_seconds", 0.0) for r in records),
        "chunk_cpu_s": sum(r.get("cpu_seconds", 0.0) for r in records),
        "client_cpu_s": c2 - c0,
        "store_bytes": store_bytes, "status": result.dataset.attrs.get("audit_status"),
        "median_cmax": float(nca["nca_cmax"].sel(percentile=50)),
        "median_auc24": float(nca["nca_auc_24h"].sel(percentile=50)),
        "pta": {f"{m:g}": float(v) for m, v in zip(MICS, pta.values, strict=True)},
        "band_median_at_1h": float(bands.sel(percentile=50.0).isel(time=60)),
    }


def child_loop(args: argparse.Namespace) -> dict[str, Any]:
    """Per-patient LSODA on the same patients, checked against ours on a few of them."""
    import numpy as np
    from scipy.integrate import solve_ivp

    from medtransport.runner import prepare, run

    sc = scenario(args.n)
    model = prepare(sc)
    k = model._kinetics()
    cl, v1 = np.asarray(k["clearance"]), np.asarray(k["central_volume"])
    q, v2 = np.asarray(k["intercompartmental_clearance"]), np.asarray(k["peripheral_volume"])
    grid = np.arange(1441) / 60.0  # h
    segments = [(0.0, 1.0, 1000.0), (1.0, 12.0, 0.0), (12.0, 13.0, 1000.0), (13.0, 24.0, 0.0)]

    def rhs(_t: float, y: Any, k10: float, k12: float, k21: float, rate: float) -> list[float]:
        return [rate - (k10 + k12) * y[0] + k21 * y[1], k12 * y[0] - k21 * y[1]]

    def one(i: int) -> Any:
        k10, k12, k21 = cl[i] / v1[i], q[i] / v1[i], q[i] / v2[i]
        y = [0.0, 0.0]
        out = np.empty(grid.size)
        out[0] = 0.0
        for a, b, rate in segments:
            pts = grid[(grid > a) & (grid <= b + 1e-12)]
            sol = solve_ivp(rhs, (a, b), y, method="LSODA", t_eval=pts, rtol=1e-8, atol=1e-8,
                            args=(k10, k12, k21, rate))
            out[np.searchsorted(grid, pts[0]):np.searchsorted(grid, pts[-1]) + 1] = \
                sol.y[0] / v1[i]
            y = sol.y[:, -1]
        return out

    one(0)  # warm-up
    t = now()
    curves = [one(i) for i in range(args.n)]
    wall = now() - t
    ours = run(prepare(sc, patients=(0, 5)))["concentration"].sel(
        tissue="central").values
    err = max(float(np.max(np.abs(curves[i][1:] - ours[1:, i]) / ours[1:, i]))
              for i in range(5))
    return {"n": args.n, "wall_s": wall, "patients_per_s": args.n / wall,
            "max_rel_diff_vs_ours": err}


# ------------------------------------------------------------------------- the parent

def _tree(proc: Any) -> list[Any]:
    import psutil

    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return [proc]


def measure(mode: str, extra: list[str], timeout: float) -> dict[str, Any]:
    """Run a child, sampling its process tree's RSS and the machine's other CPU load."""
    import psutil

    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", mode, *extra]
    busy0 = _busy()
    t0 = now()
    proc = psutil.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak_sum, peak_one, peak_pss, cpu = 0, 0, 0, {}
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak_sum, peak_one, peak_pss
        while not stop.is_set():
            total = pss = 0
            for p in _tree(proc):
                try:
                    mem = p.memory_full_info()  # rss, and pss from smaps_rollup
                    t = p.cpu_times()
                    cpu[p.pid] = t.user + t.system
                except psutil.Error:
                    continue
                total += mem.rss
                pss += getattr(mem, "pss", mem.rss)
                peak_one = max(peak_one, mem.rss)
            peak_sum = max(peak_sum, total)
            peak_pss = max(peak_pss, pss)
            stop.wait(0.1)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for p in reversed(_tree(proc)):
            p.kill()
        raise
    finally:
        stop.set()
        th.join()
    wall = now() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"child {mode} failed: {err[-3000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    busy = _busy() - busy0
    own = sum(cpu.values())
    result.update(peak_rss_tree=peak_sum, peak_rss_process=peak_one, peak_pss_tree=peak_pss,
                  child_wall_s=wall,
                  other_cores=max(busy - own, 0.0) / wall if wall > 0 else None,
                  own_cpu_s=own)
    return result


def _busy() -> float:
    """CPU seconds the whole machine was busy (from /proc/stat)."""
    with open("/proc/stat", encoding="ascii") as fh:
        fields = [float(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def fmt_bytes(b: float) -> str:
    return f"{b / 2**30:.2f} GiB" if b >= 2**30 else f"{b / 2**20:.0f} MiB"


def render(res: dict[str, Any]) -> str:
    lines = [f"{res['date']} UTC, {res['cpu']}, {os.cpu_count()} cores, Python "
             f"{platform.python_version()}; versions: {res['versions']}.",
             "**The machine was shared with other agents' work while this ran**: the CPU other "
             "processes used during each row is in the last column (busy cores, mean, of 2); "
             "wall-clock ratios are disturbed by it, CPU-time ratios much less.", ""]
    if "machine" in res:
        lines[1:1] = [machine.header(res["machine"])]
    chunks = res["chunks"]
    rate = statistics.median(c["patients_per_s"] for c in chunks)
    cpu_pp = statistics.median(c["cpu_s_per_patient"] for c in chunks)
    lines += [f"Single chunk in memory (the batched rate, `run()` of {chunks[0]['chunk']} "
              f"patients × 1441 times, audited, no store), measured {len(chunks)} times "
              f"between the rows below: median **{rate:,.0f} patients/s** wall "
              f"(range {min(c['patients_per_s'] for c in chunks):,.0f}–"
              f"{max(c['patients_per_s'] for c in chunks):,.0f}), "
              f"**{cpu_pp * 1e3:.3f} ms CPU per patient**; peak RSS "
              f"{fmt_bytes(max(c['peak_rss_tree'] for c in chunks))}.", ""]
    lines += ["| N | kept | where | wall s (run + summaries) | patients/s | wall ÷ single chunk | "
              "CPU ms/patient: chunks (÷ single) | CPU ms/patient: whole tree (÷ single) | "
              "peak RSS (tree) | peak PSS (tree) | store | solve_ivp loop ÷ this | other load |",
              "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    loop = res.get("loop")
    for r in res["e2e"]:
        where = "2-worker LocalCluster" if r["cluster"] else \
            f"one process, {r.get('threads', 1)} thread{'s' if r.get('threads', 1) > 1 else ''}"
        kept = "metrics + streamed bands" if r.get("output") == "metrics" else \
            "all curves (float32) + exact bands"
        if "error" in r:
            lines.append(f"| {r['n']:,} | {kept} | {where} | failed: {r['error'][:80]} "
                         "| | | | | | | | | |")
            continue
        slow = rate / r["patients_per_s"]
        vs_loop = (r["n"] / loop["patients_per_s"]) / r["wall_s"] if loop else None
        chunk_cpu = r["chunk_cpu_s"] / r["n"]
        tree_cpu = r["own_cpu_s"] / r["n"]
        lines.append(
            f"| {r['n']:,} | {kept} | {where} | {r['wall_s']:.1f} ({r['run_s']:.1f} + "
            f"{r['summaries_s']:.1f}) | {r['patients_per_s']:,.0f} | {slow:.2f}× | "
            f"{chunk_cpu * 1e3:.3f} ({chunk_cpu / cpu_pp:.2f}×) | "
            f"{tree_cpu * 1e3:.3f} ({tree_cpu / cpu_pp:.2f}×) | "
            f"{fmt_bytes(r['peak_rss_tree'])} | {fmt_bytes(r.get('peak_pss_tree', 0))} | "
            f"{fmt_bytes(r['store_bytes'])} | "
            f"{'—' if vs_loop is None else f'{vs_loop:.1f}×'} | {r['other_cores']:.2f} |")
    lines += ["", "Peak PSS (tree): the proportional set size summed over the run's processes "
                  "(a page shared by k processes — numpy's and numba's libraries, Python "
                  "itself — counts 1/k in each), sampled every 0.1 s; the RSS sum counts it "
                  "k times.", "",
              "CPU ms/patient: *chunks* = CPU time of the threads that sampled, simulated, "
                  "audited and wrote each chunk; *whole tree* = all CPU of the run's process tree "
                  "(interpreter start, imports, cluster start-up, the store's layout, the "
                  "summaries), from psutil."]
    if loop:
        lines += ["", f"Per-patient `solve_ivp` (LSODA) loop: {loop['n']:,} patients in "
                      f"{loop['wall_s']:.1f} s = {loop['patients_per_s']:,.0f} patients/s "
                      f"(max relative difference from ours on 5 patients "
                      f"{loop['max_rel_diff_vs_ours']:.1e}; other load "
                      f"{loop['other_cores']:.2f}); extrapolated linearly to each N for the "
                      "'loop ÷ this' column (loop time ÷ our end-to-end wall time)."]
    goal = [r for r in res["e2e"] if r.get("n") == max(res["sizes"]) and "error" not in r
            and r.get("output") == "metrics"]
    if goal:
        lines += ["", f"Goals at N = {max(res['sizes']):,}, metrics + bands kept (one process "
                      "< 30 s end to end; 2-worker cluster within 1.5× of the single-chunk "
                      "rate; peak memory < 1 GiB):"]
        for r in goal:
            where = "2-worker LocalCluster" if r["cluster"] else \
                f"one process ({r.get('threads', 1)} chunk threads)"
            # PSS: each shared page (numpy's, numba's LLVM, Python's own) split between the
            # processes that map it — the tree's share of physical memory; the RSS sum counts
            # a shared page once per process
            ok_m = r.get("peak_pss_tree", r["peak_rss_tree"]) < 2**30
            wall = rate / r["patients_per_s"]
            cpu = r["own_cpu_s"] / r["n"] / cpu_pp
            ok_t = r["wall_s"] < 30 if not r["cluster"] else wall <= 1.5
            verdict = f" (goal ≤ 1.5×: {'met' if ok_t else 'NOT met'})" if r["cluster"] else ""
            lines.append(f"- {where}: {r['wall_s']:.1f} s end to end "
                         f"({'< 30 s: met' if r['wall_s'] < 30 else '≥ 30 s: NOT met'}); "
                         f"{wall:.2f}× the single-chunk rate in wall time, {cpu:.2f}× in CPU "
                         f"time{verdict}; "
                         f"peak {fmt_bytes(r.get('peak_pss_tree', 0))} PSS "
                         f"({'met' if ok_m else 'NOT met'}; RSS summed over the processes "
                         f"{fmt_bytes(r['peak_rss_tree'])}); store "
                         f"{fmt_bytes(r['store_bytes'])} = {r['store_bytes'] / r['n']:.0f} B "
                         "per patient.")
        lines += ["", *projection(goal, cpu_pp)]
    for r in res["e2e"]:
        if "error" not in r and r["cluster"]:
            lines += ["", f"Cluster start-up (2 worker processes, not counted in wall s): "
                          f"{r['startup_s']:.1f} s at N = {r['n']:,}. Per-chunk wall time "
                          f"(median): {r['chunk_s_median']:.2f} s for {r['chunk']} patients."]
            break
    return "\n".join(lines) + "\n"


def projection(rows: list[dict[str, Any]], cpu_pp: float) -> list[str]:
    """The 100-node figure from the measured per-patient cost of a metrics + bands run."""
    r = next((x for x in rows if not x["cluster"]), rows[0])
    per_patient = r["chunk_cpu_s"] / r["n"]  # sample, simulate, audit, metrics, bands, write
    stored = r["store_bytes"] / r["n"]
    out = [f"Projection to 100 nodes (from this run: {per_patient * 1e3:.3f} ms CPU per patient "
           f"in its chunk — single chunk in memory {cpu_pp * 1e3:.3f} ms — and "
           f"{stored:.0f} B stored per patient; chunks share nothing, each returns a record "
           "and its band counts, and the client's merge is one addition per non-zero count):",
           "", "| | 100 nodes × 2 cores | 100 nodes × 32 cores |", "|---|---:|---:|"]
    rates = [100 * c / per_patient for c in (2, 32)]
    out.append("| compute rate | " + " | ".join(f"{x / 1e6:.2f} M patients/s" for x in rates)
               + " |")
    out.append("| store write rate needed | " + " | ".join(
        f"{x * stored / 1e6:.0f} MB/s" for x in rates) + " |")
    out.append("| N = 10⁸: compute alone | " + " | ".join(f"{1e8 / x:.0f} s" for x in rates)
               + " |")
    return out


def versions() -> str:
    import importlib.metadata as md

    out = []
    for name in ("numpy", "scipy", "xarray", "zarr", "dask", "distributed", "medtransport"):
        try:
            out.append(f"{name} {md.version(name)}")
        except md.PackageNotFoundError:
            out.append(f"{name} absent")
    return ", ".join(out)


def save(res: dict[str, Any], started: float, quick: bool, final: bool,
         out: Path = machine.LOCAL) -> str:
    res["total_s"] = now() - started
    text = render(res) + f"\nTotal wall time of this bench: {res['total_s']:.0f} s" + \
        ("" if final else " so far (unfinished: rows still to come)") + ".\n"
    stem = "population-latest-quick" if quick else "population-latest"
    write_atomic(out / f"{stem}.md", text)
    write_atomic(out / f"{stem}.json", json.dumps(res, indent=1, default=str))
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sizes", help="comma-separated N (default 1e4,1e5,1e6; quick 2e3,1e4)")
    ap.add_argument("--no-cluster", action="store_true")
    ap.add_argument("--only-cluster", action="store_true",
                    help="the metrics rows on the 2-worker LocalCluster only")
    ap.add_argument("--chunk", type=int, default=None, help="patients per chunk")
    ap.add_argument("--threads", type=int, default=2,
                    help="chunks computed at once in the one-process rows (default 2: the "
                         "machine's cores; 1 for the sequential pipeline)")
    ap.add_argument("--cluster-chunk", type=int, default=None,
                    help="patients per chunk of the cluster rows (default: --chunk): a "
                         "worker holds one chunk in flight, so this sets its memory")
    ap.add_argument("--loop-n", type=int, default=None)
    ap.add_argument("--store-dir", default=None, help="where the Zarr stores go (deleted)")
    ap.add_argument("--child", choices=("chunk", "e2e", "loop"))
    ap.add_argument("--n", type=int)
    ap.add_argument("--cluster", action="store_true")
    ap.add_argument("--store")
    machine.add_out_argument(ap)
    ap.add_argument("--output", choices=("metrics", "all"), default="metrics")
    ap.add_argument("--full-sizes", help="comma-separated N of the full-curve rows (default "
                    "1e6; quick 1e4; 0: none)")
    args = ap.parse_args()
    if args.child:
        fn = {"chunk": child_chunk, "e2e": child_e2e, "loop": child_loop}[args.child]
        print(json.dumps(fn(args)))
        return
    info = machine.announce(quick=args.quick)
    out = machine.output_dir(args.out)
    sizes = [int(float(x)) for x in (args.sizes or ("2e3,1e4" if args.quick else
                                                    "1e5,1e6")).split(",")]
    full_sizes = [int(float(x)) for x in (args.full_sizes or ("1e4" if args.quick else
                                                              "1e6")).split(",")
                  if int(float(x)) > 0]
    loop_n = args.loop_n or (200 if args.quick else 1000)
    chunk_opt = ["--chunk", str(args.chunk)] if args.chunk else []
    work = Path(args.store_dir or tempfile.mkdtemp(prefix="bench-population-"))
    work.mkdir(parents=True, exist_ok=True)
    res: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
                           "cpu": machine.cpu_model(), "versions": versions(), "sizes": sizes,
                           "e2e": [], "machine": info}
    started = now()
    res["chunks"] = []

    def single_chunk() -> None:
        log("single chunk in memory")
        c = measure("chunk", chunk_opt, 3600)
        res["chunks"].append(c)
        log(f"  {c['patients_per_s']:.0f} patients/s, {c['cpu_s_per_patient'] * 1e3:.3f} ms "
            "CPU per patient")

    log(f"per-patient solve_ivp loop, N = {loop_n}")
    res["loop"] = measure("loop", ["--n", str(loop_n)], 3600)
    log(f"  {res['loop']['patients_per_s']:.0f} patients/s")
    # metrics + streamed bands: one process and the cluster alternate, smallest N first;
    # then today's full-curve store beside them
    rows = [(n, cluster, "metrics") for n in sizes
            for cluster in ([False] if args.no_cluster else [True] if args.only_cluster
                            else [False, True])]
    rows += [(n, False, "all") for n in full_sizes]
    for n, cluster, output in rows:
        store = work / f"pop-{n}-{output}-{'cluster' if cluster else 'local'}.zarr"
        single_chunk()  # interleaved with the rows it is compared with
        log(f"end-to-end N = {n:,} {output} {'cluster' if cluster else 'one process'}")
        try:
            opt = ["--chunk", str(args.cluster_chunk)] if cluster and args.cluster_chunk \
                else chunk_opt
            r = measure("e2e", ["--n", str(n), "--store", str(store), *opt,
                                "--threads", str(args.threads),
                                "--output", output,
                                *(["--cluster"] if cluster else [])],
                        4 * 3600)
            log(f"  {r['wall_s']:.1f} s, {r['patients_per_s']:.0f}/s, peak "
                f"{fmt_bytes(r['peak_rss_tree'])}")
        except Exception as exc:  # one failing row must not lose the others
            r = {"n": n, "cluster": cluster, "output": output,
                 "error": f"{type(exc).__name__}: {exc}"}
            log(f"  failed: {r['error'][:300]}")
        res["e2e"].append(r)
        shutil.rmtree(store, ignore_errors=True)
        save(res, started, args.quick, final=False, out=out)  # a long run keeps what it has
    print(save(res, started, args.quick, final=True, out=out))
    if args.store_dir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
