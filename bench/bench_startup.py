"""Start-up of the ``medtransport`` command: wall time of fresh processes, median of N.

    python bench/bench_startup.py            # 10 fresh processes per command
    python bench/bench_startup.py --quick    # 3 per command
    python bench/bench_startup.py --baseline /tmp/old   # also an older tree, interleaved

``--baseline DIR``: a source tree of another version (``git archive COMMIT | tar -x -C DIR``)
timed the same way with ``PYTHONPATH=DIR:DIR/plugins``, its runs interleaved with this
tree's so that both see the same load; the ratio is what a shared machine can still tell.

Each command runs once untimed first (warm disk cache: the .pyc files, pint's definitions cache
and numba's kernel cache exist), then N times, each in a new interpreter, as a user would type
it. The load average at the start and the end is printed: on a shared machine the figures are
upper bounds.

dask is an optional extra (``distributed``); when it is installed, xarray imports it (and
``dask.distributed`` on every NetCDF write) whatever the run. The ``run`` command is therefore
also timed with dask hidden (``sys.modules["dask"] = None``), as in a default install.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import machine

ROOT = Path(__file__).resolve().parent.parent
GOALS = {"--help": 0.3, "models": 0.3, "run": 1.5, "run (dask hidden)": 1.5}


def commands(exe: str, out: Path) -> dict[str, list[str]]:
    scenario = str(ROOT / "examples" / "scenarios" / "theophylline_oral.yaml")
    run = ["run", scenario, "-o", str(out / "t.nc"), "-q"]
    hidden = ("import sys; sys.modules['dask'] = None; from medtransport.cli import main; "
              f"sys.argv = ['medtransport', *{run!r}]; main()")
    return {"--help": [exe, "--help"], "models": [exe, "models"], "run": [exe, *run],
            "run (dask hidden)": [sys.executable, "-c", hidden]}


def wall(argv: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    # from a neutral directory: with `python -c`, the current one would come first on sys.path
    done = subprocess.run(argv, capture_output=True, text=True, check=False, env=env,
                          cwd=tempfile.gettempdir())
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 processes per command")
    parser.add_argument("-n", type=int, default=None, help="processes per command (default 10)")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="another version's source tree, timed interleaved")
    args = parser.parse_args()
    machine.announce(quick=True)
    n = args.n or (3 if args.quick else 10)
    exe = shutil.which("medtransport", path=str(Path(sys.executable).parent)) or "medtransport"
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        base_env = None
        if args.baseline is not None:
            base_env = {**os.environ, "PYTHONPATH": f"{args.baseline}:{args.baseline}/plugins"}
        for name, argv in commands(exe, Path(tmp)).items():
            wall(argv)  # warm the disk cache and the on-disk caches
            times, base = [], []
            if base_env is not None:
                wall(argv, base_env)
            for _ in range(n):
                times.append(wall(argv))
                if base_env is not None:
                    base.append(wall(argv, base_env))
            times.sort()
            rows.append((name, statistics.median(times), times[0], times[-1],
                         statistics.median(base) if base else None))
    print(f"medtransport start-up, median of {n} fresh processes (load average "
          f"{load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end, "
          f"{os.cpu_count()} CPUs)")
    extra = " baseline median s | baseline / this |" if args.baseline else ""
    print(f"| command | median s | min s | max s | goal s |{extra}")
    print("|---|---|---|---|---|" + ("---|---|" if args.baseline else ""))
    for name, median, low, high, base in rows:
        tail = f" {base:.2f} | {base / median:.1f}× |" if base is not None else ""
        print(f"| `medtransport {name}` | {median:.2f} | {low:.2f} | {high:.2f} | "
              f"< {GOALS[name]} |{tail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
