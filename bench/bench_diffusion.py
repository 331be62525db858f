#!/usr/bin/env python
"""Benchmark medtransport's diffusion solvers against peers, side by side, in one run.

    bench/.venv/bin/python bench/bench_diffusion.py --out bench/results  # full run (20-30 min)
    bench/.venv/bin/python bench/bench_diffusion.py --quick    # smoke run (about 1-2 min)
    bench/.venv/bin/python bench/bench_diffusion.py --sections explicit  # FTCS rows only, ~5 min

The problem: ∂u/∂t = D∇²u on the unit square/cube, D = 1, no flux through any wall, cell-centred
finite volumes of equal spacing h (every solver here uses the same 5-/7-point stencil).

1. Memory bandwidth: copy and add of large arrays (numpy, one thread; numba, all threads),
   converted to the cell-update bound of a stencil moving 16 B per update (one step: one read +
   one write) or 8 B (issue 23's yardstick; our kernel, which moves each cell once per 4 steps
   in 3-D, moves 4 B).
2. Explicit methods at the same stable step r = D·Δt/h² = 0.9 · 1/(2d), same end time, from the
   same off-centre Gaussian: medtransport FTCS (compiled), py-pde (numba backend, explicit
   Euler, fixed step; cold = first solve incl. JIT, warm = a second ``solve()``, stepper = its
   compiled stepper called again), and a plain numpy FTCS loop.
3. Implicit methods at equal accuracy: the single no-flux cosine mode u0 = 1 + Π cos(π x_i)
   decays as exp(−d π² D t) (exact for the continuous problem). FiPy (its default: backward
   Euler, default solver) runs at a few step counts; medtransport's Crank–Nicolson runs at the
   fewest steps that reach the same (or a smaller) error; medtransport backward Euler runs at
   FiPy's step counts (the same scheme: a cross-check of the errors). Each implicit solver runs
   in a child process, so a sparse factorization that takes too long can be stopped.
4. Audit overhead: Σ w·u over every output state plus the ledger residual check, relative to
   the simulate time of the same FTCS run.
5. ``medtransport models`` start-up time (median of 5) and ``import medtransport``.

Writes a markdown table to stdout and to latest.md in ``--out`` (default bench/results/local/;
the committed bench/results/ only when named), and the raw numbers to latest.json (each written
to a temporary file, then renamed); the header comes from bench/machine.py.
"""

from __future__ import annotations

import os

# Threads for every numba kernel here (ours, py-pde's, the bandwidth probe); set before numba
# is imported. OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are left as the environment has them.
os.environ.setdefault("NUMBA_NUM_THREADS", "2")

import argparse
import json
import math
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import machine
import numpy as np

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"

try:  # an editable install is preferred; fall back to the checkout this script lives in
    import medtransport  # noqa: F401
except ImportError:
    sys.path.insert(0, str(REPO))

D = 1.0
R_FRACTION = 0.9  # r = 0.9 × 1/(2d)
# Bytes a cell-update moves to and from memory: 16 for one step (one read + one write of a
# float64); our kernel's temporal blocking moves each cell once per several steps (3-D grids:
# ftcs.DEPTH steps, 4 B per update at depth 4; 2-D grids: fused pairs, 8 B). Issue 23's goal is
# stated against the 8 B bound.
BYTES_PER_UPDATE = (8, 16)

# name: (cells, explicit steps in the full run, explicit steps in --quick)
EXPLICIT_CASES_FULL = {
    "2-D 256²": ((256, 256), 10000),
    "3-D 64³": ((64, 64, 64), 2000),
    "3-D 128³": ((128, 128, 128), 400),
    "3-D 256³": ((256, 256, 256), 40),
}
EXPLICIT_CASES_QUICK = {
    "2-D 64²": ((64, 64), 200),
    "3-D 32³": ((32, 32, 32), 100),
}
# name: (cells, FiPy step counts)
IMPLICIT_CASES_FULL = {
    "2-D 256²": ((256, 256), [4, 16, 64]),
    "3-D 32³": ((32, 32, 32), [4, 16, 64]),
    "3-D 64³": ((64, 64, 64), [4, 16]),
}
IMPLICIT_CASES_QUICK = {
    "2-D 64²": ((64, 64), [4, 16]),
    "3-D 16³": ((16, 16, 16), [4]),
}


def now() -> float:
    return time.perf_counter()


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:200]


# ------------------------------------------------------------------- other processes' load


def _busy_cpu_s() -> float | None:
    """CPU seconds all processes on the machine have been busy (Linux /proc/stat)."""
    try:
        with open("/proc/stat") as f:
            vals = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    return (sum(vals) - vals[3] - vals[4]) / os.sysconf("SC_CLK_TCK")  # minus idle, iowait


def _own_cpu_s() -> float:
    t = os.times()  # children: the worker processes, once waited for
    return t.user + t.system + t.children_user + t.children_system


class LoadMonitor:
    """How many cores other processes kept busy on average during a section of the run: on a
    2-core machine anything above ~0.1 disturbs the timings."""

    def __init__(self) -> None:
        self.sections: dict[str, float | None] = {}

    def section(self, name: str) -> LoadMonitor:
        self._name = name
        return self

    def __enter__(self) -> None:
        self._t, self._busy, self._own = now(), _busy_cpu_s(), _own_cpu_s()

    def __exit__(self, *exc: object) -> None:
        busy = _busy_cpu_s()
        wall = now() - self._t
        if busy is None or self._busy is None or wall <= 0:
            self.sections[self._name] = None
        else:
            other = (busy - self._busy) - (_own_cpu_s() - self._own)
            self.sections[self._name] = max(other, 0.0) / wall


# --------------------------------------------------------------------------------- fields


def centers(cells: tuple[int, ...]) -> list[np.ndarray]:
    """Cell centres of the unit box, one open mesh per axis (C order, x slowest)."""
    grids = []
    for axis, n in enumerate(cells):
        shape = [1] * len(cells)
        shape[axis] = n
        grids.append(((np.arange(n) + 0.5) / n).reshape(shape))
    return grids


def gaussian_field(cells: tuple[int, ...]) -> np.ndarray:
    """An off-centre Gaussian (σ = 0.1) on the unit box."""
    c = (0.4, 0.55, 0.45)[: len(cells)]
    r2 = sum((x - ci) ** 2 for x, ci in zip(centers(cells), c, strict=True))
    return np.ascontiguousarray(np.broadcast_to(np.exp(-r2 / (2 * 0.1**2)), cells))


