"""A 2-worker dask.distributed LocalCluster on the loopback interface gives the same
population as a run in this process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medtransport.batch import run_population

distributed = pytest.importorskip("distributed")

SCENARIO: dict[str, Any] = {
    "name": "vancomycin population on a cluster",
    "model": "pk.two_compartment",
    "parameters": {"clearance": "4.6 L/h", "central_volume": "30 L",
                   "intercompartmental_clearance": "6.9 L/h", "peripheral_volume": "40 L"},
    "events": [{"type": "infusion", "amount": "1 g", "duration": "1 h", "every": "12 h",
                "count": 2}],
    "population": {"size": 160, "variability": {"clearance": 0.3, "central_volume": 0.2}},
    "time": {"stop": "24 h", "step": "1 h"},
    "seed": 5,
}


def test_a_two_worker_local_cluster_matches_the_local_run(tmp_path: Path) -> None:
    local = run_population(SCENARIO, chunk_size=40, store=tmp_path / "local.zarr")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=None)
    try:
        with distributed.Client(cluster) as client:
            client.wait_for_workers(2, timeout=30)
            remote = run_population(SCENARIO, chunk_size=40, store=tmp_path / "remote.zarr",
                                    client=client)
    finally:
        cluster.close()
    workers = {(r["host"], r["pid"]) for r in remote.records.values()}
    assert len(remote.records) == 4 and len(workers) == 2  # both workers ran chunks
    for name in ("concentration", "clearance", "nca_auc_24h", "drug_max_abs_residual"):
        np.testing.assert_array_equal(remote.dataset[name].values, local.dataset[name].values)
    assert remote.dataset.attrs["audit_status"] == "passed"


@pytest.mark.slow
def test_a_metrics_only_cluster_run_writes_what_a_local_run_writes(tmp_path: Path) -> None:
    """Two workers count the bands and write the metrics themselves: the same arrays, the
    same band counts and the same files (nothing more) as one process; and it resumes."""
    from medtransport.store import PopulationStore

    sc = {**SCENARIO, "population": {**SCENARIO["population"], "output": {"curves": "none"}}}
    local = run_population(sc, chunk_size=40, store=tmp_path / "local.zarr")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=None)

    class Killed(Exception):
        pass

    def kill(record: dict[str, Any]) -> None:
        if record["index"] == 1:
            raise Killed

    try:
        with distributed.Client(cluster) as client:
            client.wait_for_workers(2, timeout=30)
            with pytest.raises(Killed):
                run_population(sc, chunk_size=40, store=tmp_path / "remote.zarr",
                               client=client, on_chunk=kill)
            remote = run_population(sc, chunk_size=40, store=tmp_path / "remote.zarr",
                                    client=client)
    finally:
        cluster.close()
    assert remote.resumed_chunks >= 1
    a, b = local.dataset, remote.dataset
    assert set(a.data_vars) == set(b.data_vars) and "concentration" not in b
    for name in a.data_vars:
        np.testing.assert_array_equal(b[name].values, a[name].values, err_msg=str(name))
    np.testing.assert_array_equal(
        PopulationStore.open(remote.path).load_bands()[0].counts,
        PopulationStore.open(local.path).load_bands()[0].counts)

    def files(root: Path) -> set[str]:
        return {str(f.relative_to(root)) for f in root.rglob("*") if f.is_file()}

    assert files(remote.path) == files(local.path)
