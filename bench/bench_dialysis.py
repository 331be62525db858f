#!/usr/bin/env python
"""Benchmark the dialysis plugin on a virtual cohort: 100,000 patients × 4 weeks, audited.

    .venv/bin/python bench/bench_dialysis.py --out bench/results   # 100,000 patients, loop 200
    .venv/bin/python bench/bench_dialysis.py --quick    # 10,000 patients, loop on 20

The cohort: thrice-weekly haemodialysis (Mon/Wed/Fri, 4 h, 2.5 L ultrafiltered) for 4 weeks,
single-pool variable-volume urea kinetics, outputs every 12 h plus every session's pre/post.
Covariates vary between patients — weight, age and sex (hence Watson's urea space) — and
log-normal variability on the urea generation (ω 0.25), residual clearance (ω 0.8), dialyser
KoA (ω 0.2) and blood flow (ω 0.1): the session prescription and residual function differ.

Rows, the same patients and outputs:

1. medtransport, batched: ``medtransport.run`` on the scenario's ``population`` section (the
   core samples covariates and η; the plugin solves all patients at once in closed form), every
   audit included (urea and water books per patient and output, normalization, finiteness,
   non-negativity), and the per-session adequacy (formal UKM spKt/V, Daugirdas, URR, stdKt/V).
2. a per-patient ``scipy.integrate.solve_ivp`` loop (LSODA, rtol 1e-10) of the same ODEs
   (urea amount, volume, dialysate, urine, generated), restarted at every session boundary,
   with the books checked and the formal spKt/V computed per patient — on a subset of the
   patients, timed and extrapolated to the cohort. Its concentrations are the accuracy
   reference for row 1.

Writes a markdown table to stdout and dialysis-latest[-quick].md into ``--out`` (default
bench/results/local/; header from bench/machine.py), raw numbers to
the .json next to it (each written to a temporary file and renamed).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import machine
import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def scenario(n: int) -> dict[str, Any]:
    return {
        "name": f"{n} haemodialysis patients, 4 weeks", "model": "dialysis.urea_single_pool",
        "patient": {"weight": "75 kg", "height": "172 cm", "age": "62 year", "sex": "male"},
        "parameters": {
            "pre_urea": "65 mg/dL", "generation": "8 mg/min", "residual_clearance": "1.5 mL/min",
            "urine_output": "0.3 L/day", "fluid_intake": "1.4 L/day",
            "dialyser": {"koa": "1100 mL/min", "blood_flow": "350 mL/min",
                         "dialysate_flow": "600 mL/min"}},
        "events": [{"type": "session", "days": ["Mon", "Wed", "Fri"], "at": "8 h",
                    "duration": "4 h", "ultrafiltration": "2.5 L"}],
        "population": {
            "size": n,
            "variability": {"generation": 0.25, "residual_clearance": 0.8, "koa": 0.2,
                            "blood_flow": 0.1},
            "covariates": {
                "weight": {"distribution": "lognormal", "median": "75 kg", "omega": 0.2,
                           "lower": "40 kg", "upper": "160 kg"},
                "age": {"distribution": "normal", "mean": "62 year", "sd": "14 year",
                        "lower": "20 year", "upper": "95 year"},
                "sex": {"female_fraction": 0.4}}},
        "time": {"stop": "672 h", "step": "12 h"},
        "seed": 2026,
    }


def batched(n: int) -> tuple[float, float, Any]:
    """(wall seconds, CPU seconds of this process, dataset) of one audited run."""
    import medtransport as mt

    mt.run(scenario(20))  # warm-up: imports and the plugin
    start, cpu = time.perf_counter(), time.process_time()
    ds = mt.run(scenario(n))
    return time.perf_counter() - start, time.process_time() - cpu, ds


def loop(ds: Any, sc: dict[str, Any], patients: np.ndarray) -> tuple[float, np.ndarray, float]:
    """Per-patient solve_ivp over the same schedule; returns (CPU seconds, concentrations
    (T, k), worst relative book residual)."""
    from scipy.integrate import solve_ivp

    from medtransport.scenario import load_scenario
    from medtransport_dialysis import adequacy as adq
    from medtransport_dialysis.sessions import read_sessions

    s = load_scenario(sc)
    sessions = read_sessions(s)
    t_out = ds["time"].values / 3600.0
    intake = 1.4 / 24.0
    urine = 0.3 / 24.0
    out = np.empty((t_out.size, patients.size))
    worst = 0.0
    start = time.process_time()  # CPU time: the machine is shared, wall time is not ours
    for j, p in enumerate(patients):
        v0 = float(ds["water_volume"].isel(patient=p, time=0).sum())
        c0 = float(ds["concentration"].isel(patient=p, time=0)[0])
        g = float(ds["generation"].isel(patient=p))
        kr = float(ds["residual_clearance"].isel(patient=p)) * 0.06
        k_session = ds["dialyser_clearance"].isel(patient=p).values * 0.06

        def rhs(_t: float, y: np.ndarray, k: float, qf: float, g: float = g,
                kr: float = kr) -> np.ndarray:
            c = y[0] / y[1]
            return np.array([g - (k + kr) * c, intake - urine - qf, k * c, kr * c, g])

        edges = sorted({0.0, float(t_out[-1]), *(x for q in sessions for x in (q.start, q.stop)
                                                if x < t_out[-1])})
        y = np.array([c0 * v0, v0, 0.0, 0.0, 0.0])
        pre, post = [], []
        for a, b in itertools.pairwise(edges):
            on = [i for i, q in enumerate(sessions) if q.start <= a and b <= q.stop]
            k, qf = (float(k_session[on[0]]), sessions[on[0]].ultrafiltration / 4.0) if on \
                else (0.0, 0.0)
            if on:
                pre.append(y[0] / y[1])
            sel = (t_out >= a) & (t_out <= b)
            sol = solve_ivp(rhs, (a, b), y, method="LSODA", rtol=1e-10, atol=1e-10,
                            t_eval=t_out[sel], args=(k, qf))
            out[sel, j] = sol.y[0] / sol.y[1]
            ends = solve_ivp(rhs, (a, b), y, method="LSODA", rtol=1e-10, atol=1e-10,
                             args=(k, qf)) if not sel.any() or t_out[sel][-1] != b else sol
            y = ends.y[:, -1]
            if on:
                post.append(y[0] / y[1])
            books = c0 * v0 + y[4] - y[2] - y[3]
            worst = max(worst, abs(y[0] - books) / (c0 * v0))
        adq.formal_ktv(np.array(pre), np.array(post), 4.0,
                       np.array([v0]), generation=g, residual_clearance=kr,
                       volume_rate=intake - urine - 2.5 / 4.0)
    return time.process_time() - start, out, worst


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="10,000 patients, loop on 20")
    ap.add_argument("--patients", type=int, default=None)
    ap.add_argument("--loop", type=int, default=None, help="patients in the solve_ivp loop")
    machine.add_out_argument(ap)
    args = ap.parse_args(argv)
    info = machine.announce(quick=args.quick)
    n = args.patients or (10_000 if args.quick else 100_000)
    n_loop = args.loop or (20 if args.quick else 200)
    seconds, cpu, ds = batched(n)
    sim, audit = float(ds.attrs["simulate_seconds"]), float(ds.attrs["audit_seconds"])
    rng = np.random.default_rng(0)
    subset = np.sort(rng.choice(n, size=min(n_loop, n), replace=False))
    loop_s, loop_c, loop_books = loop(ds, scenario(n), subset)
    ours = ds["concentration"].isel(compartment=0, patient=subset).values
    accuracy = float(np.max(np.abs(ours / loop_c - 1.0)))
    extrapolated = loop_s / subset.size * n
    load = os.getloadavg()[0]
    res = {
        "patients": n, "weeks": 4, "outputs": int(ds.sizes["time"]),
        "sessions": int(ds.sizes["session"]),
        "batched_seconds": seconds, "batched_cpu_seconds": cpu, "simulate_seconds": sim,
        "audit_seconds": audit, "load_average_1min_at_end": load,
        "loop_patients": int(subset.size), "loop_cpu_seconds": loop_s,
        "loop_extrapolated_cpu_seconds": extrapolated, "speedup_cpu": extrapolated / cpu,
        "max_rel_difference_vs_loop": accuracy, "loop_worst_book_residual": loop_books,
        "worst_urea_residual_mmol": float(np.abs(ds["urea_residual"]).max()),
        "median_sp_ktv": float(ds["sp_ktv"].median()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)",
        "machine_header": info,
        "python": sys.version.split()[0], "command": " ".join(["bench/bench_dialysis.py",
                                                               *(argv or sys.argv[1:])]),
    }
    table = "\n".join([
        machine.header(info), "",
        "| row | patients | wall s | CPU s | CPU per patient |",
        "|---|---|---|---|---|",
        f"| medtransport batched, audited | {n} | {seconds:.2f} (simulate {sim:.2f}, audits "
        f"{audit:.2f}) | {cpu:.2f} | {cpu / n * 1e6:.0f} µs |",
        f"| solve_ivp loop (LSODA, books checked) | {subset.size} → {n} extrapolated | | "
        f"{loop_s:.2f} → {extrapolated:.0f} | {loop_s / subset.size * 1e6:.0f} µs |",
        "",
        f"speed-up (CPU) {extrapolated / cpu:.0f}×; max relative difference of the "
        f"concentrations vs the loop {accuracy:.1e}; worst urea book residual "
        f"{res['worst_urea_residual_mmol']:.1e} mmol; median spKt/V {res['median_sp_ktv']:.2f}; "
        f"load average {load:.1f} on {os.cpu_count()} cores",
    ])
    print(table)
    from medtransport.results import write_atomically

    out = machine.output_dir(args.out)
    stem = "dialysis-latest-quick" if args.quick else "dialysis-latest"
    for suffix, text in ((".md", table + "\n"), (".json", json.dumps(res, indent=2) + "\n")):
        with write_atomically(out / f"{stem}{suffix}") as tmp:
            tmp.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
