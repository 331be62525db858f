"""What each command imports: the heavy libraries only when the command uses them.

Wall-clock start-up is measured in ``bench/bench_startup.py``; these tests pin the causes (an
import that slipped back to module level), which do not depend on the machine's load."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("numba", "matplotlib", "xarray", "scipy.special", "dask", "jinja2",
         "medtransport_pk.model", "medtransport_bioheat.model")


def _imported_by(code: str) -> set[str]:
    # dask is an optional extra (`distributed`), absent from a default install; when present,
    # xarray imports it (and it imports scipy.special and jinja2) on its own, so it is hidden
    # here to see what medtransport itself imports.
    probe = (f"import sys\nsys.modules['dask'] = None\n{code}\nimport json\n"
             f"print(json.dumps([m for m in {HEAVY!r} if sys.modules.get(m) is not None]))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          cwd=ROOT, check=True)
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_models_and_help_import_no_model_module_nor_numerics() -> None:
    code = ("from click.testing import CliRunner\nfrom medtransport.cli import main\n"
            "for args in (['--help'], ['models']):\n"
            "    assert CliRunner().invoke(main, args).exit_code == 0\n")
    assert _imported_by(code) == set()


def test_a_one_patient_run_loads_neither_numba_nor_matplotlib(tmp_path: Path) -> None:
    out = tmp_path / "t.nc"
    code = ("from click.testing import CliRunner\nfrom medtransport.cli import main\n"
            "r = CliRunner().invoke(main, ['run', 'examples/scenarios/theophylline_oral.yaml',"
            f" '-o', {str(out)!r}, '-q'])\nassert r.exit_code == 0, r.output\n")
    loaded = _imported_by(code)
    assert "medtransport_pk.model" in loaded and "xarray" in loaded  # the probe works
    assert not loaded & {"numba", "matplotlib", "scipy.special", "jinja2"}