def cosine_mode(cells: tuple[int, ...]) -> np.ndarray:
    """1 + Π cos(π x_i): a no-flux eigenfunction of the continuous and the discrete operator."""
    m = np.ones(cells)
    for x in centers(cells):
        m = m * np.cos(np.pi * x)
    return 1.0 + m


def mode_end_time(d: int) -> float:
    """The time at which the cosine mode has decayed by 1/e."""
    return 1.0 / (d * np.pi**2 * D)


def explicit_dt(cells: tuple[int, ...]) -> float:
    h = 1.0 / cells[0]
    return R_FRACTION * h * h / (2 * len(cells) * D)


def mass_drift(u0: np.ndarray, u: np.ndarray) -> float:
    s0 = float(np.sum(u0))
    return abs(float(np.sum(u)) - s0) / abs(s0)


# ------------------------------------------------------------------------------ environment


def environment() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": machine.cpu_model(),
        "cores": os.cpu_count(),
        "numpy": np.__version__,
        "env": {k: os.environ.get(k) for k in ("NUMBA_NUM_THREADS", "OPENBLAS_CORETYPE",
                                              "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS",
                                              "OPENBLAS_NUM_THREADS")},
        "versions": {},
    }
    for mod in ("scipy", "numba", "pde", "fipy", "medtransport"):
        try:
            m = __import__(mod)
            info["versions"][mod] = getattr(m, "__version__", "?")
        except Exception as exc:  # reported, never fatal
            info["versions"][mod] = f"unavailable: {reason(exc)}"
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [{k: p.get(k) for k in ("internal_api", "version", "num_threads",
                                                "architecture", "threading_layer")}
                        for p in threadpool_info()]
    except Exception as exc:
        info["blas"] = f"unavailable: {reason(exc)}"
    try:
        import numba

        info["numba_threads"] = numba.config.NUMBA_NUM_THREADS
        info["numba_threading_layer"] = numba.config.THREADING_LAYER
    except Exception as exc:
        info["numba_threads"] = f"unavailable: {reason(exc)}"
    return info


# -------------------------------------------------------------------------------- bandwidth


def bandwidth(quick: bool) -> dict[str, Any]:
    """Copy (2 arrays' traffic) and add (3 arrays') on 256 MB arrays, numpy and numba.

    Counted traffic is what the program asks for (read + write); write-allocate traffic the
    hardware may add is not counted, as in STREAM.
    """
    mb = 64 if quick else 256
    n = mb * 2**20 // 8
    reps = 2 if quick else 5  # → full run: copy 5 × 512 MB, add 5 × 768 MB, per backend
    a = np.random.default_rng(0).random(n)
    b = np.random.default_rng(1).random(n)
    c = np.empty(n)
    out: dict[str, Any] = {"array_MB": mb, "repeats": reps}

    def measure(fn, nbytes: int) -> dict[str, float]:
        fn()  # warm-up: page faults, JIT
        times = []
        for _ in range(reps):
            t = now()
            fn()
            times.append(now() - t)
        return {"GBps_best": nbytes / min(times) / 1e9,
                "GBps_median": nbytes / statistics.median(times) / 1e9,
                "traffic_GB": nbytes * reps / 1e9}

    out["numpy copy (1 thread)"] = measure(lambda: np.copyto(c, a), 2 * 8 * n)
    out["numpy add (1 thread)"] = measure(lambda: np.add(a, b, out=c), 3 * 8 * n)
    try:
        import numba

        @numba.njit(parallel=True, cache=False)
        def pcopy(dst, src):  # pragma: no cover - compiled
            for i in numba.prange(src.size):
                dst[i] = src[i]

        @numba.njit(parallel=True, cache=False)
        def padd(dst, x, y):  # pragma: no cover - compiled
            for i in numba.prange(x.size):
                dst[i] = x[i] + y[i]

        threads = numba.get_num_threads()
        out[f"numba copy ({threads} threads)"] = measure(lambda: pcopy(c, a), 2 * 8 * n)
        out[f"numba add ({threads} threads)"] = measure(lambda: padd(c, a, b), 3 * 8 * n)
    except Exception as exc:
        out["numba"] = f"unavailable: {reason(exc)}"
    best = max(v["GBps_median"] for v in out.values() if isinstance(v, dict))
    out["bound_GBps"] = best
    for nb in BYTES_PER_UPDATE:
        out[f"bound_updates_per_s_{nb}B"] = best * 1e9 / nb
    return out


# ------------------------------------------------------------------------ explicit: solvers


def ours_problem(cells: tuple[int, ...]):
    from medtransport.boundary import BoundaryCondition
    from medtransport.domain import Grid
    from medtransport.numerics.finite_volume import DiffusionProblem

    d = len(cells)
    grid = Grid("cartesian", lower=(0.0,) * d, upper=(1.0,) * d, cells=tuple(cells))
    bcs = {f: BoundaryCondition(f, "no_flux") for f in grid.faces}
    return grid, DiffusionProblem(grid, diffusivity=D, boundaries=bcs)


def numpy_ftcs(u0: np.ndarray, r: float, n_steps: int) -> np.ndarray:
    """Plain numpy FTCS with no-flux walls, in flux form: each interior face difference is
    added to one cell and subtracted from the other (in-place slices, preallocated buffers)."""
    u = u0.copy()
    lap = np.empty_like(u)
    d = u.ndim
    lo = [tuple(slice(0, -1) if a == ax else slice(None) for a in range(d)) for ax in range(d)]
    hi = [tuple(slice(1, None) if a == ax else slice(None) for a in range(d)) for ax in range(d)]
    flux = [np.empty(u[lo[ax]].shape) for ax in range(d)]
    for _ in range(n_steps):
        lap.fill(0.0)
        for ax in range(d):
            f = flux[ax]
            np.subtract(u[hi[ax]], u[lo[ax]], out=f)
            lap[lo[ax]] += f
            lap[hi[ax]] -= f
        lap *= r
        u += lap
    return u


