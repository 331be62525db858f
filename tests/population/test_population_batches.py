"""A stored chunk computed as several batches (:mod:`medtransport.batch_parts`): the same
per-patient numbers, band counts and books as chunks of one batch each, failing patients named
from any batch, and a run laid out with batches resumed as it was laid out."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr

import medtransport.batch as batch
from medtransport.audit.report import AuditReport, AuditResult
from medtransport.batch import PopulationAuditFailure, run_population
from medtransport.batch_parts import merge_parts, merge_reports
from medtransport.store import PopulationStore, open_population
from medtransport_pk.model import TwoCompartment

BASE: dict[str, Any] = {
    "name": "vancomycin population, batches",
    "model": "pk.two_compartment",
    "patient": {"weight": "70 kg", "age": "45 year", "sex": "male",
                "serum_creatinine": "0.9 mg/dL"},
    "parameters": {"clearance": "4.6 L/h", "central_volume": "30 L",
                   "intercompartmental_clearance": "6.9 L/h", "peripheral_volume": "40 L",
                   "allometric": {"reference_weight": "70 kg"}},
    "events": [{"type": "infusion", "amount": "1 g", "duration": "1 h", "every": "12 h",
                "count": 2}],
    "population": {"size": 130, "variability": {"clearance": 0.3, "central_volume": 0.2},
                   "covariates": {"weight": {"distribution": "lognormal", "median": "75 kg",
                                             "omega": 0.2}}},
    "time": {"stop": "24 h", "step": "15 min"},
    "seed": 31,
}


def scenario(**output: Any) -> dict[str, Any]:
    sc = copy.deepcopy(BASE)
    sc["population"]["output"] = output
    return sc


def per_patient(path: Path) -> dict[str, np.ndarray]:
    ds = open_population(path)
    return {str(n): np.asarray(v.values) for n, v in ds.data_vars.items()
            if "patient" in v.dims or "sampled_patient" in v.dims}


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Chunks of one batch each: 13 chunks of 10 patients."""
    path = tmp_path_factory.mktemp("single") / "one.zarr"
    return run_population(scenario(curves="none"), chunk_size=10, store=path)


def test_batched_chunks_store_the_numbers_of_single_batch_chunks(single: Any,
                                                                 tmp_path: Path) -> None:
    # 3 chunks of 50 patients, each run as batches of 10 (the last chunk: 3 batches)
    batched = run_population(scenario(curves="none"), chunk_size=50, batch_size=10,
                             store=tmp_path / "b.zarr")
    a, b = per_patient(single.path), per_patient(batched.path)
    assert {"nca_auc_24h", "clearance", "drug_max_abs_residual"} <= set(a)
    assert set(a) == set(b)
    for name in a:
        np.testing.assert_array_equal(b[name], a[name], err_msg=name)
    # the same counts, hence the same streamed bands
    np.testing.assert_array_equal(PopulationStore.open(batched.path).load_bands()[0].counts,
                                  PopulationStore.open(single.path).load_bands()[0].counts)
    # the books: 3 rows (one per stored chunk) that add up to the 13 rows of the other run
    one, many = open_population(single.path), open_population(batched.path)
    total = many["drug_stored_chunk_total"]
    assert total.sizes["chunk"] == 3
    np.testing.assert_allclose(total.values.sum(axis=0),
                               one["drug_stored_chunk_total"].values.sum(axis=0), rtol=1e-13)
    # chunk 1 (patients 50-99) is batches 5-9 of the other run: sums and maxima
    np.testing.assert_allclose(total.values[1],
                               one["drug_stored_chunk_total"].values[5:10].sum(axis=0),
                               rtol=1e-13)
    np.testing.assert_array_equal(many["drug_residual_chunk_max"].values[1],
                                  one["drug_residual_chunk_max"].values[5:10].max(axis=0))
    assert [r["stop"] - r["start"] for _, r in sorted(batched.records.items())] == [50, 50, 30]


def test_sampled_curves_of_batched_chunks_are_those_of_single_batch_chunks(
        tmp_path: Path) -> None:
    sc = scenario(keep_curves=17, every="1 h")
    one = run_population(sc, chunk_size=10, store=tmp_path / "one.zarr")
    many = run_population(sc, chunk_size=60, batch_size=7, store=tmp_path / "many.zarr")
    a, b = per_patient(one.path), per_patient(many.path)
    assert "sampled_concentration" in a and a["sampled_concentration"].size
    for name in a:
        np.testing.assert_array_equal(b[name], a[name], err_msg=name)


class LeakyForPatients(TwoCompartment):
    """A broken model: patients 23 and 41 lose drug that no ledger route accounts for."""

    def simulate(self, progress: Any = None) -> Any:
        traj = super().simulate(progress)
        for p in (23, 41):
            hit = np.flatnonzero(self.patient_ids == p)
            if hit.size:
                traj.ledgers["drug"].outflow["eliminated"][5:, hit[0]] *= 0.98
        return traj


