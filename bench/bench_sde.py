"""Benchmark: medtransport's SDE engine against sdeint, torchsde (CPU) and a vectorised numpy
loop, on the same problems, checking that every implementation gives the same moments.

Problems (T = 1, N steps of h = T/N, X₀ fixed, the ensemble's mean and variance at T):

- GBM  dX = λX dt + μX dW, λ = −0.5, μ = 0.3, X₀ = 1 — Euler–Maruyama and the exact
  log-normal transition;
- CIR  dX = κ(θ − X)dt + σ√X dW, κ = 2, θ = 0.04, σ = 0.3, X₀ = 0.04 — Euler–Maruyama with full
  truncation (numpy, ours) or as the library does it, and the exact non-central χ² transition.

Rows: ``medtransport`` (``numerics.sde_ensemble.run_ensemble``, what the ``sde`` plugin runs:
blocks of paths in SIMD on the core counter-based normal stream, the statistics it reports —
mean, variance, their SEs, histogram, quantiles — computed in the kernel, no path array; timed
after a first call that compiles or loads the cache), ``medtransport paths`` (the path engine
``numerics.sde.simulate``, per-path xoshiro streams and ziggurat normals, every path's state
returned), ``numpy loop`` (vectorised over a chunk of 65,536 paths, one step per iteration,
in place, chunk after chunk), ``torchsde`` (``torchsde.sdeint`` with ``method="euler"``,
fixed step, the batch of paths as one tensor), ``sdeint`` (``sdeint.itoEuler``, one path per
call — it takes one state vector, and a batch as one vector would make its noise matrix n×n —
timed on a subset of paths and reported per path-step). Throughput = paths × steps / wall
time. Every row's mean and variance at T are compared with the exact moments in standard errors.

Usage (from the repository root, see bench/README.md):

    bench/.venv-sde/bin/python bench/bench_sde.py --quick           # 10⁴ paths × 100 steps
    bench/.venv-sde/bin/python bench/bench_sde.py --paths 200000    # reduced
    bench/.venv-sde/bin/python bench/bench_sde.py                   # 10⁶ paths × 1000 steps
    bench/.venv-sde/bin/python bench/bench_sde.py --only "cir:exact,medtransport,numpy loop"

Writes ``sde[-quick].{md,json}`` into ``--out`` (default bench/results/local/; atomically) and
prints the table, under the machine header of bench/machine.py.
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "2")

import argparse
import json
import math
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import machine
import numpy as np
from bench_diffusion import LoadMonitor, log, now, reason, write_atomic

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
try:
    import medtransport  # noqa: F401
except ImportError:
    sys.path.insert(0, str(REPO))

SEED = 20261203
GBM = {"lam": -0.5, "mu": 0.3, "x0": 1.0}
CIR = {"kappa": 2.0, "theta": 0.04, "sigma": 0.3, "x0": 0.04}
T = 1.0


def exact_moments(problem: str) -> tuple[float, float]:
    if problem == "gbm":
        lam, mu, x0 = GBM["lam"], GBM["mu"], GBM["x0"]
        return x0 * math.exp(lam * T), x0**2 * math.exp(2 * lam * T) * math.expm1(mu**2 * T)
    k, th, s, x0 = CIR["kappa"], CIR["theta"], CIR["sigma"], CIR["x0"]
    mean = th + (x0 - th) * math.exp(-k * T)
    var = x0 * s**2 / k * (math.exp(-k * T) - math.exp(-2 * k * T)) \
        + th * s**2 / (2 * k) * (1 - math.exp(-k * T)) ** 2
    return mean, var


# ------------------------------------------------------------------------------ implementations

def _sde(problem: str) -> tuple[Any, float]:
    from medtransport.numerics.sde import AffineSDE

    if problem == "gbm":
        return AffineSDE.scalar(0.0, GBM["lam"], c2=GBM["mu"] ** 2), GBM["x0"]
    return AffineSDE.scalar(CIR["kappa"] * CIR["theta"], -CIR["kappa"], c1=CIR["sigma"] ** 2,
                            lower=0.0), CIR["x0"]


def ours(problem: str, scheme: str, n: int, steps: int) -> dict[str, float]:
    """The engine as the sde plugin runs it: statistics computed while the paths run (mean,
    variance with SEs, 60-cell histogram, quantiles) — no path array."""
    from medtransport.numerics.sde_ensemble import run_ensemble

    sde, x0 = _sde(problem)
    hi = 3.0 if problem == "gbm" else 0.2
    res = run_ensemble(sde, x0, T / steps, steps, [steps], n_paths=n, seed=SEED, scheme=scheme,
                       bounds_fix="truncate", edges=(0.0, hi, 60))
    return {"mean": float(res.mean[0]), "variance": float(res.variance[0]),
            "mean_se": float(res.mean_se[0]), "variance_se": float(res.variance_se[0]),
            "n": int(res.alive[0]), "non_finite": int(res.non_finite[0]),
            "min": float(res.minimum[0])}


def ours_paths(problem: str, scheme: str, n: int, steps: int) -> np.ndarray:
    """The path engine (``sde.simulate``: per-path xoshiro streams, ziggurat normals), which
    returns every path's state at the outputs (here only T)."""
    from medtransport.numerics.sde import simulate

    sde, x0 = _sde(problem)
    res = simulate(sde, [x0], T / steps, steps, [steps], n_paths=n, seed=SEED, scheme=scheme,
                   bounds_fix="truncate")
    return res.values[0, :, 0]