def kernel_alone(cells: tuple[int, ...], u0: np.ndarray, r: float, n_steps: int, count: int,
                 repeats: int) -> tuple[list[float], np.ndarray]:
    """Our compiled kernel called directly (no flux walls: no boundary terms) on ``count``
    threads, as ``solve`` calls it; median of ``repeats``."""
    from medtransport.numerics import finite_volume as fv
    from medtransport.numerics import threads
    from medtransport.numerics.ftcs import ftcs_steps

    shape = (1,) * (3 - len(cells)) + tuple(cells)
    coef = np.zeros(3)
    coef[3 - len(cells):] = r
    periodic = np.zeros(3, dtype=np.int64)
    zeros = np.zeros(6)
    fuse = math.prod(cells) >= fv._FUSE_CELLS
    u = np.ascontiguousarray(u0.reshape(shape))
    a, b = u.copy(), np.empty_like(u)
    times = []
    with threads.limited(count, blas=False):
        ftcs_steps(a, b, 2, coef, periodic, zeros, zeros, np.zeros(6), fuse, count)  # warm
        for _ in range(repeats):
            a[...] = u
            t = now()
            in_b = ftcs_steps(a, b, n_steps, coef, periodic, zeros, zeros, np.zeros(6), fuse,
                              count)
            times.append(now() - t)
    return times, (b if in_b else a).reshape(u0.shape).copy()


def ftcs_compile() -> dict[str, Any]:
    """What a user's first FTCS run pays: a child process solving a small 3-D problem with
    an empty numba cache (a full compile) and again with the cache it left (a cache load)."""
    code = ("import time; t = time.perf_counter();"
            "from medtransport.boundary import BoundaryCondition;"
            "from medtransport.domain import Grid;"
            "from medtransport.numerics.finite_volume import DiffusionProblem, solve;"
            "import numpy as np;"
            "g = Grid('cartesian', (0.0,) * 3, (1.0,) * 3, (72, 72, 72));"
            "p = DiffusionProblem(g, 1.0, {'x-': BoundaryCondition('x-', 'dirichlet', value=1.0)});"
            "solve(p, np.zeros(g.cells), 1e-5, 4, output_every=4, method='ftcs');"
            "print(time.perf_counter() - t)")
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        for label in ("empty cache (compile)", "warm cache (load)"):
            t = now()
            p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                               text=True)
            wall = now() - t
            if p.returncode != 0:
                out[label] = {"status": reason(RuntimeError(p.stderr.strip()[-200:]))}
            else:
                out[label] = {"first_solve_s": float(p.stdout.split()[-1]), "process_s": wall}
    return out


def run_explicit_case(name: str, cells: tuple[int, ...], n_steps: int, repeats: int,
                      skip_numpy: bool) -> dict[str, Any]:
    d = len(cells)
    dt = explicit_dt(cells)
    r = D * dt * cells[0] ** 2
    n_cells = math.prod(cells)
    u0 = gaussian_field(cells)
    case: dict[str, Any] = {"case": name, "cells": list(cells), "steps": n_steps, "dt": dt,
                            "r": r, "r_limit": 1 / (2 * d), "end_time": n_steps * dt,
                            "rows": []}
    ref: np.ndarray | None = None

    def row(solver: str, variant: str, times: list[float] | None, steps: int | None,
            final: np.ndarray | None, note: str = "", status: str = "ok",
            bytes_per_update: int = 16) -> dict[str, Any]:
        nonlocal ref
        out: dict[str, Any] = {"solver": solver, "variant": variant, "status": status,
                               "note": note, "bytes_per_update": bytes_per_update}
        if times:
            t = statistics.median(times)
            out.update(time_s=t, times_s=times, steps=steps,
                       updates_per_s=n_cells * steps / t)
        if final is not None:
            out["mass_drift"] = mass_drift(u0, final)
            out["max_abs_diff_vs_ours"] = (None if ref is None else
                                           float(np.max(np.abs(final - ref)) / np.max(u0)))
        case["rows"].append(out)
        log(f"  {name} {solver} {variant}: {out.get('time_s', status)}")
        return out

    # medtransport FTCS (compiled kernel)
    try:
        from medtransport.numerics.finite_volume import ftcs_stability, solve

        _, problem = ours_problem(cells)
        stab = ftcs_stability(problem, dt)
        case["ours_stability"] = stab.describe()
        t = now()
        sol = solve(problem, u0, dt, n_steps, output_every=n_steps, method="ftcs")
        cold = now() - t
        ref = sol.states[-1].copy()
        from medtransport.numerics import finite_volume as fv
        from medtransport.numerics import ftcs, threads

        fused = n_cells >= fv._FUSE_CELLS and n_steps >= 2
        depth = (ftcs.DEPTH if d == 3 else 2) if fused else 1
        ours_bytes = 16 // depth
        chosen = threads.choose(n_cells, fv._SERIAL_CELLS)
        note = ("compiled kernel" if getattr(sol, "compiled", True) else
                "NOT the compiled kernel") + (f", {depth} steps per pass" if fused
                                              else ", single steps")
        row("medtransport FTCS", "cold (first call: numba cache load/JIT)", [cold], n_steps,
            ref, note, bytes_per_update=ours_bytes)
        warm = []
        for _ in range(repeats):
            t = now()
            sol = solve(problem, u0, dt, n_steps, output_every=n_steps, method="ftcs")
            warm.append(now() - t)
        row("medtransport FTCS", f"warm (median of {repeats})", warm, n_steps, sol.states[-1],
            f"{note}; {chosen} thread(s) chosen (auto)", bytes_per_update=ours_bytes)
        # the kernel alone (no solve() around it) on 1 and 2 threads: the scaling, and what
        # the ledger bookkeeping of solve() costs
        for count in (1, 2):
            try:
                times, final = kernel_alone(cells, u0, r, n_steps, count, repeats)
                row("medtransport FTCS kernel", f"{count} thread(s), median of {repeats}",
                    times, n_steps, final, "ftcs_steps on preallocated buffers",
                    bytes_per_update=ours_bytes)
            except Exception as exc:
                row("medtransport FTCS kernel", f"{count} thread(s)", None, None, None,
                    status=f"unavailable: {reason(exc)}")
    except Exception as exc:
        row("medtransport FTCS", "", None, None, None, status=f"unavailable: {reason(exc)}")

    # py-pde, numba backend, explicit Euler with a fixed step
    try:
        import pde
        from pde.solvers import EulerSolver

        pgrid = pde.CartesianGrid([[0.0, 1.0]] * d, list(cells), periodic=False)
        state = pde.ScalarField(pgrid, u0.copy())
        eq = pde.DiffusionPDE(diffusivity=D, bc={"derivative": 0})
        t_end = n_steps * dt
        for variant in ("cold (first solve, incl. JIT)", "warm (second solve())"):
            t = now()
            res, info = eq.solve(state, t_range=t_end, dt=dt, solver="euler", adaptive=False,
                                 backend="numba", tracker=None, ret_info=True)
            el = now() - t
            steps = int(info.get("steps", n_steps))
            row("py-pde (numba)", variant, [el], steps, res.data,
                f"{info.get('class')}, dt_adaptive={info.get('dt_adaptive')}, "
                f"backend={info.get('backend', {}).get('name')}")
        solver = EulerSolver(eq, backend="numba", adaptive=False)
        stepper = solver.make_stepper(state, dt)
        field = state.copy()
        stepper(field, 0.0, t_end)  # ensure it is compiled
        times = []
        for _ in range(repeats):
            field = state.copy()
            t = now()
            stepper(field, 0.0, t_end)
            times.append(now() - t)
        row("py-pde (numba)", f"stepper reused (median of {repeats})", times, steps,
            field.data, "compiled stepper called again: py-pde's kernel alone")
    except Exception as exc:
        row("py-pde (numba)", "", None, None, None, status=f"unavailable: {reason(exc)}")

    # plain numpy loop
    if skip_numpy:
        row("numpy loop", "", None, None, None, status="skipped")
    else:
        numpy_ftcs(u0, r, 2)  # warm-up
        reps = 1 if n_cells * n_steps > 3e8 else repeats
        times = []
        for _ in range(reps):
            t = now()
            u = numpy_ftcs(u0, r, n_steps)
            times.append(now() - t)
        row("numpy loop", f"median of {reps}" if reps > 1 else "1 run", times, n_steps, u,
            "in-place slices, flux form")

    ours = next((x for x in case["rows"] if x["solver"] == "medtransport FTCS"
                 and x["variant"].startswith("warm") and "updates_per_s" in x), None)
    for x in case["rows"]:
        if ours is not None and "updates_per_s" in x:
            x["ours_over_this"] = ours["updates_per_s"] / x["updates_per_s"]
    return case


