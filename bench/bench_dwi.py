"""Benchmark: Monte Carlo diffusion MRI in a sphere — medtransport vs dmipy-sim vs numpy.

Issue 6: 10⁵ walkers × 1000 steps in a sphere (R = 5 µm, D = 2 µm²/ms), PGSE δ = 10 ms,
Δ = 30 ms, b = 1000 s/mm², gradient along x. For each engine: wall time of the walk, walker-steps
per second, the signal and its standard error, and its distance from the exact matrix-formalism
value in standard errors. Ours is also run on 1 and on all threads to show the results are
bit-identical whatever the thread count.

dmipy-sim (JAX, CPU) needs its own environment: it runs in ``bench/.venv-dwi`` as a subprocess
(``python3 -m venv bench/.venv-dwi && bench/.venv-dwi/bin/pip install -r
bench/requirements-dwi.txt``); the versions of dmipy-sim, jax and jaxlib it ran with are recorded
with the results; its time is taken
inside that process around ``simulate`` only (JAX import excluded; the first call includes XLA
compilation, so it is run twice and both are reported, the second as "warm").

Run (from the repository root)::

    python bench/bench_dwi.py [--walkers 100000] [--steps 1000] [--repeats 2] [--quick]
        [--out bench/results]   # the committed results are replaced only with --out

The machine is shared with other jobs: runs are interleaved (ours, numpy, dmipy-sim, ours, …)
and the best time of each is reported.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import machine
import numba
import numpy as np
from bench_diffusion import write_atomic

from medtransport.numerics.reflecting_walk import PoreWalk, walk_in_pore
from medtransport_dwi.matrix_formalism import restricted
from medtransport_dwi.sequence import GAMMA, pgse_b_value, pgse_shape

ROOT = Path(__file__).resolve().parent
RADIUS, D, DELTA, SEP, B = 5e-6, 2e-9, 10e-3, 30e-3, 1e9
G = math.sqrt(B / pgse_b_value(1.0, DELTA, SEP))


def ours(walkers: int, steps: int, seed: int) -> dict[str, float]:
    dt = (SEP + DELTA) / steps
    shape = pgse_shape(DELTA, SEP)
    weights = shape.trapezoid_weights(dt, steps)[None, :]
    spec = PoreWalk("sphere", D, dt, steps, size=RADIUS)
    t0 = time.perf_counter()
    res = walk_in_pore(spec, walkers, seed, weights)
    phase = GAMMA * G * res.integrals[:, 0, 0]
    c = np.cos(phase)
    elapsed = time.perf_counter() - t0
    return {"seconds": elapsed, "signal": float(c.mean()),
            "se": float(c.std(ddof=1) / math.sqrt(walkers)),
            "imag": float(-np.sin(phase).mean()),
            "checksum": float(np.sum(res.integrals))}


def numpy_walk(walkers: int, steps: int, seed: int) -> dict[str, float]:
    """A plain vectorized numpy walk: Gaussian steps, specular reflection at the sphere."""
    rng = np.random.default_rng(seed)
    dt = (SEP + DELTA) / steps
    sigma = math.sqrt(2 * D * dt)
    f = pgse_shape(DELTA, SEP).trapezoid_weights(dt, steps)
    t0 = time.perf_counter()
    x = rng.uniform(-RADIUS, RADIUS, (walkers * 2, 3))
    x = x[np.einsum("ij,ij->i", x, x) <= RADIUS ** 2][:walkers]
    integral = f[0] * x[:, 0].copy()
    for k in range(steps):
        d = rng.standard_normal((walkers, 3)) * sigma
        for _ in range(100):
            end = x + d
            out = np.einsum("ij,ij->i", end, end) > RADIUS ** 2
            if not out.any():
                break
            xo, do = x[out], d[out]
            a = np.einsum("ij,ij->i", do, do)
            b = np.einsum("ij,ij->i", xo, do)
            c = np.einsum("ij,ij->i", xo, xo) - RADIUS ** 2
            t = (-b + np.sqrt(b * b - a * c)) / a
            hit = xo + t[:, None] * do
            n = hit / RADIUS
            rest = (1 - t)[:, None] * do
            rest -= 2 * np.einsum("ij,ij->i", rest, n)[:, None] * n
            x[out] = hit
            d[out] = rest
        x += d
        integral += f[k + 1] * x[:, 0]
    phase = GAMMA * G * integral
    c = np.cos(phase)
    elapsed = time.perf_counter() - t0
    return {"seconds": elapsed, "signal": float(c.mean()),
            "se": float(c.std(ddof=1) / math.sqrt(walkers)),
            "imag": float(-np.sin(phase).mean())}


DMIPY_SCRIPT = textwrap.dedent("""
    import json, math, sys, time
    import numpy as np
    import dmipy_sim as ds
    walkers, steps, seed, g = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), \\
        float(sys.argv[4])
    # A second measurement at twice the gradient gives the standard error without per-walker
    # output (dmipy-sim 2.1's return_walker_signals fails): Var(cos φ) = (1 + E(2q))/2 − E(q)².
    wf = ds.pgse({delta}, {sep}, np.array([g, 2 * g]),
                 np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]), steps + 1, slew_rate=np.inf)
    wf = ds.set_b(wf, np.array([{b}, 4 * {b}]))
    geo = ds.Sphere({radius})
    out = []
    for run in range(2):
        t0 = time.perf_counter()
        s = np.asarray(ds.simulate(walkers, diffusivity={d}, waveform=wf, geometry=geo,
                                   seed=seed + run, require_gpu=False), dtype=float)
        var = max(0.0, 0.5 * (1.0 + s[1]) - s[0] ** 2)
        out.append({{"seconds": time.perf_counter() - t0, "signal": float(s[0]),
                    "se": math.sqrt(var / walkers)}})
    import dmipy_sim
    from importlib.metadata import version
    import jax
    print(json.dumps({{"runs": out, "version": getattr(dmipy_sim, "__version__", "?"),
                      "versions": {{p: version(p) for p in ("dmipy-sim", "jax", "jaxlib")}},
                      "jax_backend": jax.default_backend(),
                      "b": float(ds.calc_b(wf)[0])}}))
