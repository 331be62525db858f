#!/usr/bin/env python
"""What a user pays before any kernel runs: cold compilation, the whole ``run`` path, the CLI.

    .venv/bin/python bench/bench_cold.py --out bench/results   # full run (a few minutes)
    .venv/bin/python bench/bench_cold.py --quick               # fewer scenarios, 1 warm run

Rows, each a fresh ``medtransport`` process as a user types it (from a neutral directory, the
output named by ``-o`` in a temporary directory):

1. CLI start-up: ``medtransport --help`` and ``medtransport models``, median of N.
2. The whole ``medtransport run`` path of example scenarios, one per compiled kernel family:
   *cold* — numba's cache cleared (``NUMBA_CACHE_DIR`` set to a new empty directory, so every
   kernel the run touches is compiled, as after an install or an upgrade), and *warm* — the same
   directory, now filled (median of N). Cold − warm is the compilation a user pays once per
   install. Besides wall time the CPU time of the child (user + system, from ``wait4``) is
   reported, which the load of other processes disturbs much less. ``simulate`` and ``audit``
   are the model's own seconds as the run stores them in the file (``simulate_seconds``,
   ``audit_seconds``); the rest of the wall time is start-up, scenario checking, set-up and
   writing the file.

The FTCS row runs a 32³ no-decay diffusion cube written by this script (the compiled FTCS
path); the others run scenarios from ``examples/scenarios`` unchanged. Writes
cold-latest.{md,json} into ``--out`` (default bench/results/local/); the header comes from
bench/machine.py.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import machine
from bench_diffusion import write_atomic

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "scenarios"
FTCS_CUBE = """\
name: FTCS dye cube (bench_cold)
model: diffusion.fick
domain: {shape: box, size: [2 mm, 2 mm, 2 mm], cells: [32, 32, 32]}
parameters:
  diffusivity: 4.5e-10 m^2/s
  initial: {kind: uniform, region: {x: [0 mm, 0.2 mm]}, amount: 1 nmol}
boundaries:
  x-: {kind: no_flux}
  x+: {kind: robin, transfer_coefficient: 1e-6 m/s, ambient: 0 mol/m^3}