#: Paths per chunk of the numpy loop: its arrays (512 KiB each) stay in L2 while a chunk runs
#: all its steps — 7 % faster than the whole 10⁶ paths per step (memory-bound passes).
NUMPY_CHUNK = 65536


def numpy_loop(problem: str, scheme: str, n: int, steps: int) -> np.ndarray:
    """Vectorised over a chunk of paths, one step per iteration, in place; chunk after chunk
    (the same law — only the order of the generator's draws differs)."""
    rng = np.random.default_rng(SEED)
    out = np.empty(n)
    for lo in range(0, n, NUMPY_CHUNK):
        hi = min(n, lo + NUMPY_CHUNK)
        out[lo:hi] = _numpy_chunk(rng, problem, scheme, hi - lo, steps)
    return out


def _numpy_chunk(rng: np.random.Generator, problem: str, scheme: str, n: int, steps: int
                 ) -> np.ndarray:
    h = T / steps
    sq = math.sqrt(h)
    z = np.empty(n)
    if problem == "gbm":
        lam, mu = GBM["lam"], GBM["mu"]
        x = np.full(n, GBM["x0"])
        if scheme == "exact":
            drift = (lam - 0.5 * mu * mu) * h
            for _ in range(steps):
                rng.standard_normal(out=z)
                z *= mu * sq
                z += drift
                np.exp(z, out=z)
                x *= z
            return x
        for _ in range(steps):
            rng.standard_normal(out=z)
            z *= mu * sq
            z += 1.0 + lam * h
            x *= z
        return x
    k, th, s = CIR["kappa"], CIR["theta"], CIR["sigma"]
    x = np.full(n, CIR["x0"])
    if scheme == "exact":
        c = s * s * -math.expm1(-k * h) / (4 * k)
        df = 4 * k * th / (s * s)
        e = math.exp(-k * h)
        for _ in range(steps):
            x = c * rng.noncentral_chisquare(df, x * e / c)
        return x
    xp = np.empty(n)
    for _ in range(steps):  # full truncation (Lord et al. 2010)
        np.maximum(x, 0.0, out=xp)
        rng.standard_normal(out=z)
        z *= np.sqrt(xp) * (s * sq)
        x += k * (th - xp) * h
        x += z
    return np.maximum(x, 0.0)


def torchsde_em(problem: str, scheme: str, n: int, steps: int) -> np.ndarray:
    import torch
    import torchsde

    torch.manual_seed(SEED)
    threads = int(os.environ.get("NUMBA_NUM_THREADS", "2"))
    torch.set_num_threads(threads)

    class SDE(torch.nn.Module):
        noise_type = "diagonal"
        sde_type = "ito"

        def f(self, t: Any, y: Any) -> Any:
            if problem == "gbm":
                return GBM["lam"] * y
            return CIR["kappa"] * (CIR["theta"] - torch.clamp(y, min=0.0))

        def g(self, t: Any, y: Any) -> Any:
            if problem == "gbm":
                return GBM["mu"] * y
            return CIR["sigma"] * torch.sqrt(torch.clamp(y, min=0.0))

    x0 = GBM["x0"] if problem == "gbm" else CIR["x0"]
    y0 = torch.full((n, 1), x0, dtype=torch.float64)
    with torch.no_grad():
        ys = torchsde.sdeint(SDE(), y0, torch.tensor([0.0, T], dtype=torch.float64),
                             method="euler", dt=T / steps)
    return ys[-1, :, 0].numpy()


