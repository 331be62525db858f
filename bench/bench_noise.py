#!/usr/bin/env python
"""Benchmark the DDPM forward noising (``add_noise`` with its random numbers) against diffusers
(CPU PyTorch) and plain numpy, side by side in one run; and check our schedules against
diffusers' ``DDPMScheduler.alphas_cumprod``.

    bench/.venv-noise/bin/python bench/bench_noise.py --out bench/results  # full run
    bench/.venv-noise/bin/python bench/bench_noise.py --quick              # fewer repeats
    bench/.venv-noise/bin/python bench/bench_noise.py --write-reference    # also refresh
        tests/data/noise_diffusers_alphas_cumprod.json (diffusers' values, subsampled)

The venv: ``python3 -m venv bench/.venv-noise``, then the CPU wheel of torch (bench/README.md)
and ``pip install -r bench/requirements-noise.txt -e .`` (torch and diffusers are never
dependencies of medtransport).

The problem: x₀ a 64 × 1 × 128 × 128 float32 batch, timesteps t drawn uniformly from 0 … 999
(one per sample), x_t = √ᾱ_t·x₀ + √(1 − ᾱ_t)·ε with fresh ε ~ N(0, I) each call — the whole
noising, random numbers included. Rows:

1. medtransport: ``medtransport.numerics.normal.add_noise`` (counter-based SplitMix64 and
   Box–Muller with polynomial log/sin/cos compiled by numba — no numpy transcendental — fused
   with the multiply-add per block, over numba's threads), coefficients from the float64
   schedule cast last;
2. diffusers: ``noise = torch.randn(shape)`` then ``DDPMScheduler.add_noise(x0, noise, t)``;
3. plain numpy: ``Generator.standard_normal(shape, dtype=float32)`` (ziggurat) then the
   broadcast multiply-add;

the same with one thread each (``torch.set_num_threads(1)``, ``numba.set_num_threads(1)``);
the same again "loaded": while this script keeps one extra process spinning on a core (started
and stopped by it), so both sides compete with another job; and the random numbers alone (ours
``standard_normal``, ``torch.randn``, numpy's ziggurat).
Repeats are interleaved (ours, diffusers, numpy, ours, …) because the machine is shared; the
table gives the minimum and the median of each. The header (bench/machine.py) records the CPU,
LLVM's CPU, numpy's SIMD, L3, the measured bandwidth and the load.

Writes noise-latest.txt and .json into ``--out`` (default bench/results/local/; ``--quick``:
noise-latest-quick.*).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import machine
import numba
import numpy as np
from bench_diffusion import write_atomic

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
REFERENCE = REPO / "tests" / "data" / "noise_diffusers_alphas_cumprod.json"
SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid")

try:
    import medtransport_noise  # noqa: F401
except ImportError:  # run from a checkout without an editable install
    sys.path.insert(0, str(REPO / "plugins"))
    sys.path.insert(0, str(REPO))

from medtransport.numerics.normal import add_noise, standard_normal  # noqa: E402
from medtransport_noise.schedules import Schedule  # noqa: E402


def schedule_check(write_reference: bool) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Max relative difference of our float64 ᾱ from diffusers' float32 alphas_cumprod."""
    from diffusers import DDPMScheduler

    rows, reference = [], {}
    keep = sorted(set(range(0, 10)) | set(range(0, 1000, 10)) | set(range(990, 1000)))
    for kind in SCHEDULES:
        for rescale in (False, True):
            theirs = DDPMScheduler(num_train_timesteps=1000, beta_schedule=kind,
                                   rescale_betas_zero_snr=rescale).alphas_cumprod.double().numpy()
            ours = Schedule.build(kind, rescale=rescale).alphas_cumprod
            nz = ours > 0
            rel = np.abs(theirs - ours)[nz] / ours[nz]
            big = ours > 1e-3
            rows.append({"schedule": kind, "zero_terminal_snr": rescale,
                         "max_rel_all": float(rel.max()),
                         "max_rel_where_alpha_bar_gt_1e-3": float(
                             (np.abs(theirs - ours)[big] / ours[big]).max()),
                         "max_abs": float(np.abs(theirs - ours).max()),
                         "terminal_ours": float(ours[-1]), "terminal_diffusers": float(theirs[-1])})
            reference[f"{kind}{'+zero_snr' if rescale else ''}"] = {
                "index": keep, "alphas_cumprod": [float(theirs[i]) for i in keep]}
    if write_reference:
        import diffusers

        payload = {"source": f"diffusers {diffusers.__version__} DDPMScheduler("
                             "num_train_timesteps=1000, beta_schedule=…, "
                             "rescale_betas_zero_snr=…).alphas_cumprod (float32), at the listed "
                             "indices t (= our step k − 1)", "schedules": reference}
        write_atomic(REFERENCE, json.dumps(payload, indent=1) + "\n")
    return rows, reference