solver: {method: ftcs}
time: {stop: 10 min, step: 1 s, output_every: 60 s}
seed: 1
"""
# (label, scenario file or None for the FTCS cube, in --quick too)
SCENARIOS: list[tuple[str, str | None, bool]] = [
    ("diffusion, FTCS 32³ (compiled stencil)", None, True),
    ("diffusion, Crank–Nicolson slab", "dye_tissue_slab.yaml", False),
    ("noise, forward DDPM phantom (normal generator)", "noise_phantom_linear.yaml", True),
    ("SDE, geometric Brownian motion", "sde_gbm_tumour_cells.yaml", True),
    ("PK, theophylline oral", "theophylline_oral.yaml", False),
    ("DWI, Monte Carlo walkers", "dwi_brain_white_matter.yaml", False),
    ("contrast, extended Tofts", "contrast_brain_tumour_extended_tofts.yaml", False),
    ("bioheat, LITT liver", "bioheat_litt_liver.yaml", False),
]


def fresh(argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Wall and CPU seconds of one child process (``wait4`` gives the child's own rusage)."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, env=env,
                                cwd=tempfile.gettempdir())
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        err.seek(0)
        tail = err.read().decode(errors="replace")[-400:]
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
            "exit": proc.returncode, "stderr": tail}


def stored_seconds(path: Path) -> dict[str, float]:
    try:
        import xarray as xr

        with xr.open_dataset(path) as ds:
            return {k: float(ds.attrs[k]) for k in ("simulate_seconds", "audit_seconds")
                    if k in ds.attrs}
    except Exception:  # a row without the attributes still has its wall time
        return {}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 scenarios, 1 warm run each")
    ap.add_argument("-n", type=int, default=None, help="warm runs per row (default 3)")
    machine.add_out_argument(ap)
    args = ap.parse_args()
    info = machine.announce(quick=args.quick)
    n = args.n or (1 if args.quick else 3)
    exe = shutil.which("medtransport", path=str(Path(sys.executable).parent)) or "medtransport"
    res: dict[str, Any] = {"machine": info, "warm_runs": n, "cli": {}, "runs": []}
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as tmpdir:
        tmp = Path(tmpdir)
        env = {**os.environ}
        for name, argv in (("--help", [exe, "--help"]), ("models", [exe, "models"])):
            fresh(argv, env)  # warm the disk cache
            runs = [fresh(argv, env) for _ in range(max(3, n))]
            res["cli"][name] = {"wall_s": statistics.median(r["wall_s"] for r in runs),
                                "cpu_s": statistics.median(r["cpu_s"] for r in runs)}
            print(f"medtransport {name}: {res['cli'][name]['wall_s']:.2f} s", flush=True)
        cube = tmp / "ftcs_cube.yaml"
        cube.write_text(FTCS_CUBE, encoding="utf-8")
        for k, (label, file, in_quick) in enumerate(SCENARIOS):
            if args.quick and not in_quick:
                continue
            scenario = cube if file is None else EXAMPLES / file
            out = tmp / f"run-{k}.nc"
            argv = [exe, "run", str(scenario), "-o", str(out), "-q"]
            cache = tmp / f"numba-cache-{k}"
            cache.mkdir()
            run_env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
            cold = fresh(argv, run_env)
            if cold["exit"] != 0 or not out.exists():
                res["runs"].append({"scenario": label, "error": cold["stderr"]})
                print(f"{label}: failed: {cold['stderr'][-200:]}", flush=True)
                continue
            cold.update(stored_seconds(out))
            warm_runs = [fresh(argv, run_env) for _ in range(n)]
            warm = {"wall_s": statistics.median(r["wall_s"] for r in warm_runs),
                    "cpu_s": statistics.median(r["cpu_s"] for r in warm_runs),
                    **stored_seconds(out)}
            row = {"scenario": label, "file": file or "(written by bench_cold.py)",
                   "cold": {k2: v for k2, v in cold.items() if k2 != "stderr"},
                   "warm": warm, "compile_wall_s": cold["wall_s"] - warm["wall_s"],
                   "compile_cpu_s": cold["cpu_s"] - warm["cpu_s"]}
            res["runs"].append(row)
            print(f"{label}: cold {cold['wall_s']:.1f} s ({cold['cpu_s']:.1f} CPU), warm "
                  f"{warm['wall_s']:.2f} s ({warm['cpu_s']:.2f} CPU)", flush=True)
    lines = [f"# Rows users pay — {info['date_utc']}", "", machine.header(info), "",
             "## CLI start-up (fresh process, median)", "",
             "| command | wall s | CPU s |", "|---|---:|---:|"]
    lines += [f"| `medtransport {name}` | {r['wall_s']:.2f} | {r['cpu_s']:.2f} |"
              for name, r in res["cli"].items()]
    lines += ["", f"## Whole `medtransport run` path: cold (numba cache cleared) and warm "
                  f"(median of {n})", "",
              "| scenario | cold wall s (CPU s) | warm wall s (CPU s) | compile ≈ cold − warm, "
              "CPU s | warm: simulate + audits s | warm: rest of the run path s |",
              "|---|---:|---:|---:|---:|---:|"]
    for r in res["runs"]:
        if "error" in r:
            lines.append(f"| {r['scenario']} | failed | | | | |")
            continue
        c, w = r["cold"], r["warm"]
        model = w.get("simulate_seconds", float("nan")) + w.get("audit_seconds", float("nan"))
        lines.append(f"| {r['scenario']} | {c['wall_s']:.1f} ({c['cpu_s']:.1f}) | "
                     f"{w['wall_s']:.2f} ({w['cpu_s']:.2f}) | {r['compile_cpu_s']:.1f} | "
                     f"{model:.2f} | {w['wall_s'] - model:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    out_dir = machine.output_dir(args.out)
    stem = "cold-latest-quick" if args.quick else "cold-latest"
    write_atomic(out_dir / f"{stem}.md", text)
    write_atomic(out_dir / f"{stem}.json", json.dumps(res, indent=1, default=str) + "\n")
    print(f"written: {out_dir / stem}.md, .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