def sdeint_em(problem: str, scheme: str, n: int, steps: int) -> np.ndarray:
    import sdeint

    tspan = np.linspace(0.0, T, steps + 1)
    rng = np.random.default_rng(SEED)
    if problem == "gbm":
        def f(x: np.ndarray, t: float) -> np.ndarray:
            return GBM["lam"] * x

        def g(x: np.ndarray, t: float) -> np.ndarray:
            return np.array([[GBM["mu"] * x[0]]])
        x0 = np.array([GBM["x0"]])
    else:
        def f(x: np.ndarray, t: float) -> np.ndarray:
            return CIR["kappa"] * (CIR["theta"] - np.maximum(x, 0.0))

        def g(x: np.ndarray, t: float) -> np.ndarray:
            return np.array([[CIR["sigma"] * math.sqrt(max(x[0], 0.0))]])
        x0 = np.array([CIR["x0"]])
    out = np.empty(n)
    for p in range(n):
        dw = rng.standard_normal((steps, 1)) * math.sqrt(T / steps)
        out[p] = sdeint.itoEuler(f, g, x0, tspan, dW=dw)[-1, 0]
    return out


IMPLS: dict[str, Callable[[str, str, int, int], Any]] = {
    "medtransport": ours, "medtransport paths": ours_paths, "numpy loop": numpy_loop,
    "torchsde": torchsde_em, "sdeint": sdeint_em}
SCHEMES = {"medtransport": ("euler_maruyama", "exact"),
           "medtransport paths": ("euler_maruyama", "exact"),
           "numpy loop": ("euler_maruyama", "exact"),
           "torchsde": ("euler_maruyama",), "sdeint": ("euler_maruyama",)}


def measure(name: str, problem: str, scheme: str, n: int, steps: int, monitor: LoadMonitor,
            subset: dict[str, int]) -> dict[str, Any]:
    fn = IMPLS[name]
    paths = min(n, subset.get(name, n))
    row: dict[str, Any] = {"impl": name, "problem": problem, "scheme": scheme, "paths": paths,
                           "steps": steps}
    try:
        if name.startswith("medtransport"):  # compile (or load the cache) outside the timing
            t0 = now()
            fn(problem, scheme, min(n, 1000), 2)
            row["first_call_s"] = now() - t0
        with monitor.section(f"{name} {problem} {scheme}"):
            t0, c0 = now(), time.process_time()
            x = fn(problem, scheme, paths, steps)
            row["seconds"] = now() - t0
            row["cpu_seconds"] = time.process_time() - c0
        row["other_load_cores"] = monitor.sections[f"{name} {problem} {scheme}"]
        row["path_steps_per_s"] = paths * steps / row["seconds"]
        em, ev = exact_moments(problem)
        if isinstance(x, dict):  # statistics computed in the kernel
            m, v = x["mean"], x["variance"]
            row.update(mean=m, variance=v, mean_z=(m - em) / x["mean_se"],
                       variance_z=(v - ev) / x["variance_se"], non_finite=x["non_finite"],
                       min=x["min"])
        else:
            ok = np.isfinite(x)
            xs = x[ok]
            m, v = float(xs.mean()), float(xs.var(ddof=1))
            m4 = float(np.mean((xs - m) ** 4))
            row.update(mean=m, variance=v, mean_z=(m - em) / math.sqrt(v / xs.size),
                       variance_z=(v - ev) / math.sqrt(max(m4 - v * v, 1e-300) / xs.size),
                       non_finite=int((~ok).sum()), min=float(xs.min()))
    except Exception as exc:  # a peer that is missing or fails is reported, the run goes on
        row["error"] = reason(exc)
    log(f"{name:13s} {problem} {scheme:15s} {row.get('seconds', float('nan')):8.3f} s  "
        f"{row.get('error', '')}")
    return row


