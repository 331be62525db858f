#!/usr/bin/env python
"""Benchmark the PK event engine on a NONMEM-style data set: batched and audited, against a
loop of one run per subject and against a plain numpy superposition.

    .venv/bin/python bench/bench_dataset.py --out bench/results   # 10 000 subjects × 20 records
    .venv/bin/python bench/bench_dataset.py --quick    # 500 subjects (smoke run)

The data set (seeded): a two-compartment model with first-order absorption (CMT 1 depot,
2 central, 3 peripheral), CL = 4.6 L/h·(WT/70 kg)^0.75·e^η (ω 0.3), V1 = 30 L·(WT/70 kg)·e^η
(ω 0.2), Q 6.9 L/h, V2 40 L, ka 1.2 1/h·e^η (ω 0.3), WT per subject 40–110 kg. Mixed regimens,
a quarter of the subjects each:

- oral 100 mg q12h (ADDL 5) with a lag of 0.5 h on the depot;
- a 1 h infusion of 500 mg into central q24h (ADDL 2);
- oral 100 mg q12h at steady state (SS 1, ADDL 3);
- an oral loading dose of 200 mg, then 100 mg q12h (ADDL 4) from 12 h.

Every subject has 20 records in all (its dose records, the rest observations spread over 96 h).

Rows:

1. **ours** — the scenario run through the framework (``medtransport.runner.run``: the engine's
   one batched pass over every subject, the covariate model, the η per subject, and every
   audit — mass balance on the grid, the books at every record, steady-state periodicity).
2. **loop** — the same, one ``run`` per subject (a subset is timed and extrapolated).
3. **numpy** — the predictions at the records by superposition written directly in numpy: per
   subject the eigen-decomposition of K, then Σ over doses of the closed-form responses
   (boluses, infusions, geometric sums for steady state), broadcast over (subject, record,
   dose). No books, no audits. It is also the accuracy reference for row 1.

Each row runs in a fresh child process; its peak RSS (``ru_maxrss``) is the row's memory.
Writes a markdown table to stdout and dataset-latest{,-quick}.{md,json} into ``--out`` (default
bench/results/local/; atomically), with the machine header of bench/machine.py.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import machine
import numpy as np

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
SEED = 20261203
N_RECORDS = 20
TYPICAL = {"CL": 4.6, "V1": 30.0, "Q": 6.9, "V2": 40.0, "KA": 1.2}
OMEGA = {"clearance": 0.3, "central_volume": 0.2, "absorption_rate": 0.3}
LAG = 0.5


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def dataset(n: int) -> Any:
    """The seeded data set as a RecordTable (weight as a covariate)."""
    from medtransport_pk.records import RecordTable

    rng = np.random.default_rng(SEED)
    cols: dict[str, list[np.ndarray]] = {k: [] for k in (
        "id", "time", "evid", "amt", "cmt", "rate", "ii", "addl", "ss", "wt")}
    group = np.arange(n) % 4
    wt = rng.uniform(40.0, 110.0, n)
    # dose records per group: (time, amt, cmt, rate, ii, addl, ss)
    regimens = {
        0: [(0.0, 100.0, 1, 0.0, 12.0, 5, 0)],
        1: [(0.0, 500.0, 2, 500.0, 24.0, 2, 0)],
        2: [(0.0, 100.0, 1, 0.0, 12.0, 3, 1)],
        3: [(0.0, 200.0, 1, 0.0, 0.0, 0, 0), (12.0, 100.0, 1, 0.0, 12.0, 4, 0)],
    }
    for g, doses in regimens.items():
        ids = np.flatnonzero(group == g)
        m = ids.size
        n_obs = N_RECORDS - len(doses)
        obs_t = np.sort(np.round(rng.uniform(0.1, 96.0, (m, n_obs)), 3), axis=1)
        dose_t = np.array([d[0] for d in doses])
        times = np.concatenate([np.broadcast_to(dose_t, (m, len(doses))), obs_t], axis=1)
        evid = np.concatenate([np.ones((m, len(doses))), np.zeros((m, n_obs))], axis=1)
        order = np.argsort(times + 1e-9 * (1 - evid), axis=1, kind="stable")

        parts = {"time": times, "evid": evid}
        for k, name in enumerate(("amt", "cmt", "rate", "ii", "addl", "ss"), start=1):
            d = np.array([dd[k] for dd in doses], float)
            parts[name] = np.concatenate([np.broadcast_to(d, (m, len(doses))),
                                          np.zeros((m, n_obs))], axis=1)
        for k, v in parts.items():
            cols[k].append((ids[:, None], np.take_along_axis(v, order, axis=1)))
        cols["id"].append((ids[:, None], np.broadcast_to(ids[:, None] + 1, times.shape)))
        cols["wt"].append((ids[:, None], np.broadcast_to(wt[ids][:, None], times.shape)))
    out = {}
    for k, chunks in cols.items():
        arr = np.zeros((n, N_RECORDS))
        for rows, v in chunks:
            arr[rows[:, 0]] = v
        out[k] = arr.reshape(-1)
    size = n * N_RECORDS
    ints = lambda x: x.astype(np.int64)  # noqa: E731
    return RecordTable(
        id=ints(out["id"]), time=out["time"], evid=ints(out["evid"]), amt=out["amt"],
        cmt=ints(out["cmt"]), rate=out["rate"], ii=out["ii"], addl=ints(out["addl"]),
        ss=ints(out["ss"]), mdv=ints(out["evid"] != 0), dv=np.zeros(size),
        row=np.arange(2, size + 2), amount_unit="mg", dv_unit="mg/L",
        covariates={"weight": out["wt"]}, covariate_units={"weight": "kg"}, source="bench")


def scenario(n: int) -> dict[str, Any]:
    return {
        "name": "data set bench", "model": "pk.two_compartment",
        "parameters": {
            "clearance": f"{TYPICAL['CL']} L/h", "central_volume": f"{TYPICAL['V1']} L",
            "intercompartmental_clearance": f"{TYPICAL['Q']} L/h",
            "peripheral_volume": f"{TYPICAL['V2']} L",
            "absorption_rate": f"{TYPICAL['KA']} 1/h", "lag_time": {"depot": f"{LAG} h"},
            "covariate_effects": [
                {"parameter": "clearance", "covariate": "weight", "type": "power",
                 "reference": "70 kg", "exponent": 0.75},
                {"parameter": "central_volume", "covariate": "weight", "type": "power",
                 "reference": "70 kg", "exponent": 1.0}]},
        "time": {"stop": "96 h", "step": "48 h"},
        "population": {"size": n, "variability": OMEGA},
        "seed": SEED,
    }


def model_class(table: Any) -> Any:
    from medtransport_pk.model import TwoCompartment

    class FromTable(TwoCompartment):
        def _dataset(self) -> Any:
            return table

    return FromTable


def run_ours(table: Any) -> dict[str, Any]:
    from medtransport.runner import prepare, run

    t0 = time.perf_counter()
    model = prepare(scenario(int(table.id.max())), model_class=model_class(table))
    ds = run(model)
    elapsed = time.perf_counter() - t0
    etas = model._subject_etas
    return {"seconds": elapsed, "pred": ds["concentration"].values,
            "etas": {k: v.tolist() for k, v in etas.items()},
            "audits": ds.attrs.get("audit_status")}


def subset(table: Any, subjects: np.ndarray) -> Any:
    import dataclasses

    keep = np.isin(table.id, subjects + 1)
    return dataclasses.replace(
        table, **{k: getattr(table, k)[keep] for k in (
            "id", "time", "evid", "amt", "cmt", "rate", "ii", "addl", "ss", "mdv", "dv",
            "row")}, covariates={k: v[keep] for k, v in table.covariates.items()})


def run_loop(table: Any, n_timed: int) -> dict[str, Any]:
    from medtransport.runner import prepare, run

    n = int(table.id.max())
    picks = np.linspace(0, n - 1, n_timed).astype(int)
    t0 = time.perf_counter()
    for i in picks:
        run(prepare(scenario(1), model_class=model_class(subset(table, np.array([i])))))
    per = (time.perf_counter() - t0) / n_timed
    return {"seconds": per * n, "per_subject": per, "timed": n_timed}


def numpy_superposition(table: Any, etas: dict[str, np.ndarray]) -> np.ndarray:
    """PRED at every record by closed-form superposition (see the module docstring)."""
    with np.errstate(invalid="ignore", over="ignore"):  # padding slots, discarded
        return _superposition(table, etas)


def _superposition(table: Any, etas: dict[str, np.ndarray]) -> np.ndarray:
    n = int(table.id.max())
    r = N_RECORDS
    wt = table.covariates["weight"].reshape(n, r)[:, 0]
    cl = TYPICAL["CL"] * (wt / 70) ** 0.75 * np.exp(etas["clearance"])
    v1 = TYPICAL["V1"] * (wt / 70) * np.exp(etas["central_volume"])
    ka = TYPICAL["KA"] * np.exp(etas["absorption_rate"])
    q, v2 = TYPICAL["Q"], TYPICAL["V2"]
    k = np.zeros((n, 3, 3))
    k[:, 0, 0] = -ka
    k[:, 1, 0] = ka
    k[:, 1, 1] = -(cl + q) / v1
    k[:, 1, 2] = q / v2
    k[:, 2, 1] = q / v1
    k[:, 2, 2] = -q / v2
    lam, vec = np.linalg.eig(k)
    lam, vec = lam.real, vec.real
    w = np.linalg.inv(vec)
    coef = vec[:, 1, :, None] * w  # (n, i, j): central response to a unit dose into j
    t = table.time.reshape(n, r)
    # dose instances per subject from the dose records (ADDL expanded), padded
    d = np.flatnonzero(table.evid == 1)
    subj = table.id[d] - 1
    reps = table.addl[d] + 1
    inst_sub = np.repeat(subj, reps)
    kk = np.arange(reps.sum()) - np.repeat(np.cumsum(reps) - reps, reps)
    rec = np.repeat(d, reps)
    cmt = table.cmt[rec] - 1
    lag = np.where(cmt == 0, LAG, 0.0)
    start = table.time[rec] + kk * table.ii[rec] + lag
    amt, rate, ss = table.amt[rec], table.rate[rec], table.ss[rec]
    tau = table.ii[rec]
    count = np.bincount(inst_sub, minlength=n)
    slot = np.arange(inst_sub.size) - np.repeat(np.cumsum(count) - count, count)
    m = int(count.max())

    def grid(x: np.ndarray, fill: float = 0.0) -> np.ndarray:
        out = np.full((n, m), fill)
        out[inst_sub, slot] = x
        return out

    s_, a_, r_, c_ = grid(start, np.inf), grid(amt), grid(rate), grid(cmt).astype(int)
    ss_, tau_ = grid(ss * (kk == 0)), grid(tau, 1.0)
    cf = np.take_along_axis(coef, c_[:, None, :].repeat(3, axis=1), axis=2)  # (n, i, m)
    dt = t[:, :, None] - s_[:, None, :]  # (n, r, m)
    lam_ = lam[:, None, :, None]  # (n, 1, i, 1)
    dtt = dt[:, :, None, :]
    on = dtt >= 0
    bolus = (r_ == 0)[:, None, None, :]
    e = np.exp(lam_ * np.where(on, dtt, 0.0))
    dur = np.where(r_ > 0, a_ / np.where(r_ > 0, r_, 1.0), 0.0)[:, None, None, :]
    e_end = np.exp(lam_ * np.clip(dtt - dur, 0.0, None))
    resp = np.where(bolus, a_[:, None, None, :] * e,
                    r_[:, None, None, :] * (e - np.where(dtt > dur, e_end, 1.0)) / lam_)
    # steady state: the infinite past of the SS record's regimen (before its first dose)
    is_ss = ss_[:, None, None, :] > 0
    decay = np.exp(lam_ * tau_[:, None, None, :])
    geo = np.where(is_ss, decay / (1 - np.where(is_ss, decay, 0.0)), 0.0)  # Σ_{k≥1} e^{λkτ}
    # a steady-state dose record's regimen: this dose and its infinite past (boluses here)
    resp = np.where(on, resp * (1.0 + geo), 0.0) + np.where(
        ~on & is_ss, a_[:, None, None, :] * np.exp(lam_ * np.minimum(dtt, 0.0)) * geo, 0.0)
    amount = np.sum(resp * cf[:, None, :, :], axis=(2, 3))
    return (amount / v1[:, None]).reshape(-1)


def child(row: str, n: int, loop_n: int) -> None:
    sys.path.insert(0, str(REPO / "plugins"))
    table = dataset(n)
    out: dict[str, Any] = {"row": row}
    if row == "ours":
        run_ours(dataset(8))  # load the compiled kernel once, untimed
        res = run_ours(table)
        out.update(seconds=res["seconds"], audits=res["audits"])
        etas = {k: np.array(v) for k, v in res["etas"].items()}
        ref = numpy_superposition(table, etas)
        pred = res["pred"]
        scale = np.maximum(np.abs(ref), 1e-6 * np.max(np.abs(ref)))
        out["max_rel_diff_vs_numpy"] = float(np.max(np.abs(pred - ref) / scale))
    elif row == "loop":
        run_ours(dataset(8))  # load the compiled kernel once, untimed
        out.update(run_loop(table, loop_n))
    else:
        from medtransport.population import sample_etas

        etas = sample_etas(SEED, sorted(OMEGA), [OMEGA[k] for k in sorted(OMEGA)], 0, n)
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            numpy_superposition(table, etas)
            times.append(time.perf_counter() - t0)
        out["seconds"] = float(np.median(times))
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--child", choices=("ours", "loop", "numpy"))
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--loop-n", type=int, default=40)
    machine.add_out_argument(ap)
    args = ap.parse_args()
    n = 500 if args.quick else args.n
    loop_n = 10 if args.quick else args.loop_n
    if args.child:
        child(args.child, n, loop_n)
        return
    info = machine.announce(quick=args.quick)
    rows = {}
    for row in ("ours", "numpy", "loop"):
        print(f"running {row} …", file=sys.stderr, flush=True)
        proc = subprocess.run([sys.executable, __file__, "--child", row, "--n", str(n),
                               "--loop-n", str(loop_n)], capture_output=True, text=True,
                              check=True)
        rows[row] = json.loads(proc.stdout.strip().splitlines()[-1])
    ours = rows["ours"]["seconds"]
    load = os.getloadavg()
    lines = [
        f"# bench_dataset ({'quick' if args.quick else 'full'}): {n} subjects × "
        f"{N_RECORDS} records, 2-compartment oral, covariates, mixed regimens",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average {load[0]:.1f}/{load[1]:.1f} at the end (shared machine).",
        "", machine.header(info), "",
        "| row | wall time | per subject | vs ours | peak RSS |",
        "|---|---|---|---|---|",
    ]
    for name, label in (("ours", "ours (batched, audited)"),
                        ("loop", f"loop of one run per subject ({rows['loop']['timed']} timed, "
                                 "extrapolated)"),
                        ("numpy", "plain numpy superposition (no books)")):
        r = rows[name]
        lines.append(f"| {label} | {r['seconds']:.3f} s | {1e3 * r['seconds'] / n:.4f} ms | "
                     f"{r['seconds'] / ours:.2f}× | {r['peak_rss_mib']:.0f} MiB |")
    lines += ["", f"ours: audits {rows['ours']['audits']}; max relative difference of the "
                  f"record predictions from the numpy superposition "
                  f"{rows['ours']['max_rel_diff_vs_numpy']:.2e}.",
              f"Speed-up over the loop: {rows['loop']['seconds'] / ours:.0f}× (goal ≥ 50×); "
              f"ours / numpy: {ours / rows['numpy']['seconds']:.2f} (goal ≤ 3)."]
    text = "\n".join(lines) + "\n"
    print(text)
    out = machine.output_dir(args.out)
    write_atomic(out / f"dataset-latest{'-quick' if args.quick else ''}.md", text)
    write_atomic(out / f"dataset-latest{'-quick' if args.quick else ''}.json",
                 json.dumps({"machine": info, "rows": rows}, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
