"""What machine a bench ran on: printed at the top of every bench and stored with its results.

The same code runs on different CPUs (this repository's benches have run on AMD EPYC and Intel
Xeon virtual machines with and without AVX-512), and a ratio against a peer means little without
knowing which SIMD each side could use. The header records:

* the CPU model (``/proc/cpuinfo``) and the core count;
* LLVM's name for the host CPU and its widest vector features (what numba compiles for);
* numpy's SIMD: the baseline it was built for, and which dispatch targets this CPU enables (numpy
  only vectorises its transcendental ufuncs — log, sin, cos, exp — with some of them);
* the L3 size (``/sys/devices/system/cpu/cpu0/cache/index3/size``);
* a measured memory bandwidth: a STREAM-like triad ``a = b + s·c`` over three float64 arrays,
  numba ``prange`` on all numba threads, counted as 24 B per element (two reads and one write,
  no write-allocate, as STREAM counts), median of 5 after a warm-up; the arrays' total size is
  stated, and a result from arrays that fit in L3 is marked as such;
* the load when the bench started: the load average and the cores other processes kept busy
  over half a second (``/proc/stat``); above 0.15 busy cores the run is marked "under load".

Results policy (every bench): the committed files in ``bench/results/`` are replaced only when
``--out bench/results`` is given; otherwise results go to ``bench/results/local/`` (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent
COMMITTED = BENCH / "results"
LOCAL = COMMITTED / "local"
#: Busy cores from other processes above which a run is "under load".
LOAD_THRESHOLD = 0.15


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def llvm_cpu() -> dict[str, Any]:
    try:
        import llvmlite.binding as llvm

        features = llvm.get_host_cpu_features()
        simd = sorted(k for k, v in features.items() if v and k in {
            "sse4.2", "avx", "avx2", "fma", "avx512f", "avx512dq", "avx512vl", "avx512bw"})
        return {"name": llvm.get_host_cpu_name(), "vector_features": simd}
    except Exception as exc:  # reported, never fatal
        return {"name": f"unavailable ({type(exc).__name__})", "vector_features": []}


def numpy_simd() -> dict[str, Any]:
    try:
        from numpy._core import _multiarray_umath as mu
    except ImportError:  # numpy < 2
        from numpy.core import _multiarray_umath as mu  # type: ignore[no-redef]
    features = getattr(mu, "__cpu_features__", {})
    dispatch = list(getattr(mu, "__cpu_dispatch__", []))
    return {"baseline": list(getattr(mu, "__cpu_baseline__", [])),
            "dispatch_enabled": [d for d in dispatch if features.get(d)],
            "dispatch_not_available": [d for d in dispatch if not features.get(d)],
            "avx512f": bool(features.get("AVX512F"))}


def l3_bytes() -> int | None:
    try:
        text = Path("/sys/devices/system/cpu/cpu0/cache/index3/size").read_text().strip()
    except OSError:
        return None
    scale = {"K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}.get(text[-1:].upper(), 1)
    return int(text.rstrip("KMGkmg")) * scale


def _busy_jiffies() -> tuple[int, int]:
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in fields]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def other_busy_cores(seconds: float = 0.5) -> float | None:
    """Cores kept busy by other processes over ``seconds`` (ours subtracted)."""
    try:
        hz = os.sysconf("SC_CLK_TCK")
        busy0, _ = _busy_jiffies()
        own0, t0 = _own_cpu_s(), time.perf_counter()
        time.sleep(seconds)
        busy1, _ = _busy_jiffies()
        own1, t1 = _own_cpu_s(), time.perf_counter()
    except (OSError, ValueError):
        return None
    return max(0.0, ((busy1 - busy0) / hz - (own1 - own0)) / (t1 - t0))


def triad_bandwidth(total_bytes: int, repeats: int = 5) -> dict[str, Any]:
    """GB/s of ``a = b + s·c`` (24 B per element), numba prange over all its threads."""
    import numba

    @numba.njit(parallel=True, cache=False)
    def triad(a: np.ndarray, b: np.ndarray, c: np.ndarray, s: float) -> None:
        for i in numba.prange(a.shape[0]):
            a[i] = b[i] + s * c[i]

    n = max(1 << 16, total_bytes // 24)
    a, b, c = np.empty(n), np.ones(n), np.full(n, 2.0)
    triad(a, b, c, 3.0)  # compile, first touch
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        triad(a, b, c, 3.0)
        times.append(time.perf_counter() - t0)
    gbs = sorted(24 * n / t / 1e9 for t in times)
    l3 = l3_bytes()
    return {"kernel": "triad a = b + s*c, float64, numba prange",
            "threads": numba.get_num_threads(),
            "array_bytes_total": 24 * n, "fits_in_l3": bool(l3 and 24 * n <= l3),
            "gb_per_s_median": gbs[len(gbs) // 2], "gb_per_s_best": gbs[-1]}


def machine_info(quick: bool = False, bandwidth: bool = True) -> dict[str, Any]:
    """Everything the header prints, as a JSON-able dict."""
    load1, load5, _ = os.getloadavg()
    busy = other_busy_cores()
    info: dict[str, Any] = {
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu_model": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
        "numpy": np.__version__, "llvm_cpu": llvm_cpu(), "numpy_simd": numpy_simd(),
        "l3_bytes": l3_bytes(), "load_average_1_5": [round(load1, 2), round(load5, 2)],
        "other_busy_cores": None if busy is None else round(busy, 2),
        "under_load": bool(busy is not None and busy > LOAD_THRESHOLD),
        "env": {k: os.environ[k] for k in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS",
                                          "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
                if k in os.environ},
    }
    if bandwidth:
        l3 = info["l3_bytes"] or 32 * 1024 ** 2
        # beyond L3 for the full run (capped at 1.5 GB); quick runs stay small and say so
        size = 48 * 1024 ** 2 if quick else min(max(4 * l3, 256 * 1024 ** 2), 1536 * 1024 ** 2)
        try:
            info["bandwidth"] = triad_bandwidth(size)
        except Exception as exc:  # reported, never fatal
            info["bandwidth"] = {"error": f"{type(exc).__name__}: {exc}"}
    return info


def header(info: dict[str, Any]) -> str:
    """The header as markdown lines."""
    llvm, simd = info["llvm_cpu"], info["numpy_simd"]
    l3 = info["l3_bytes"]
    lines = [
        f"Machine: {info['cpu_model']}, {info['cores']} cores, L3 "
        f"{'?' if l3 is None else f'{l3 / 1024 ** 2:.0f} MiB'}; LLVM CPU `{llvm['name']}` "
        f"({', '.join(llvm['vector_features']) or 'no vector features reported'}); "
        f"Python {info['python']}, numpy {info['numpy']}.",
        f"numpy SIMD: baseline {'/'.join(simd['baseline']) or '-'}; dispatch enabled "
        f"{'/'.join(simd['dispatch_enabled']) or 'none'}; not available on this CPU "
        f"{'/'.join(simd['dispatch_not_available']) or 'none'}.",
    ]
    bw = info.get("bandwidth")
    if bw and "error" not in bw:
        where = "fits in L3: a cache figure" if bw["fits_in_l3"] else "beyond L3"
        lines.append(f"Memory bandwidth (triad, {bw['threads']} threads, "
                     f"{bw['array_bytes_total'] / 1e6:.0f} MB, {where}): "
                     f"{bw['gb_per_s_median']:.1f} GB/s median, {bw['gb_per_s_best']:.1f} best.")
    elif bw:
        lines.append(f"Memory bandwidth: not measured ({bw['error']}).")
    busy = info["other_busy_cores"]
    lines.append(f"Load at start: load average {info['load_average_1_5'][0]} (1 min), other "
                 f"processes busy {busy if busy is not None else '?'} cores"
                 + (" — **UNDER LOAD: timings disturbed**" if info["under_load"] else "") + ".")
    if info["env"]:
        lines.append("Environment: " + ", ".join(f"{k}={v}" for k, v in info["env"].items()) + ".")
    return "\n".join(lines)


def add_out_argument(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--out", type=Path, default=None,
                    help="directory for the result files; the committed bench/results/ is "
                         "replaced only when named here (default: bench/results/local/, "
                         "git-ignored)")


def output_dir(out: Path | None) -> Path:
    path = LOCAL if out is None else Path(out)
    path.mkdir(parents=True, exist_ok=True)
    return path


def announce(quick: bool = False, bandwidth: bool = True) -> dict[str, Any]:
    """Measure, print the header and return the info (call once at the start of a bench)."""
    info = machine_info(quick=quick, bandwidth=bandwidth)
    print(header(info), flush=True)
    return info


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="Print the machine header the benches record.")
    ap.add_argument("--quick", action="store_true", help="small triad arrays")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    data = machine_info(quick=args.quick)
    print(json.dumps(data, indent=1) if args.json else header(data))