def render(res: dict[str, Any]) -> str:
    lines = [f"# SDE engine benchmark ({res['paths']} paths × {res['steps']} steps, T = 1)", "",
             f"CPU: {res['cpu']}; Python {res['python']}; threads: {res['threads']}; "
             f"sdeint timed on {res['sdeint_paths']} paths, torchsde on "
             f"{res['torchsde_paths']}; command: `{res['command']}`.", "",
             *([machine.header(res["machine"]), ""] if "machine" in res else []),
             "| problem | scheme | implementation | paths | wall s | path-steps/s | ours ÷ this "
             "| CPU ns per path-step | ours ÷ this (CPU) | mean (z) | variance (z) "
             "| other load (cores) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    best = {(r["problem"], r["scheme"]): r["path_steps_per_s"] for r in res["rows"]
            if r["impl"] == "medtransport" and "path_steps_per_s" in r}
    em_ours = {r["problem"]: r["path_steps_per_s"] for r in res["rows"]
               if r["impl"] == "medtransport" and r["scheme"] == "euler_maruyama"
               and "path_steps_per_s" in r}

    def cpu_ns(r: dict[str, Any]) -> float:
        return 1e9 * r.get("cpu_seconds", math.nan) / (r["paths"] * r["steps"])
    cpu_best = {(r["problem"], r["scheme"]): cpu_ns(r) for r in res["rows"]
                if r["impl"] == "medtransport" and "path_steps_per_s" in r}
    cpu_em = {r["problem"]: cpu_ns(r) for r in res["rows"] if r["impl"] == "medtransport"
              and r["scheme"] == "euler_maruyama" and "path_steps_per_s" in r}
    for r in res["rows"]:
        if "error" in r:
            lines.append(f"| {r['problem']} | {r['scheme']} | {r['impl']} | | unavailable: "
                         f"{r['error']} | | | | | | | |")
            continue
        ref = best.get((r["problem"], r["scheme"])) or em_ours.get(r["problem"])
        ratio = ref / r["path_steps_per_s"] if ref else float("nan")
        load = r.get("other_load_cores")
        cref = cpu_best.get((r["problem"], r["scheme"])) or cpu_em.get(r["problem"])
        cratio = cpu_ns(r) / cref if cref else float("nan")
        lines.append(
            f"| {r['problem']} | {r['scheme']} | {r['impl']} | {r['paths']} | {r['seconds']:.3f}"
            f" | {r['path_steps_per_s']:.3g} | {ratio:.1f}× | {cpu_ns(r):.3g} | {cratio:.1f}× "
            f"| {r['mean']:.6g} "
            f"({r['mean_z']:+.1f}) | {r['variance']:.4g} ({r['variance_z']:+.1f}) | "
            f"{'' if load is None else f'{load:.2f}'} |")
    lines += ["", "z: (estimate − exact)/SE at T (EM's weak bias at h = 1/N included); "
              "'ours ÷ this' compares with medtransport's same scheme (EM rows of the peers "
              "against our EM). CPU: process CPU time (all threads) per path-step — less "
              "sensitive than wall time to other processes' load."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="10⁴ paths × 100 steps")
    ap.add_argument("--paths", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--sdeint-paths", type=int, default=None,
                    help="paths sdeint runs (one call each); default min(paths, 500)")
    ap.add_argument("--torchsde-paths", type=int, default=None,
                    help="paths in torchsde's batch (default: all; its time per step grows "
                         "faster than the batch here, so a subset keeps a run in minutes)")
    ap.add_argument("--only", default=None, metavar="PROBLEM:SCHEME[,IMPL...]",
                    help="one row pair to iterate on, e.g. 'cir:exact' (every implementation "
                         "with that scheme) or 'cir:exact,medtransport,numpy loop'; the "
                         "result goes to sde-only-PROBLEM-SCHEME.{md,json}")
    machine.add_out_argument(ap)
    args = ap.parse_args(argv)
    only: tuple[str, str, tuple[str, ...]] | None = None
    if args.only:
        head, *impls = [p.strip() for p in args.only.split(",")]
        problem, _, scheme = head.partition(":")
        bad = [i for i in impls if i not in IMPLS]
        if problem not in ("gbm", "cir") or scheme not in ("euler_maruyama", "exact") or bad:
            ap.error(f"--only: expected PROBLEM:SCHEME with PROBLEM gbm or cir, SCHEME "
                     f"euler_maruyama or exact, then implementations among {list(IMPLS)}; "
                     f"got {args.only!r}")
        only = (problem, scheme, tuple(impls) or tuple(IMPLS))
    info = machine.announce(quick=args.quick)
    n = args.paths or (10_000 if args.quick else 1_000_000)
    steps = args.steps or (100 if args.quick else 1000)
    sdeint_paths = args.sdeint_paths or min(n, 200 if args.quick else 500)
    subset = {"sdeint": sdeint_paths, "torchsde": args.torchsde_paths or n}
    monitor = LoadMonitor()
    rows = []
    for problem in ("gbm", "cir"):
        for name in IMPLS:
            for scheme in SCHEMES[name]:
                if only and ((problem, scheme) != only[:2] or name not in only[2]):
                    continue
                rows.append(measure(name, problem, scheme, n, steps, monitor, subset))
    res = {"paths": n, "steps": steps, "sdeint_paths": sdeint_paths,
           "torchsde_paths": subset["torchsde"], "cpu": machine.cpu_model(),
           "python": platform.python_version(),
           "threads": os.environ.get("NUMBA_NUM_THREADS"), "rows": rows,
           "command": " ".join([Path(sys.executable).name, *sys.argv]),
           "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": info}
    text = render(res)
    print(text)
    stem = "sde-quick" if args.quick else "sde"
    if only:
        stem += f"-only-{only[0]}-{only[1]}"
    out = machine.output_dir(args.out)
    write_atomic(out / f"{stem}.md", text)
    write_atomic(out / f"{stem}.json", json.dumps(res, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
