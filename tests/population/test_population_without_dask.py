"""Without dask installed, population runs stream to Zarr and summarise in numpy; asking for
a cluster says what to install."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

SCRIPT = r"""
import json, sys
for name in ("dask", "dask.array", "distributed"):
    sys.modules[name] = None  # as if not installed
import numpy as np
from medtransport.batch import run_population, summarize
from medtransport.errors import MedtransportError

scenario = {"name": "no dask", "model": "pk.one_compartment",
            "parameters": {"clearance": "4.6 L/h", "central_volume": "30 L"},
            "events": [{"type": "bolus", "amount": "500 mg"}],
            "population": {"size": 90, "variability": {"clearance": 0.3}},
            "time": {"stop": "24 h", "step": "1 h"}, "seed": 4}
res = run_population(scenario, chunk_size=40, store=sys.argv[1])
summary = summarize(res)
conc = res.dataset["concentration"].sel(tissue="central").values
try:
    run_population(scenario, chunk_size=40, store=sys.argv[1] + "2", client="local")
    cluster = "ran"
except MedtransportError as exc:
    cluster = str(exc)
print(json.dumps({"array": type(res.dataset["concentration"].data).__module__,
                  "bands": res.bands(source="store").values.tolist(),
                  "streamed": summary["bands"].values.tolist(),
                  "neighbours": [np.sort(conc, axis=1)[:, [int(np.floor(89 * q / 100)),
                                                          int(np.ceil(89 * q / 100))]]
                                 .T.tolist() for q in (5, 25, 50, 75, 95)],
                  "expected": np.percentile(conc, [5, 25, 50, 75, 95], axis=1).tolist(),
                  "cluster": cluster}))
"""


def test_population_runs_and_summaries_work_without_dask(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "p.zarr")],
                         capture_output=True, text=True, timeout=120, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["array"] == "numpy"
    assert got["bands"] == got["expected"]  # same order statistics, same interpolation
    # the summary's bands are streamed: within 2^-8 relative (medtransport.bands), not 0
    streamed, exact = np.asarray(got["streamed"]), np.asarray(got["expected"])
    # x_(j) and x_(j+1) of each percentile: the bound is relative to the larger of them
    larger = np.abs(np.asarray(got["neighbours"])).max(axis=1)
    assert np.all(np.abs(streamed - exact) <= 2.0**-8 * larger + 2.0**-32)
    assert not np.array_equal(streamed, exact)
    assert "pip install 'medtransport[distributed]'" in got["cluster"]