""").format(delta=DELTA, sep=SEP, b=B, radius=RADIUS, d=D)


def dmipy(walkers: int, steps: int, seed: int, python: Path) -> dict[str, object]:
    proc = subprocess.run([str(python), "-c", DMIPY_SCRIPT, str(walkers), str(steps),
                           str(seed), repr(G)], capture_output=True, text=True, timeout=3600,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"})
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--walkers", type=int, default=100_000)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="10⁴ walkers, one repeat")
    ap.add_argument("--dmipy-python", default=str(ROOT / ".venv-dwi" / "bin" / "python"))
    machine.add_out_argument(ap)
    args = ap.parse_args()
    info = machine.announce(quick=args.quick)
    if args.quick:
        args.walkers, args.repeats = 10_000, 1
    n, steps = args.walkers, args.steps
    work = n * steps
    exact = float(restricted("sphere", RADIUS, D, pgse_shape(DELTA, SEP), np.array([G]))[0].real)
    dmipy_python = Path(args.dmipy_python)
    have_dmipy = dmipy_python.exists()

    ours(1000, 10, 1)  # compile (or load the cache) outside the timing
    threads = numba.get_num_threads()
    results: dict[str, list[dict[str, object]]] = {"ours": [], "numpy": [], "dmipy-sim": [],
                                                   "dmipy-sim (warm)": []}
    dmipy_versions: dict[str, object] = {}
    for r in range(args.repeats):
        results["ours"].append(ours(n, steps, 1234))
        results["numpy"].append(numpy_walk(n, steps, 1234 + r))
        if have_dmipy:
            d = dmipy(n, steps, 1234 + r, dmipy_python)
            if "error" in d:
                results["dmipy-sim"].append({"error": d["error"]})
            else:
                results["dmipy-sim"].append(d["runs"][0])  # type: ignore[index]
                dmipy_versions = {"versions": d.get("versions"), "backend": d.get("jax_backend")}
                results["dmipy-sim (warm)"].append(d["runs"][1])  # type: ignore[index]
    # the same seed on one thread: bit-identical?
    numba.set_num_threads(1)
    single = ours(n, steps, 1234)
    numba.set_num_threads(threads)
    identical = single["checksum"] == results["ours"][0]["checksum"] and \
        single["signal"] == results["ours"][0]["signal"]

    rows = []
    best_ours = min(float(x["seconds"]) for x in results["ours"])  # type: ignore[arg-type]
    for name, runs in results.items():
        ok = [x for x in runs if "seconds" in x]
        if not ok:
            if runs:
                rows.append({"engine": name, "error": runs[0].get("error")})
            continue
        best = min(ok, key=lambda x: float(x["seconds"]))  # type: ignore[arg-type]
        sec = float(best["seconds"])  # type: ignore[arg-type]
        sig, se = float(best["signal"]), float(best["se"])  # type: ignore[arg-type]
        rows.append({"engine": name, "seconds": sec, "walker_steps_per_s": work / sec,
                     "signal": sig, "se": se, "z_vs_exact": (sig - exact) / se,
                     "ours_speedup": sec / best_ours})
    rows.append({"engine": "ours, 1 thread", "seconds": single["seconds"],
                 "walker_steps_per_s": work / single["seconds"], "signal": single["signal"],
                 "se": single["se"], "z_vs_exact": (single["signal"] - exact) / single["se"],
                 "ours_speedup": single["seconds"] / best_ours})

    lines = [
        "# dwi Monte Carlo benchmark (issue 6)",
        f"sphere R = 5 um, D = 2 um^2/ms, PGSE delta = 10 ms, Delta = 30 ms, b = 1000 s/mm^2; "
        f"{n} walkers x {steps} steps = {work:.3g} walker-steps",
        f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}, numba {numba.__version__} ({threads} threads) — "
        "SHARED with other jobs; best of interleaved repeats "
        f"({args.repeats} each)",
        f"exact (matrix formalism): E = {exact:.6f}",
        "", machine.header(info), "",
        f"{'engine':<20} {'seconds':>9} {'Mwalker-steps/s':>16} {'signal':>9} {'SE':>9} "
        f"{'z vs exact':>10} {'time / ours':>11}",
    ]
    for row in rows:
        if "error" in row:
            lines.append(f"{row['engine']:<20} error: {row['error']}")
            continue
        lines.append(f"{row['engine']:<20} {row['seconds']:9.2f} "
                     f"{row['walker_steps_per_s'] / 1e6:16.2f} {row['signal']:9.5f} "
                     f"{row['se']:9.5f} {row['z_vs_exact']:10.2f} {row['ours_speedup']:11.1f}")
    lines += ["", f"same seed on 1 thread and {threads} threads bit-identical: {identical}"]
    if not have_dmipy:
        lines.append("dmipy-sim not run: no interpreter at the --dmipy-python path "
                     "(see bench/README.md for its environment)")
    elif dmipy_versions:
        v = dmipy_versions.get("versions") or {}
        lines.append("dmipy-sim (JAX) versions: " + ", ".join(
            f"{k} {val}" for k, val in v.items()) + f"; JAX backend {dmipy_versions['backend']}")
    text = "\n".join(lines)
    print(text)
    suffix = "-quick" if args.quick else "-latest"
    out = machine.output_dir(args.out)
    write_atomic(out / f"dwi{suffix}.txt", text + "\n")
    write_atomic(out / f"dwi{suffix}.json", json.dumps(
        {"walkers": n, "steps": steps, "exact": exact, "threads": threads,
         "bit_identical_across_threads": identical, "rows": rows, "raw": results,
         "dmipy": dmipy_versions, "machine": info}, indent=2, default=str) + "\n")


if __name__ == "__main__":
    sys.exit(main())