def test_every_failing_patient_of_every_batch_is_named(tmp_path: Path) -> None:
    with pytest.raises(PopulationAuditFailure) as info:
        run_population(scenario(curves="none"), chunk_size=50, batch_size=10,
                       store=tmp_path / "f.zarr", model_class=LeakyForPatients)
    failures = info.value.failures
    # both in chunk 0, in its third and fifth batches
    assert [(f.index, f.patients) for f in failures] == [(0, [23, 41])]
    assert "mass_balance[drug]" in failures[0].reason
    assert "1 more of its batches" in failures[0].reason
    ds = open_population(tmp_path / "f.zarr", allow_incomplete=True)
    assert ds["patient_passed"].values.sum() == 80


def test_a_batched_run_resumes_as_it_was_laid_out(tmp_path: Path) -> None:
    sc = scenario(curves="none")
    reference = run_population(sc, chunk_size=40, batch_size=15, store=tmp_path / "ref.zarr")

    class Stop(Exception):
        pass

    def stop_after_first(record: dict[str, Any]) -> None:
        raise Stop

    with pytest.raises(Stop):
        run_population(sc, chunk_size=40, batch_size=15, store=tmp_path / "run.zarr",
                       on_chunk=stop_after_first)
    # resumed without saying the chunk size: the store's is taken
    resumed = run_population(sc, batch_size=15, store=tmp_path / "run.zarr")
    assert resumed.chunk_size == 40 and resumed.resumed_chunks == 1
    a, b = per_patient(reference.path), per_patient(resumed.path)
    for name in a:
        np.testing.assert_array_equal(b[name], a[name], err_msg=name)


def test_the_default_groups_batches_only_when_no_full_curve_is_kept() -> None:
    kept = batch.Keep(curves=True)
    metrics = batch.Keep(curves=False)
    sampled = batch.Keep(curves=True, sampled=(1, 2, 3))
    assert batch.batches_per_chunk(kept, 10**6, 2100) == 1
    assert batch.batches_per_chunk(metrics, 10**6, 2100) == batch.BATCHES_PER_CHUNK
    assert batch.batches_per_chunk(sampled, 10**6, 2100) == batch.BATCHES_PER_CHUNK
    # a small run keeps MIN_CHUNKS chunks
    assert batch.batches_per_chunk(metrics, 16 * 2100 * 3, 2100) == 3
    assert batch.batches_per_chunk(metrics, 1000, 2100) == 1


def test_books_a_batch_cannot_merge_are_refused() -> None:
    part = xr.Dataset({"drug_stored_chunk_mean": (("chunk", "time"), np.ones((1, 3)))})
    with pytest.raises(ValueError, match="drug_stored_chunk_mean"):
        merge_parts([part, part])


def test_the_merged_report_keeps_each_audit_s_worst_batch_and_its_patient() -> None:
    def report(measured: float, patient: int, passed: bool = True) -> str:
        return AuditReport([AuditResult("mass_balance[drug]", passed, measured, 1.0, "mg",
                                        where={"patient": patient}),
                            AuditResult("finiteness", True, 0.0, 0.0)]).to_json()

    merged = AuditReport.from_json(merge_reports([(0, report(0.1, 3)), (10, report(0.4, 2)),
                                                  (20, report(0.2, 9))]))
    balance = next(r for r in merged.results if r.name == "mass_balance[drug]")
    assert balance.measured == 0.4 and balance.where["patient"] == 12
    assert "worst of the chunk's 3 batches" in balance.detail
    assert [r.name for r in merged.results] == ["mass_balance[drug]", "finiteness"]
    # a failed batch beats a larger passed one
    merged = AuditReport.from_json(merge_reports([(0, report(0.9, 1)),
                                                  (5, report(0.3, 4, passed=False))]))
    balance = next(r for r in merged.results if r.name == "mass_balance[drug]")
    assert not balance.passed and balance.where["patient"] == 9


def test_stored_band_rows_are_the_histogram_s_percentiles(single: Any) -> None:
    """bands() takes the rows the run wrote at its end when they hold the percentiles asked
    for: the same numbers the histogram gives (which it decodes otherwise)."""
    hist = PopulationStore.open(single.path).load_bands()[0]
    stored = single._stored_bands([5.0, 50.0, 97.5])
    assert stored is not None
    np.testing.assert_array_equal(stored.values, hist.percentiles([5.0, 50.0, 97.5]))
    np.testing.assert_array_equal(single.bands([5.0, 50.0, 97.5]).values, stored.values)
    # a percentile the run did not write comes from the histogram
    assert single._stored_bands([33.0]) is None
    np.testing.assert_array_equal(single.bands([33.0]).values, hist.percentiles([33.0]))