def reverse_check() -> list[dict[str, Any]]:
    """Our reverse steps against diffusers' ``DDPMScheduler.step`` (fixed_small, fixed_large;
    1000 steps) and ``DDIMScheduler.step`` (η = 0 and 0.5; 50 leading steps), fed the exact
    ε-prediction of Gaussian data N(1.5, 0.3) and the same noise draws: max |difference| of
    the trajectories' end points (theirs in float32, ours in float64)."""
    import torch
    from diffusers import DDIMScheduler, DDPMScheduler

    from medtransport_noise.reverse import GaussianMixture, ddim_step, ddim_steps, ddpm_step

    data = GaussianMixture(np.array([1.0]), np.array([[1.5]]), np.array([[[0.3]]]))
    sched = Schedule.build("linear")
    ab = sched.alpha_bar
    n = 256
    x_start = np.random.default_rng(5).standard_normal((n, 1))

    def eps_of(x: np.ndarray, k: int) -> np.ndarray:
        x0 = data.denoise(x, float(ab[k]))
        return (x - np.sqrt(ab[k]) * x0) / np.sqrt(1.0 - ab[k])

    rows = []
    for variance in ("fixed_small", "fixed_large"):
        theirs = DDPMScheduler(num_train_timesteps=1000, variance_type=variance,
                               clip_sample=False)
        theirs.set_timesteps(1000)
        xt = torch.from_numpy(x_start.astype(np.float32))
        ours = x_start.copy()
        for t in theirs.timesteps.tolist():
            k = t + 1
            z = torch.randn(xt.shape, generator=torch.Generator().manual_seed(t))
            eps = torch.from_numpy(eps_of(xt.double().numpy(), k).astype(np.float32))
            xt = theirs.step(eps, t, xt, generator=torch.Generator().manual_seed(t)).prev_sample
            ours = ddpm_step(data, sched, ours, k, variance,  # type: ignore[arg-type]
                             z.double().numpy() if k > 1 else None)
        rows.append({"sampler": f"DDPM {variance}, 1000 steps",
                     "max_abs_diff": float(np.abs(xt.double().numpy() - ours).max())})
    for eta in (0.0, 0.5):
        theirs = DDIMScheduler(num_train_timesteps=1000, clip_sample=False,
                               set_alpha_to_one=True, steps_offset=0)
        theirs.set_timesteps(50)
        visit = ddim_steps(1000, 50, "leading")
        assert [k - 1 for k in visit[:-1]] == theirs.timesteps.tolist()
        xt = torch.from_numpy(x_start.astype(np.float32))
        ours = x_start.copy()
        for t, kp in zip(theirs.timesteps.tolist(), visit[1:], strict=True):
            k = t + 1
            z = torch.randn(xt.shape, generator=torch.Generator().manual_seed(t))
            eps = torch.from_numpy(eps_of(xt.double().numpy(), k).astype(np.float32))
            xt = theirs.step(eps, t, xt, eta=eta, variance_noise=z).prev_sample
            ours = ddim_step(data, sched, ours, k, kp, eta, z.double().numpy())
        rows.append({"sampler": f"DDIM eta {eta:g}, 50 leading steps",
                     "max_abs_diff": float(np.abs(xt.double().numpy() - ours).max())})
    return rows


def timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--write-reference", action="store_true")
    machine.add_out_argument(ap)
    args = ap.parse_args()
    info = machine.announce(quick=args.quick)
    import diffusers
    import torch
    from diffusers import DDPMScheduler

    repeats = 10 if args.quick else 40
    shape = (64, 1, 128, 128)
    rng = np.random.default_rng(0)
    x0 = rng.uniform(-1.0, 1.0, shape).astype(np.float32)
    t = rng.integers(0, 1000, shape[0])
    x0_t = torch.from_numpy(x0)
    t_t = torch.from_numpy(t)
    sched = DDPMScheduler(num_train_timesteps=1000)
    ours_s = Schedule.build("linear")
    a64, b64 = ours_s.signal_coefficient[t + 1], ours_s.noise_coefficient[t + 1]
    a32 = np.sqrt(sched.alphas_cumprod.numpy()[t])
    b32 = np.sqrt(1.0 - sched.alphas_cumprod.numpy()[t])
    counter = iter(range(10**9))

    def ours() -> Any:
        return add_noise(x0, a64, b64, next(counter))

    def theirs() -> Any:
        noise = torch.randn(shape)
        return sched.add_noise(x0_t, noise, t_t)

    def plain() -> Any:
        eps = rng.standard_normal(shape, dtype=np.float32)
        return a32[:, None, None, None] * x0 + b32[:, None, None, None] * eps

    def ours_rng() -> Any:
        return standard_normal(shape, next(counter))

    def torch_rng() -> Any:
        return torch.randn(shape)

    def numpy_rng() -> Any:
        return rng.standard_normal(shape, dtype=np.float32)

    threads = torch.get_num_threads()
    numba_threads = numba.get_num_threads()

    def one_thread(fn: Any, torch_side: bool) -> Any:
        def wrapped() -> Any:
            if torch_side:
                torch.set_num_threads(1)
            else:
                numba.set_num_threads(1)
            try:
                return fn()
            finally:
                torch.set_num_threads(threads)
                numba.set_num_threads(numba_threads)
        return wrapped

    trio = [("medtransport", ours), ("diffusers (torch CPU)", theirs), ("plain numpy", plain)]
    rows = {"add_noise": trio,
            "add_noise, one thread each": [
                ("medtransport (1 thread)", one_thread(ours, False)),
                ("diffusers (torch CPU, 1 thread)", one_thread(theirs, True)),
                ("plain numpy", plain)],
            "random numbers only": [("medtransport standard_normal", ours_rng),
                                    ("torch.randn", torch_rng),
                                    ("numpy standard_normal float32", numpy_rng)]}
    for fns in rows.values():  # warm-up (thread pools, allocator)
        for _, fn in fns:
            for _ in range(3):
                fn()
    times: dict[str, dict[str, list[float]]] = {g: {n: [] for n, _ in fns}
                                                for g, fns in rows.items()}
    loads = []
    for r in range(repeats):
        for group, fns in rows.items():
            order = fns[r % len(fns):] + fns[:r % len(fns)]
            for name, fn in order:
                times[group][name].append(timed(fn))
        loads.append(os.getloadavg()[0])
    # loaded: one extra process spinning on a core while the trio runs again
    loaded = "add_noise, loaded (+1 busy process)"
    rows[loaded] = trio
    times[loaded] = {n: [] for n, _ in trio}
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)
        for r in range(repeats):
            for name, fn in trio[r % 3:] + trio[:r % 3]:
                times[loaded][name].append(timed(fn))
    finally:
        spinner.kill()
        spinner.wait()

    # Correctness of our fused path: same ε returned → exact affine combination.
    y, eps = add_noise(x0, a64, b64, 1, return_noise=True)
    fused_err = float(np.abs(y - (a64.astype(np.float32)[:, None, None, None] * x0 +
                                  b64.astype(np.float32)[:, None, None, None] * eps)).max())
    z = standard_normal(shape, 3).astype(np.float64).ravel()
    from scipy import stats

    moments = {"mean": float(z.mean()), "variance": float(z.var()),
               "skewness": float(stats.skew(z)), "excess_kurtosis": float(stats.kurtosis(z)),
               "ks_pvalue_first_200000": float(stats.kstest(z[:200_000], "norm").pvalue)}
    sched_rows, _ = schedule_check(args.write_reference)
    reverse_rows = reverse_check()

    lines = [f"# DDPM noising bench ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
             "", machine.header(info), "",
             f"load average during the run {min(loads):.2f}–{max(loads):.2f}; torch "
             f"{torch.__version__} ({torch.get_num_threads()} threads, CPU capability "
             f"{torch.backends.cpu.get_cpu_capability()}), diffusers {diffusers.__version__}, "
             f"numba {numba.__version__} ({numba_threads} threads)",
             f"batch {shape} float32, timesteps uniform in 0…999, {repeats} interleaved "
             "repeats; times in ms", ""]
    result: dict[str, Any] = {"machine": info, "shape": shape, "repeats": repeats,
                              "groups": {}}
    for group, fns in rows.items():
        lines += [f"## {group}", "", "| implementation | min ms | median ms | ratio to "
                  f"{fns[1][0]} (median) |", "|---|---:|---:|---:|"]
        ref = statistics.median(times[group][fns[1][0]])
        result["groups"][group] = {}
        for name, _ in fns:
            ts = times[group][name]
            med = statistics.median(ts)
            lines.append(f"| {name} | {min(ts) * 1e3:.2f} | {med * 1e3:.2f} | "
                         f"{med / ref:.2f}× |")
            result["groups"][group][name] = {"min_s": min(ts), "median_s": med,
                                             "ratio_median": med / ref, "all_s": ts}
        lines.append("")
    ratio = result["groups"]["add_noise"]["medtransport"]["ratio_median"]
    ratio_min = (result["groups"]["add_noise"]["medtransport"]["min_s"] /
                 result["groups"]["add_noise"]["diffusers (torch CPU)"]["min_s"])
    one = result["groups"]["add_noise, one thread each"]
    ratio_one = (one["medtransport (1 thread)"]["min_s"] /
                 one["diffusers (torch CPU, 1 thread)"]["min_s"])
    ratio_loaded = result["groups"][loaded]["medtransport"]["ratio_median"]
    verdict = "met" if max(ratio, ratio_min) <= 1.0 else \
        "met by the median only" if ratio <= 1.0 else "NOT met"
    verdict_loaded = "met" if ratio_loaded <= 1.0 else "NOT met"
    lines += [f"goal ≤ 1.0× diffusers' time for the whole noising: median ratio {ratio:.2f}×, "
              f"min ratio {ratio_min:.2f}× — {verdict}; loaded (+1 busy process), median "
              f"ratio {ratio_loaded:.2f}× — {verdict_loaded}; one thread each, min ratio "
              f"{ratio_one:.2f}×", "",
              f"fused path vs a·x0 + b·ε with the returned ε: max |diff| = {fused_err:.3g}",
              f"our normals ({z.size:,}): " + ", ".join(f"{k} {v:.4g}" for k, v in
                                                       moments.items()), "",
              "## ᾱ against diffusers' alphas_cumprod (float32)", "",
              "| schedule | zero terminal SNR | max rel. diff | max rel. diff where ᾱ > 1e-3 "
              "| max abs diff | ᾱ_T ours | ᾱ_T diffusers |", "|---|---|---:|---:|---:|---:|---:|"]
    for r in sched_rows:
        lines.append(f"| {r['schedule']} | {r['zero_terminal_snr']} | {r['max_rel_all']:.2e} | "
                     f"{r['max_rel_where_alpha_bar_gt_1e-3']:.2e} | {r['max_abs']:.2e} | "
                     f"{r['terminal_ours']:.6g} | {r['terminal_diffusers']:.6g} |")
    lines += ["", "## Reverse steps against diffusers' schedulers (same ε̂, same noise)", "",
              "| sampler | max abs difference of the end points (n = 256) |", "|---|---:|"]
    lines += [f"| {r['sampler']} | {r['max_abs_diff']:.2e} |" for r in reverse_rows]
    result.update({"fused_max_abs_error": fused_err, "normal_moments": moments,
                   "reverse_vs_diffusers": reverse_rows,
                   "schedules": sched_rows, "load_average": [min(loads), max(loads)],
                   "goal_ratio_median": ratio, "goal_ratio_min": ratio_min,
                   "goal_ratio_median_loaded": ratio_loaded,
                   "one_thread_ratio_min": ratio_one,
                   "torch_threads": torch.get_num_threads()})
    text = "\n".join(lines) + "\n"
    print(text)
    stem = "noise-latest-quick" if args.quick else "noise-latest"
    out = machine.output_dir(args.out)
    write_atomic(out / f"{stem}.txt", text)
    write_atomic(out / f"{stem}.json", json.dumps(result, indent=1, default=float) + "\n")
    print(f"written: {out / stem}.txt, .json")
    if not math.isfinite(ratio):
        sys.exit(1)


if __name__ == "__main__":
    main()
