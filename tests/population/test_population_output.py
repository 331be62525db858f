"""What a population keeps (``population.output``) and the bands streamed while it runs:
metrics-only and full-curve runs agree bit for bit, streamed bands are within their stated
bound of the exact ones, a killed metrics-only run resumes to the same store, chunking does
not change any per-patient number, and bad ``output`` values are refused by field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import medtransport.batch as batch
from medtransport.bands import BandHistogram, chunk_counts, relative_bound
from medtransport.batch import PopulationAuditFailure, run_population
from medtransport.errors import ScenarioError
from medtransport.scenario import load_scenario
from medtransport.store import PopulationStore, open_population
from medtransport_pk.model import TwoCompartment

BASE: dict[str, Any] = {
    "name": "vancomycin population, output",
    "model": "pk.two_compartment",
    "patient": {"weight": "70 kg", "age": "45 year", "sex": "male",
                "serum_creatinine": "0.9 mg/dL"},
    "parameters": {"clearance": "4.6 L/h", "central_volume": "30 L",
                   "intercompartmental_clearance": "6.9 L/h", "peripheral_volume": "40 L",
                   "allometric": {"reference_weight": "70 kg"}},
    "events": [{"type": "infusion", "amount": "1 g", "duration": "1 h", "every": "12 h",
                "count": 2}],
    "population": {"size": 150, "variability": {"clearance": 0.3, "central_volume": 0.2},
                   "correlations": {"clearance, central_volume": 0.4},
                   "covariates": {"weight": {"distribution": "lognormal", "median": "75 kg",
                                             "omega": 0.2}}},
    "time": {"stop": "24 h", "step": "15 min"},
    "seed": 23,
}


def scenario(**output: Any) -> dict[str, Any]:
    sc = copy.deepcopy(BASE)
    sc["population"]["output"] = output
    return sc


def per_patient(path: Path) -> dict[str, np.ndarray]:
    ds = open_population(path)
    return {str(n): np.asarray(v.values) for n, v in ds.data_vars.items()
            if v.dims == ("patient",)}


def store_arrays(path: Path) -> dict[str, np.ndarray]:
    ds = open_population(path)
    return {str(n): np.asarray(v.values) for n, v in ds.data_vars.items()}


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> Any:
    path = tmp_path_factory.mktemp("full") / "full.zarr"
    return run_population(scenario(), chunk_size=40, store=path)


def test_metrics_only_agrees_with_full_curves_bit_for_bit(full: Any, tmp_path: Path) -> None:
    metrics = run_population(scenario(curves="none"), chunk_size=40,
                             store=tmp_path / "m.zarr")
    a, b = per_patient(full.path), per_patient(metrics.path)
    assert {"nca_cmax", "nca_auc_24h", "clearance", "weight", "drug_max_abs_residual"} <= set(a)
    assert set(a) == set(b)
    for name in a:
        np.testing.assert_array_equal(b[name], a[name], err_msg=name)
    assert "concentration" not in metrics.dataset  # no curve at all
    # and the bands were counted from the same curves: the same counts, the same bands
    np.testing.assert_array_equal(PopulationStore.open(metrics.path).load_bands()[0].counts,
                                  PopulationStore.open(full.path).load_bands()[0].counts)
    size = sum(f.stat().st_size for f in metrics.path.rglob("*") if f.is_file())
    full_size = sum(f.stat().st_size for f in full.path.rglob("*") if f.is_file())
    assert size < full_size


def test_a_sampled_subset_and_a_coarser_grid_keep_the_full_run_s_numbers(
        full: Any, tmp_path: Path) -> None:
    kept = run_population(scenario(keep_curves=25, every="1 h"), chunk_size=40,
                          store=tmp_path / "s.zarr")
    ds = kept.dataset
    ids = ds["sampled_patient"].values
    assert ids.size == 25 and np.all(np.diff(ids) > 0) and ids.max() < 150
    # the same subset whatever the chunking (drawn once from the seed)
    other = run_population(scenario(keep_curves=25, every="1 h"), chunk_size=150,
                           store=tmp_path / "s2.zarr")
    np.testing.assert_array_equal(other.dataset["sampled_patient"].values, ids)
    whole = full.dataset["concentration"]
    assert ds.sizes["time"] == 25  # 24 h every hour, both ends
    np.testing.assert_array_equal(ds["time"].values, whole["time"].values[::4])
    np.testing.assert_array_equal(
        ds["sampled_concentration"].transpose("time", "sampled_patient", "tissue").values,
        whole.isel(patient=ids, time=slice(None, None, 4)).transpose(
            "time", "patient", "tissue").values)
    a, b = per_patient(full.path), per_patient(kept.path)
    for name in a:
        np.testing.assert_array_equal(b[name], a[name], err_msg=name)
    # the bands stay on the solve grid
    assert kept.bands([50]).sizes["time"] == whole.sizes["time"]


@pytest.mark.parametrize("percentiles", [[0, 2.5, 5, 25, 50, 75, 95, 97.5, 100], [1, 99]])
def test_streamed_bands_are_within_the_stated_bound_of_the_exact_ones(
        full: Any, percentiles: list[float]) -> None:
    streamed = full.bands(percentiles).values
    exact = full.bands(percentiles, source="store").compute().values
    curve = full.dataset["concentration"].sel(tissue="central").values  # (time, patient)
    n = curve.shape[1]
    s = np.sort(curve, axis=1)
    h = (n - 1) * np.asarray(percentiles) / 100.0
    lo, hi = np.floor(h).astype(int), np.minimum(np.floor(h).astype(int) + 1, n - 1)
    bound = relative_bound() * np.maximum(np.abs(s[:, lo]), np.abs(s[:, hi])).T + 2.0**-32
    assert np.all(np.abs(streamed - exact) <= bound)
    # a real approximation, not the exact values by another name
    assert np.max(np.abs(streamed - exact)) > 0
    # and the bands written into the store are the same numbers
    stored = full.dataset["concentration_band"].sel(band_percentile=[5.0, 50.0, 95.0]).values
    np.testing.assert_array_equal(stored, full.bands([5, 50, 95]).values)


def test_the_histogram_bound_holds_for_signs_zeros_and_tiny_values() -> None:
    rng = np.random.default_rng(3)
    x = rng.lognormal(0.0, 3.0, size=(3001, 6)) * rng.choice([-1.0, 1.0], size=(3001, 6))
    x[:, 0] = 0.0
    x[:50, 1] = 1e-300
    x[:, 2] = np.abs(x[:, 2])
    hist = BandHistogram(6)
    for a in range(0, 3001, 700):  # merged from blocks, in any order
        hist.add_curve(x[a:a + 700])
    q = np.array([0, 0.5, 10, 33.3, 50, 90, 99.9, 100])
    got = hist.percentiles(q)
    s = np.sort(x, axis=0)
    h = 3000 * q / 100
    lo, hi = np.floor(h).astype(int), np.minimum(np.floor(h).astype(int) + 1, 3000)
    bound = relative_bound() * np.maximum(np.abs(s[lo]), np.abs(s[hi])) + 2.0**-32
    exact = np.percentile(x, q, axis=0)
    assert np.all(np.abs(got - exact) <= bound)
    assert np.all(got[:, 0] == 0.0)
    # the bound is attained in order of magnitude: a coarser grid (K = 3) breaks K = 7's bound
    coarse = BandHistogram(6, bits=3)
    coarse.add_curve(x)
    assert np.any(np.abs(coarse.percentiles(q) - exact) > bound)
    # values beyond 2^E: a percentile that lands on them is NaN, not a wrong number
    big = np.full((10, 1), 2.0**40)
    over = BandHistogram(1)
    over.add_curve(big)
    assert np.isnan(over.percentiles([50])).all()
    # counts merge exactly: the blocks' sum is one pass's histogram
    whole = BandHistogram(6)
    whole.add(*chunk_counts(x))
    np.testing.assert_array_equal(whole.counts, hist.counts)


@pytest.mark.slow
def test_a_killed_metrics_only_run_resumes_to_the_same_store(tmp_path: Path,
                                                             monkeypatch: Any) -> None:
    sc = scenario(curves="none")
    reference = run_population(sc, chunk_size=30, store=tmp_path / "ref.zarr")

    class Killed(Exception):
        pass

    def kill_after(index: int) -> Any:
        def hook(record: dict[str, Any]) -> None:
            if record["index"] == index:
                raise Killed
        return hook

    with pytest.raises(Killed):
        run_population(sc, chunk_size=30, store=tmp_path / "run.zarr", on_chunk=kill_after(1))
    seen: list[int] = []
    resumed = run_population(sc, chunk_size=30, store=tmp_path / "run.zarr",
                             on_chunk=lambda r: seen.append(r["index"]))
    assert seen == [2, 3, 4] and resumed.resumed_chunks == 2
    # a checkpoint older than the last chunks: those chunks are run again, same store
    monkeypatch.setattr(batch, "BAND_CHECKPOINT_CHEAP", -1.0)
    monkeypatch.setattr(batch, "BAND_CHECKPOINT_RATIO", 1e9)
    with pytest.raises(Killed):
        run_population(sc, chunk_size=30, store=tmp_path / "old.zarr", on_chunk=kill_after(2))
    assert PopulationStore.open(tmp_path / "old.zarr").load_bands()[1] == [0]
    seen.clear()
    again = run_population(sc, chunk_size=30, store=tmp_path / "old.zarr",
                           on_chunk=lambda r: seen.append(r["index"]))
    assert seen == [1, 2, 3, 4] and again.resumed_chunks == 1
    ref = store_arrays(reference.path)
    for got in (resumed, again):
        arrays = store_arrays(got.path)
        assert set(arrays) == set(ref)
        for name, value in ref.items():
            np.testing.assert_array_equal(arrays[name], value, err_msg=name)
        np.testing.assert_array_equal(PopulationStore.open(got.path).load_bands()[0].counts,
                                      PopulationStore.open(reference.path).load_bands()[0]
                                      .counts)


def test_chunking_changes_no_per_patient_number(full: Any, tmp_path: Path) -> None:
    other = run_population(scenario(), chunk_size=150, store=tmp_path / "one.zarr")
    a, b = store_arrays(full.path), store_arrays(other.path)
    for name in a:
        if "chunk" in open_population(full.path)[name].dims:
            continue  # a row per chunk: there are 4 chunks here, 1 there
        np.testing.assert_array_equal(b[name], a[name], err_msg=name)


def test_a_store_laid_out_again_at_the_same_path_is_written_as_a_new_one(
        full: Any, tmp_path: Path) -> None:
    """The arrays a process opened to write one store are not reused for another laid out
    at the same path (other chunk size, other patients): the second store holds what a
    run into a fresh path holds."""
    path = tmp_path / "again.zarr"
    run_population(scenario(), chunk_size=40, store=path)
    other = copy.deepcopy(BASE)
    other["seed"] = 5
    other["population"]["size"] = 90
    run_population(other, chunk_size=30, store=path, overwrite=True)
    fresh = run_population(other, chunk_size=30, store=tmp_path / "fresh.zarr")
    a, b = store_arrays(path), store_arrays(fresh.path)
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_two_threads_write_the_same_store_as_one(full: Any, tmp_path: Path) -> None:
    """Chunks computed two at a time (and finished out of order) change no stored number,
    band count or per-chunk row."""
    other = run_population(scenario(), chunk_size=40, store=tmp_path / "two.zarr", threads=2)
    assert sorted(other.records) == sorted(full.records) == [0, 1, 2, 3]
    assert {r["status"] for r in other.records.values()} == {"passed"}
    a, b = store_arrays(full.path), store_arrays(other.path)
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(b[name], a[name], err_msg=name)


@pytest.mark.parametrize(("output", "field", "words"), [
    ({"curves": "some"}, "population.output.curves", "'all' or 'none'"),
    ({"keep_curves": 0}, "population.output.keep_curves", "greater than or equal to 1"),
    ({"keep_curves": 5, "curves": "none"}, "population.output", "keep_curves"),
    ({"every": "1 h", "curves": "none"}, "population.output", "every"),
    ({"every": "5 kg"}, "population.output.every", "[time]"),
    ({"bands": "often"}, "population.output.bands", "boolean"),
    ({"resolution": 3}, "population.output.resolution", "unknown field"),
])
def test_bad_output_values_are_refused_naming_the_field(output: dict[str, Any], field: str,
                                                       words: str) -> None:
    with pytest.raises(ScenarioError) as err:
        load_scenario(scenario(**output))
    text = str(err.value)
    assert field in text and words in text


def test_an_every_that_is_not_a_multiple_of_the_step_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"population\.output\.every.*multiple"):
        run_population(scenario(every="20 min"), store=tmp_path / "x.zarr")
    assert not (tmp_path / "x.zarr").exists()


class LeakBetweenKeptTimes(TwoCompartment):
    """Patient 37 books 1 mg too much eliminated at the second solve time only — a time that
    ``every: 1 h`` does not keep on a 15-min grid."""

    def simulate(self, progress: Any = None) -> Any:
        traj = super().simulate(progress)
        hit = np.flatnonzero(self.patient_ids == 37)
        if hit.size:
            traj.ledgers["drug"].outflow["eliminated"][1, hit[0]] += 1.0
        return traj


@pytest.mark.parametrize("output", [{"curves": "none"}, {"keep_curves": 10, "every": "1 h"}])
def test_the_audits_still_see_every_patient_at_every_solve_time(
        tmp_path: Path, output: dict[str, Any]) -> None:
    with pytest.raises(PopulationAuditFailure) as info:
        run_population(scenario(**output), chunk_size=40, store=tmp_path / "leak.zarr",
                       model_class=LeakBetweenKeptTimes)
    assert [(f.index, f.patients) for f in info.value.failures] == [(0, [37])]
    assert "mass_balance[drug]" in info.value.failures[0].reason


def test_the_report_of_a_metrics_only_store_draws_the_streamed_bands(tmp_path: Path) -> None:
    from medtransport.report.figures import population_bands
    from medtransport.report.store_report import load_store

    result = run_population(scenario(curves="none"), chunk_size=75, store=tmp_path / "m.zarr")
    ds, _ = load_store(result.path)
    plot = population_bands(ds, ["drug"])
    assert plot is not None and "streamed" in plot.title
    # its table holds the stored bands at the median's peak
    peak = int(np.argmax(result.bands([50]).values[0]))
    stored = ds["concentration_band"].sel(band_percentile=[5.0, 50.0, 95.0]).values[:, peak]
    assert [float(v) for v in plot.table[0][2:]] == pytest.approx(stored, rel=1e-3)
