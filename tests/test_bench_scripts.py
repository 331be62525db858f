"""The bench scripts import on the test environment: a helper moved between bench modules
(as the CPU model once was) must not leave a bench that fails before measuring anything."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_every_bench_script_imports_without_its_peers() -> None:
    scripts = sorted(p.stem for p in BENCH.glob("bench_*.py"))
    assert len(scripts) >= 10
    code = ("import importlib, sys\n"
            f"sys.path.insert(0, {str(BENCH)!r})\n"
            "bad = []\n"
            f"for name in {scripts!r}:\n"
            "    try:\n"
            "        importlib.import_module(name)\n"
            "    except Exception as exc:\n"
            "        bad.append(f'{name}: {type(exc).__name__}: {exc}')\n"
            "print('\\n'.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, cwd=BENCH.parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", out.stdout
