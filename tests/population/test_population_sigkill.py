"""A population run killed with SIGKILL (no clean-up of any kind) resumes from the chunks it
had written, to the same numbers as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from medtransport.batch import run_population
from medtransport.store import PopulationStore

SCENARIO: dict[str, Any] = {
    "name": "killed population",
    "model": "pk.two_compartment",
    "parameters": {"clearance": "4.6 L/h", "central_volume": "30 L",
                   "intercompartmental_clearance": "6.9 L/h", "peripheral_volume": "40 L"},
    "events": [{"type": "infusion", "amount": "1 g", "duration": "1 h", "every": "12 h",
                "count": 2}],
    "population": {"size": 400, "variability": {"clearance": 0.3, "central_volume": 0.2}},
    "time": {"stop": "24 h", "step": "30 min"},
    "seed": 8,
}

CHILD = r"""
import json, sys, time
from medtransport.batch import run_population
# slow enough to be killed in the middle
run_population(json.loads(sys.argv[1]), chunk_size=40, store=sys.argv[2],
               on_chunk=lambda record: time.sleep(0.4))
"""


def test_a_run_killed_with_sigkill_resumes_to_the_same_result(tmp_path: Path) -> None:
    store = tmp_path / "killed.zarr"
    child = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(SCENARIO), str(store)])
    records = store / ".medtransport" / "chunks"
    deadline = time.monotonic() + 90
    try:
        while not (records.is_dir() and len(list(records.glob("*.json"))) >= 2):
            assert child.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no chunk was written in 90 s"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    killed = PopulationStore.open(store)
    done = killed.completed()
    assert 2 <= len(done) < 10
    # a chunk is kept when its curves are written and its band counts are checkpointed; one
    # killed between the two is run again (to the same bits, checked below)
    saved = killed.load_bands()
    counted = set(done) & (set(saved[1]) if saved is not None else set())
    resumed = run_population(SCENARIO, chunk_size=40, store=store)
    assert resumed.resumed_chunks == len(counted)
    reference = run_population(SCENARIO, chunk_size=40, store=tmp_path / "whole.zarr")
    for name in ("concentration", "clearance", "nca_auc_24h", "drug_max_abs_residual"):
        np.testing.assert_array_equal(resumed.dataset[name].values,
                                      reference.dataset[name].values)