# ------------------------------------------------------------------------ implicit: workers


def worker(spec: dict[str, Any]) -> None:
    """Child process: run one implicit solver on the cosine mode at several step counts;
    print one JSON line per finished run (so a time-out keeps the finished ones)."""
    cells = tuple(spec["cells"])
    d = len(cells)
    t_end = mode_end_time(d)
    lib, method = spec["lib"], spec["method"]

    def emit(obj: dict[str, Any]) -> None:
        print(json.dumps(obj), flush=True)

    if lib == "ours":
        from medtransport.numerics.finite_volume import solve

        _, problem = ours_problem(cells)
        u0 = cosine_mode(cells)
        exact = 1.0 + np.exp(-d * np.pi**2 * D * t_end) * (u0 - 1.0)
        try:
            from medtransport.numerics import linear

            cg_label = f"CG, Jacobi-preconditioned, rtol {linear.CG_RTOL:g}"
        except (ImportError, AttributeError):
            cg_label = "iterative"
        emit({"info": {"solver": f"medtransport {method}", "linear_solver": "?"}})
        for n in spec["steps"]:
            t = now()
            sol = solve(problem, u0, t_end / n, n, output_every=n, method=method)
            el = now() - t
            u = sol.states[-1]
            lu = getattr(sol, "factorizations", None)
            emit({"steps": n, "time_s": el, "error": float(np.max(np.abs(u - exact))),
                  "mass_drift": mass_drift(u0, u), "factorizations": lu,
                  "linear_solver": "SuperLU, factorized once" if lu else cg_label})
    elif lib == "fipy":
        import fipy
        import fipy.solvers as fsolvers
        from fipy import CellVariable, DiffusionTerm, Grid2D, Grid3D, TransientTerm

        h = 1.0 / cells[0]
        if d == 2:
            mesh = Grid2D(nx=cells[0], ny=cells[1], dx=h, dy=h)
        else:
            mesh = Grid3D(nx=cells[0], ny=cells[1], nz=cells[2], dx=h, dy=h, dz=h)
        xc = np.asarray(mesh.cellCenters.value)
        u0 = 1.0 + np.prod(np.cos(np.pi * xc), axis=0)
        exact = 1.0 + np.exp(-d * np.pi**2 * D * t_end) * (u0 - 1.0)
        if method == "default":
            solver_name = fsolvers.DefaultSolver.__name__
        else:
            solver_name = getattr(fsolvers, method).__name__
        emit({"info": {"solver": f"FiPy {fipy.__version__}",
                       "linear_solver": f"{solver_name} (suite {fsolvers.solver_suite})",
                       "scheme": "TransientTerm == DiffusionTerm (implicit backward Euler)"}})
        for n in spec["steps"]:
            dt = t_end / n
            t = now()
            var = CellVariable(mesh=mesh, value=u0.copy())
            eq = TransientTerm() == DiffusionTerm(coeff=D)
            solver = None if method == "default" else getattr(fsolvers, method)()
            for _ in range(n):
                eq.solve(var=var, dt=dt, solver=solver)
            el = now() - t
            u = np.asarray(var.value)
            emit({"steps": n, "time_s": el, "error": float(np.max(np.abs(u - exact))),
                  "mass_drift": mass_drift(u0, u)})
    else:
        raise SystemExit(f"unknown worker lib {lib!r}")


def run_worker(spec: dict[str, Any], timeout: float, python: str | None = None
               ) -> dict[str, Any]:
    """Run :func:`worker` in a child process; keep whatever it finished before ``timeout``."""
    cmd = [python or sys.executable, str(Path(__file__).resolve()), "--worker",
           json.dumps(spec)]
    log(f"  worker {spec['lib']} {spec['method']} {spec['cells']} steps {spec['steps']} "
        f"(limit {timeout:.0f} s)")
    t = now()
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    except OSError as exc:
        return {"status": f"unavailable: {reason(exc)}", "runs": []}
    out, err, status = communicate_within(proc, timeout)
    runs, info = [], {}
    for line in out.splitlines():
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "info" in obj:
            info = obj["info"]
        else:
            runs.append(obj)
    if status == "ok" and proc.returncode != 0:
        last = [ln for ln in err.strip().splitlines() if ln.strip()]
        status = f"unavailable: {last[-1][:200] if last else 'exit ' + str(proc.returncode)}"
    return {"status": status, "info": info, "runs": runs, "wall_s": now() - t,
            "spec": spec}


