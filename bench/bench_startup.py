"""Start-up of the ``medtransport`` command: wall time of fresh processes, median of N.

    python bench/bench_startup.py            # 10 fresh processes per command
    python bench/bench_startup.py --quick    # 3 per command

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

ROOT = Path(__file__).resolve().parent.parent
GOALS = {"--help": 0.3, "models": 0.3, "run": 1.5, "run (dask hidden)": 1.5}


def commands(exe: str, out: Path) -> dict[str, list[str]]:
    scenario = str(ROOT / "examples" / "scenarios" / "theophylline_oral.yaml")
    run = ["run", scenario, "-o", str(out / "t.nc"), "-q"]
    hidden = ("import sys; sys.modules['dask'] = None; from medtransport.cli import main; "
              f"sys.argv = ['medtransport', *{run!r}]; main()")
    return {"--help": [exe, "--help"], "models": [exe, "models"], "run": [exe, *run],
            "run (dask hidden)": [sys.executable, "-c", hidden]}


def wall(argv: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 processes per command")
    parser.add_argument("-n", type=int, default=None, help="processes per command (default 10)")
    args = parser.parse_args()
    n = args.n or (3 if args.quick else 10)
    exe = shutil.which("medtransport", path=str(Path(sys.executable).parent)) or "medtransport"
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for name, argv in commands(exe, Path(tmp)).items():
            wall(argv)  # warm the disk cache and the on-disk caches
            times = sorted(wall(argv) for _ in range(n))
            rows.append((name, statistics.median(times), times[0], times[-1]))
    print(f"medtransport start-up, median of {n} fresh processes (load average "
          f"{load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end, "
          f"{os.cpu_count()} CPUs)")
    print("| command | median s | min s | max s | goal s |")
    print("|---|---|---|---|---|")
    for name, median, low, high in rows:
        print(f"| `medtransport {name}` | {median:.2f} | {low:.2f} | {high:.2f} | "
              f"< {GOALS[name]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