def discrete_rate(cells: tuple[int, ...]) -> float:
    """−λ_h: the decay rate of the cosine mode under the semi-discrete FV operator."""
    h = 1.0 / cells[0]
    return len(cells) * D * 4.0 / h**2 * math.sin(math.pi * h / 2) ** 2


def predicted_error(cells: tuple[int, ...], n: int, theta: float) -> float:
    """Max-norm error at the end time of the θ-scheme (1: backward Euler, ½: Crank–Nicolson)
    with ``n`` steps: the mode is an exact discrete eigenvector, so only its amplitude errs."""
    d = len(cells)
    t_end = mode_end_time(d)
    x = discrete_rate(cells) * t_end / n
    g = (1.0 - (1.0 - theta) * x) / (1.0 + theta * x)
    amp_err = abs(g**n - math.exp(-d * math.pi**2 * D * t_end))
    return amp_err * math.cos(math.pi / (2 * cells[0])) ** d


def cn_steps_for(cells: tuple[int, ...], target: float, margin: float = 0.8) -> int | None:
    """Fewest Crank–Nicolson steps whose predicted error is ≤ margin·target for it and every
    step count up to 4× it (so a lucky cancellation of time and space errors is not used)."""
    for n in range(1, 20001):
        if all(predicted_error(cells, m, 0.5) <= margin * target for m in (n, 2 * n, 4 * n)):
            return n
    return None


def run_implicit_case(name: str, cells: tuple[int, ...], fipy_steps: list[int],
                      timeout: float, fipy_python: str | None) -> dict[str, Any]:
    case: dict[str, Any] = {"case": name, "cells": list(cells), "end_time":
                            mode_end_time(len(cells)), "fipy_steps": fipy_steps}
    n_cells = math.prod(cells)
    fipy_default = run_worker({"lib": "fipy", "method": "default", "cells": list(cells),
                               "steps": fipy_steps}, timeout, fipy_python)
    fipy_cg = run_worker({"lib": "fipy", "method": "LinearCGSolver", "cells": list(cells),
                          "steps": fipy_steps}, timeout, fipy_python)
    ours_be = run_worker({"lib": "ours", "method": "backward_euler", "cells": list(cells),
                          "steps": fipy_steps}, timeout)
    # Targets: FiPy's measured error where it finished, else backward Euler's predicted one.
    measured = {r["steps"]: r["error"] for r in fipy_default["runs"]}
    targets = {n: measured.get(n, predicted_error(cells, n, 1.0)) for n in fipy_steps}
    cn_steps = sorted({s for s in (cn_steps_for(cells, e) for e in targets.values()) if s})
    if not ours_be["runs"] and ours_be["status"].startswith("timeout"):
        # CN factorizes a matrix of the same sparsity pattern: it cannot finish either.
        ours_cn = {"status": "skipped: backward Euler's factorization of the same sparsity "
                             f"pattern hit the limit ({ours_be['status']})",
                   "info": {"solver": "medtransport crank_nicolson",
                            "linear_solver": "scipy.sparse.linalg.splu"},
                   "runs": [], "spec": {"lib": "ours", "method": "crank_nicolson",
                                        "cells": list(cells), "steps": cn_steps}}
    else:
        ours_cn = run_worker({"lib": "ours", "method": "crank_nicolson", "cells": list(cells),
                              "steps": cn_steps}, timeout)
    for w in (fipy_default, fipy_cg, ours_be, ours_cn):
        for r in w["runs"]:
            r["updates_per_s"] = n_cells * r["steps"] / r["time_s"]
            theta = 0.5 if w["spec"]["method"] == "crank_nicolson" else 1.0
            r["predicted_error"] = predicted_error(cells, r["steps"], theta)
    case.update(fipy_default=fipy_default, fipy_cg=fipy_cg, ours_be=ours_be, ours_cn=ours_cn,
                targets={str(k): v for k, v in targets.items()})

    # Pairs: each FiPy run against our fastest CN run with an error no larger.
    pairs = []
    for label, w in (("FiPy default", fipy_default), ("FiPy LinearCGSolver", fipy_cg)):
        runs = {r["steps"]: r for r in w["runs"]}
        for n in fipy_steps:
            fr = runs.get(n)
            target = fr["error"] if fr else targets[n]
            ok = [r for r in ours_cn["runs"] if r["error"] <= target]
            best = min(ok, key=lambda r: r["time_s"]) if ok else None
            pair = {"peer": label, "peer_steps": n, "peer_time_s": fr and fr["time_s"],
                    "peer_error": fr and fr["error"], "target_error": target,
                    "peer_status": "ok" if fr else w["status"],
                    "ours_steps": best and best["steps"], "ours_time_s": best and best["time_s"],
                    "ours_error": best and best["error"]}
            if best and fr:
                pair["speedup"] = fr["time_s"] / best["time_s"]
            elif best and not fr and w["status"].startswith("timeout"):
                # the peer did not finish its first unfinished run within the limit
                pair["speedup_at_least"] = float(w["status"].split()[2]) / best["time_s"] \
                    if not w["runs"] else None
            pairs.append(pair)
    case["pairs"] = pairs
    return case


# ----------------------------------------------------------------------------- audit overhead


def audit_overhead(name: str, cells: tuple[int, ...], n_steps: int, n_outputs: int = 20
                   ) -> dict[str, Any]:
    """FTCS run keeping ``n_outputs + 1`` states; then Σ w·u of every state and the ledger
    residual check, timed separately."""
    try:
        from medtransport.numerics.finite_volume import solve

        grid, problem = ours_problem(cells)
        u0 = gaussian_field(cells)
        dt = explicit_dt(cells)
        every = max(1, n_steps // n_outputs)
        solve(problem, u0, dt, every, output_every=every, method="ftcs")  # warm
        t = now()
        sol = solve(problem, u0, dt, n_steps, output_every=every, method="ftcs")
        simulate = now() - t

        t = now()
        states = sol.states
        w = np.asarray(grid.weights, dtype=float).ravel()
        stored = states.reshape(states.shape[0], -1) @ w
        out = sum((np.asarray(v) for v in sol.outflow.values()), np.zeros_like(stored))
        residual = stored - (stored[0] + np.asarray(sol.source) - out - np.asarray(sol.sink))
        scale = max(float(np.max(np.abs(stored))), float(np.max(np.abs(out))), 1e-300)
        ok = bool(np.max(np.abs(residual)) <= 1e-12 + 1e-9 * scale)
        finite = bool(np.isfinite(stored).all())  # a NaN or inf in any state reaches Σ w·u
        audit = now() - t
        return {"case": name, "cells": list(cells), "steps": n_steps,
                "states": int(states.shape[0]), "simulate_s": simulate, "audit_s": audit,
                "overhead_pct": 100 * audit / simulate, "passed": ok and finite,
                "max_rel_residual": float(np.max(np.abs(residual)) / scale)}
    except Exception as exc:
        return {"case": name, "status": f"unavailable: {reason(exc)}"}


# ------------------------------------------------------------------------------- CLI start-up


def cli_startup() -> dict[str, Any]:
    exe = shutil.which("medtransport", path=str(Path(sys.executable).parent))
    out: dict[str, Any] = {}
    if exe is None:
        out["models"] = "TODO: no `medtransport` command in this environment"
    else:
        times, rc, first = [], None, ""
        for i in range(6):  # the first run warms the file cache and is not counted
            t = now()
            p = subprocess.run([exe, "models"], capture_output=True, text=True)
            el = now() - t
            rc = p.returncode
            if i == 0:
                first = (p.stdout + p.stderr).strip().splitlines()
            else:
                times.append(el)
        out["models"] = {"median_s": statistics.median(times), "times_s": times,
                         "exit_code": rc,
                         "stderr_lines": [ln for ln in first if "broken" in ln.lower()
                                          or "error" in ln.lower()][:3]}
    times = []
    for _ in range(5):
        p = subprocess.run([sys.executable, "-X", "importtime", "-c", "import medtransport"],
                           capture_output=True, text=True)
        total = 0
        for line in p.stderr.splitlines():
            parts = line.split("|")
            if len(parts) == 3 and parts[2].strip() == "medtransport":
                total = int(parts[1])
        times.append(total / 1e6)
    out["import_medtransport_s"] = statistics.median(times)
    return out


# ---------------------------------------------------------------------------------- report


def fmt_t(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:.3g}" if x < 100 else f"{x:.0f}"


def fmt_e(x: float | None) -> str:
    return "—" if x is None else f"{x:.2e}"


def fmt_ratio(x: float | None) -> str:
    return "—" if x is None else (f"{x:.1f}×" if x < 100 else f"{x:.0f}×")


def render(res: dict[str, Any]) -> str:
    env = res["environment"]
    lines: list[str] = []
    mode = "quick (smoke)" if res["quick"] else "full"
    lines.append(f"# medtransport diffusion benchmark — {mode} run")
    lines.append("")
    if "machine" in res:
        lines += [machine.header(res["machine"]), ""]
    lines.append(f"{res['date']}, {env['cpu']}, {env['cores']} cores, Python {env['python']}, "
             f"numpy {env['numpy']}, NUMBA_NUM_THREADS={env['env']['NUMBA_NUM_THREADS']}, "
             f"OPENBLAS_CORETYPE={env['env']['OPENBLAS_CORETYPE']}, "
             f"OPENBLAS_L2_SIZE={env['env']['OPENBLAS_L2_SIZE']}.")
    vers = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    lines.append(f"Versions: {vers}.")
    if isinstance(env.get("blas"), list):
        blas = "; ".join(f"{b['internal_api']} {b['version']} ({b['architecture']}, "
                         f"{b['num_threads']} threads)" for b in env["blas"])
        lines.append(f"Thread pools (threadpoolctl): {blas}.")
    lines.append(f"Total wall time of this run: {res['total_s']:.0f} s.")
    other = {k: v for k, v in res.get("other_load_cores", {}).items() if v is not None}
    if other:
        busy = [f"{k} ({v:.2f})" for k, v in other.items() if v > 0.15]
        lines.append("CPU used by other processes (mean busy cores per section, from "
                     f"/proc/stat): at most {max(other.values()):.2f}"
                     + (f"; **timings disturbed in: {', '.join(busy)}**" if busy
                        else "; the machine was otherwise idle") + ".")
    lines.append("")

    bw = res["bandwidth"]
    lines.append("## Memory bandwidth")
    lines.append("")
    lines.append(f"Arrays of {bw['array_MB']} MB; counted traffic = bytes read + written "
             "(no write-allocate); median of the repeats.")
    lines.append("")
    lines.append("| kernel | GB/s (median) | GB/s (best) |")
    lines.append("|---|---:|---:|")
    for k, v in bw.items():
        if isinstance(v, dict):
            lines.append(f"| {k} | {v['GBps_median']:.1f} | {v['GBps_best']:.1f} |")
    lines.append("")
    lines.append(f"Bound: {bw['bound_GBps']:.1f} GB/s → "
             + ", ".join(f"{bw[f'bound_updates_per_s_{nb}B']:.2e} cell-updates/s at {nb} B/update"
                         for nb in BYTES_PER_UPDATE) + ".")
    lines.append("")

    lines.append("## Explicit methods (same problem, same stable dt, same end time)")
    lines.append("")
    lines.append(f"Off-centre Gaussian, D = {D:g}, r = D·Δt/h² = {R_FRACTION:g} × 1/(2d), no flux. "
             "Ratio = our FTCS (warm) cell-updates/s ÷ this row's. Δ = max |u − u_ours| / max u0. "
             "Bound fraction = cell-updates/s ÷ the bandwidth bound at the bytes per update the "
             "row's kernel moves (ours, from 2¹⁸ cells: 4 B in 3-D, 4 steps per pass through "
             "memory; 8 B in 2-D, fused step pairs; 16 B for single steps and for the peers, "
             "which do not block). The goal rows use the 8 B bound.")
    lines.append("")
    lines.append("| case | solver | variant | steps | wall s | cell-updates/s | ours ÷ this | "
             "mass drift | Δ vs ours | B/update: bound fraction |")
    lines.append("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for case in res["explicit"]:
        for x in case["rows"]:
            if "time_s" not in x:
                lines.append(f"| {case['case']} | {x['solver']} | {x['status']} | | | | | | | |")
                continue
            ups = x["updates_per_s"]
            nb = x.get("bytes_per_update", 16)
            frac = f"{nb} B: {ups / (bw['bound_GBps'] * 1e9 / nb):.2f}"
            diff = x.get("max_abs_diff_vs_ours")
            lines.append(f"| {case['case']} | {x['solver']} | {x['variant']} | {x['steps']} | "
                     f"{fmt_t(x['time_s'])} | {ups:.2e} | {fmt_ratio(x.get('ours_over_this'))} | "
                     f"{fmt_e(x.get('mass_drift'))} | {'—' if diff is None else f'{diff:.1e}'} | "
                     f"{frac} |")
    lines.append("")

    comp = res.get("ftcs_compile") or {}
    if comp:
        parts = [f"{k}: " + (f"first solve {v['first_solve_s']:.1f} s "
                             f"(process {v['process_s']:.1f} s)"
                             if "first_solve_s" in v else v.get("status", "?"))
                 for k, v in comp.items()]
        lines.append("FTCS cold start in a fresh process (72³, 4 steps, one held face): "
                     + "; ".join(parts) + ".")
        lines.append("")
    lines.append("## Implicit methods at equal accuracy")
    lines.append("")
    lines.append("Cosine mode u0 = 1 + Π cos(π x_i) to t = 1/(d π² D) (amplitude e⁻¹); error = max "
             "|u − u_exact| against exp(−d π² D t). FiPy: `TransientTerm() == DiffusionTerm()` "
             "(backward Euler), one `eq.solve` per step. Ours: `solve(..., method=...)` (its "
             "linear solver in brackets). Each solver runs in a child process with a time limit of "
             f"{res['implicit_timeout']:.0f} s.")
    lines.append("")
    lines.append("| case | solver (linear solver) | steps | wall s | cell-updates/s | error | "
             "predicted error | mass drift |")
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|")
    for case in res["implicit"]:
        for key in ("fipy_default", "fipy_cg", "ours_be", "ours_cn"):
            w = case[key]
            info = w.get("info") or {}
            label = f"{info.get('solver', key)} ({info.get('linear_solver', '?')})"
            for r in w["runs"]:
                if "linear_solver" in r:
                    label = f"{info.get('solver', key)} ({r['linear_solver']})"
                lines.append(f"| {case['case']} | {label} | {r['steps']} | {fmt_t(r['time_s'])} | "
                         f"{r['updates_per_s']:.2e} | {fmt_e(r['error'])} | "
                         f"{fmt_e(r['predicted_error'])} | {fmt_e(r['mass_drift'])} |")
            if w["status"] != "ok":
                done = {r["steps"] for r in w["runs"]}
                left = [s for s in w["spec"]["steps"] if s not in done]
                lines.append(f"| {case['case']} | {label} | {left} | {w['status']} | | | | |")
    lines.append("")
    lines.append("Equal accuracy: each FiPy run against our fastest Crank–Nicolson run whose error "
             "is no larger.")
    lines.append("")
    lines.append("| case | peer | peer steps | peer s | peer error | ours CN steps | ours s | "
             "ours error | speed-up (peer s ÷ ours s) |")
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for case in res["implicit"]:
        for p in case["pairs"]:
            peer_t = fmt_t(p["peer_time_s"]) if p["peer_time_s"] else p["peer_status"]
            if "speedup" in p:
                sp = fmt_ratio(p["speedup"])
            elif p.get("speedup_at_least"):
                sp = f"> {fmt_ratio(p['speedup_at_least'])}"
            else:
                sp = "—"
            lines.append(f"| {case['case']} | {p['peer']} | {p['peer_steps']} | {peer_t} | "
                     f"{fmt_e(p['peer_error'])} | {p['ours_steps'] or '—'} | "
                     f"{fmt_t(p['ours_time_s'])} | {fmt_e(p['ours_error'])} | {sp} |")
    lines.append("")

    lines.append("## Audit overhead")
    lines.append("")
    lines.append("Our FTCS run keeping 21 states; then Σ w·u of every state (`grid.weights`, one "
             "matrix–vector product) and the ledger residual check.")
    lines.append("")
    lines.append("| case | states | simulate s | audit s | overhead | passed |")
    lines.append("|---|---:|---:|---:|---:|---|")
    for a in res["audit"]:
        if "simulate_s" in a:
            lines.append(f"| {a['case']} | {a['states']} | {fmt_t(a['simulate_s'])} | "
                     f"{a['audit_s']:.3g} | {a['overhead_pct']:.2f} % | {a['passed']} |")
        else:
            lines.append(f"| {a['case']} | {a['status']} | | | | |")
    lines.append("")

    lines.append("## Start-up")
    lines.append("")
    cli = res["cli"]
    m = cli["models"]
    lines.append("| what | time |")
    lines.append("|---|---:|")
    if isinstance(m, dict):
        extra = f" (exit code {m['exit_code']})" if m["exit_code"] else ""
        lines.append(f"| `medtransport models`, median of 5 | {m['median_s']:.3f} s{extra} |")
    else:
        lines.append(f"| `medtransport models` | {m} |")
    lines.append(f"| `import medtransport` (-X importtime, median of 5) | "
             f"{cli['import_medtransport_s']:.3f} s |")
    lines.append("")

    lines.append("## Goals")
    lines.append("")
    lines.append("| goal | measured | met |")
    lines.append("|---|---|---|")
    for g in res["goals"]:
        lines.append(f"| {g['goal']} | {g['measured']} | {g['met']} |")
    lines.append("")
    return "\n".join(lines)


def goals(res: dict[str, Any]) -> list[dict[str, str]]:
    out = []

    def yn(ok: bool | None) -> str:
        return "n/a" if ok is None else ("yes" if ok else "**no**")

    for case in res["explicit"]:
        if len(case["cells"]) != 3 or case["cells"][0] < 64:
            continue
        rows = {(x["solver"], x["variant"].split(" ")[0]): x for x in case["rows"]}
        ours = rows.get(("medtransport FTCS", "warm"))
        if not ours or "updates_per_s" not in ours:
            continue
        ups = ours["updates_per_s"]
        out.append({"goal": f"FTCS ≥ 1e9 cell-updates/s, {case['case']}",
                    "measured": f"{ups:.2e}", "met": yn(ups >= 1e9)})
        if case["cells"][0] >= 128:
            bound8 = res["bandwidth"]["bound_GBps"] * 1e9 / 8
            out.append({"goal": f"FTCS ≥ 0.5 of the 8 B/update bound, {case['case']}",
                        "measured": f"{ups / bound8:.2f}", "met": yn(ups / bound8 >= 0.5)})
        for key, factor, label in ((("py-pde (numba)", "warm"), 10, "py-pde warm solve()"),
                                   (("py-pde (numba)", "stepper"), 10, "py-pde stepper"),
                                   (("numpy loop", None), 5, "numpy loop")):
            x = rows.get(key) or next((v for (s, _), v in rows.items()
                                       if s == key[0] and key[1] is None), None)
            if x and "ours_over_this" in x:
                out.append({"goal": f"FTCS ≥ {factor}× {label}, {case['case']}",
                            "measured": fmt_ratio(x["ours_over_this"]),
                            "met": yn(x["ours_over_this"] >= factor)})
        drift = ours.get("mass_drift")
        out.append({"goal": f"FTCS zero mass drift, {case['case']}",
                    "measured": fmt_e(drift), "met": yn(drift is not None and drift < 1e-12)})
    for case in res["implicit"]:
        sps = [p for p in case["pairs"] if p["peer"] == "FiPy default"]
        got = [p["speedup"] for p in sps if "speedup" in p]
        lower = [p["speedup_at_least"] for p in sps if p.get("speedup_at_least")]
        if got:
            out.append({"goal": f"CN ≥ 3× FiPy (default) at equal accuracy, {case['case']}",
                        "measured": f"{fmt_ratio(min(got))} – {fmt_ratio(max(got))}",
                        "met": yn(min(got) >= 3)})
        elif lower:
            out.append({"goal": f"CN ≥ 3× FiPy (default) at equal accuracy, {case['case']}",
                        "measured": f"> {fmt_ratio(min(lower))} (FiPy timed out)",
                        "met": yn(min(lower) >= 3)})
        else:
            st = case["ours_cn"]["status"] if not case["ours_cn"]["runs"] else \
                case["fipy_default"]["status"]
            out.append({"goal": f"CN ≥ 3× FiPy (default) at equal accuracy, {case['case']}",
                        "measured": f"not measured: {st}", "met": "n/a"})
    for a in res["audit"]:
        if "overhead_pct" in a:
            out.append({"goal": f"audit overhead < 5 %, {a['case']}",
                        "measured": f"{a['overhead_pct']:.2f} %",
                        "met": yn(a["overhead_pct"] < 5)})
    return out


def communicate_within(proc: subprocess.Popen[str], timeout: float) -> tuple[str, str, str]:
    """A child's stdout and stderr, and "ok" or "timeout after N s" (then it is killed and
    what it had written is kept)."""
    try:
        out, err = proc.communicate(timeout=timeout)
        return out, err, "ok"
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        return out, err, f"timeout after {timeout:.0f} s"


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small smoke run (a minute or two)")
    machine.add_out_argument(ap)
    ap.add_argument("--implicit-timeout", type=float, default=None,
                    help="seconds allowed per implicit solver and case (default 300; quick 60)")
    ap.add_argument("--fipy-python", default=None,
                    help="python of another venv to run FiPy in (default: this one)")
    ap.add_argument("--sections", default="explicit,implicit,audit",
                    help="comma list of explicit, implicit, audit (default: all); a partial "
                         "run writes latest-<sections>.{md,json}, never latest.*")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    sections = {x.strip() for x in args.sections.split(",") if x.strip()}
    unknown = sections - {"explicit", "implicit", "audit"}
    if unknown or not sections:
        ap.error(f"--sections: expected a comma list of explicit, implicit, audit; got "
                 f"{args.sections!r}")
    partial = sections != {"explicit", "implicit", "audit"}

    if args.worker:
        worker(json.loads(args.worker))
        return 0

    info = machine.announce(quick=args.quick)
    t_start = now()
    quick = args.quick
    timeout = args.implicit_timeout or (60.0 if quick else 300.0)
    res: dict[str, Any] = {"quick": quick, "date": time.strftime("%Y-%m-%d %H:%M %Z"),
                           "implicit_timeout": timeout, "machine": info}
    log("environment …")
    res["environment"] = environment()
    load = LoadMonitor()
    log("bandwidth …")
    with load.section("bandwidth"):
        res["bandwidth"] = bandwidth(quick)

    log("explicit …")
    res["explicit"] = []
    cases = EXPLICIT_CASES_QUICK if quick else EXPLICIT_CASES_FULL
    for name, (cells, steps) in cases.items() if "explicit" in sections else ():
        with load.section(f"explicit {name}"):
            try:
                res["explicit"].append(run_explicit_case(name, cells, steps,
                                                         repeats=1 if quick else 3,
                                                         skip_numpy=False))
            except Exception as exc:  # keep the other cases
                traceback.print_exc()
                res["explicit"].append({"case": name, "cells": list(cells),
                                        "rows": [{"solver": "all", "status": reason(exc)}]})

    if "explicit" in sections:
        log("FTCS cold start …")
        with load.section("ftcs compile"):
            try:
                res["ftcs_compile"] = ftcs_compile()
            except Exception as exc:
                res["ftcs_compile"] = {"all": {"status": reason(exc)}}

    log("implicit …")
    res["implicit"] = []
    implicit_cases = IMPLICIT_CASES_QUICK if quick else IMPLICIT_CASES_FULL
    for name, (cells, steps) in implicit_cases.items() if "implicit" in sections else ():
        with load.section(f"implicit {name}"):
            res["implicit"].append(run_implicit_case(name, cells, steps, timeout,
                                                     args.fipy_python))

    log("audit overhead …")
    with load.section("audit"):
        res["audit"] = [audit_overhead(name, cells, steps)
                        for name, (cells, steps) in cases.items()
                        if name != "3-D 256³" and "audit" in sections]
    res["other_load_cores"] = load.sections
    log("start-up …")
    try:
        res["cli"] = cli_startup()
    except Exception as exc:
        res["cli"] = {"models": f"TODO: not measured ({reason(exc)})",
                      "import_medtransport_s": float("nan")}
    res["goals"] = goals(res)
    res["total_s"] = now() - t_start

    text = render(res)
    print(text)
    # a smoke or partial run never replaces a full one
    stem = "latest-quick" if quick else "latest"
    if partial:
        stem += "-" + "-".join(sorted(sections))
    out = machine.output_dir(args.out)
    write_atomic(out / f"{stem}.md", text + "\n")
    write_atomic(out / f"{stem}.json", json.dumps(res, indent=1, default=str) + "\n")
    log(f"written {out / stem}.md and {stem}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
