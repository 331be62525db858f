"""Population runs in chunks streamed to Zarr: chunk invariance, resumption, failing chunks
named by patient, covariates reaching the PK model, and the summaries against numpy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

import medtransport as mt
from medtransport.batch import PopulationAuditFailure, run_population
from medtransport.cli import main
from medtransport.store import PopulationStore, StoreMismatch, open_population
from medtransport.summaries import curve_metrics, summary_curve
from medtransport_pk.model import TwoCompartment
from medtransport_pk.nca import nca

BASE: dict[str, Any] = {
    "name": "vancomycin population",
    "model": "pk.two_compartment",
    "patient": {"weight": "70 kg", "age": "45 year", "sex": "male",
                "serum_creatinine": "0.9 mg/dL"},
    "parameters": {"clearance": "4.6 L/h", "central_volume": "30 L",
                   "intercompartmental_clearance": "6.9 L/h", "peripheral_volume": "40 L"},
    "events": [{"type": "infusion", "amount": "1 g", "duration": "1 h", "every": "12 h",
                "count": 2}],
    "population": {"size": 240, "variability": {"clearance": 0.3, "central_volume": 0.2},
                   "correlations": {"clearance, central_volume": 0.4}},
    "time": {"stop": "24 h", "step": "30 min"},
    "seed": 17,
}


def values(result: Any, name: str) -> np.ndarray:
    return np.asarray(result.dataset[name].values)


def test_results_do_not_depend_on_the_chunking(tmp_path: Path) -> None:
    one = run_population(BASE, chunk_size=240, store=tmp_path / "a.zarr")
    many = run_population(BASE, chunk_size=37, store=tmp_path / "b.zarr")
    assert len(many.records) == 7 and len(one.records) == 1
    for name in ("clearance", "central_volume"):  # the same draws, bit for bit
        np.testing.assert_array_equal(values(one, name), values(many, name))
    # the batched matrix exponential picks its scaling per batch: equal to round-off
    np.testing.assert_allclose(values(many, "concentration"), values(one, "concentration"),
                               rtol=1e-13, atol=1e-13)
    # and a chunk equals the plain in-memory run of the whole population
    whole = mt.run(BASE)
    np.testing.assert_allclose(values(many, "concentration"),
                               whole["concentration"].values, rtol=1e-13, atol=1e-13)


def test_an_interrupted_run_resumes_to_the_same_result(tmp_path: Path) -> None:
    reference = run_population(BASE, chunk_size=50, store=tmp_path / "ref.zarr")

    class Killed(Exception):
        pass

    def kill_after_two(record: dict[str, Any]) -> None:
        if record["index"] == 1:
            raise Killed

    with pytest.raises(Killed):
        run_population(BASE, chunk_size=50, store=tmp_path / "run.zarr",
                       on_chunk=kill_after_two)
    store = PopulationStore.open(tmp_path / "run.zarr")
    assert sorted(store.completed()) == [0, 1]
    with pytest.raises(mt.MedtransportError, match="have no audited result"):
        open_population(tmp_path / "run.zarr")
    partial = open_population(tmp_path / "run.zarr", allow_incomplete=True)
    assert int(partial["patient_passed"].sum()) == 100
    assert np.isnan(partial["concentration"].isel(patient=150).values).all()

    seen: list[int] = []
    resumed = run_population(BASE, chunk_size=50, store=tmp_path / "run.zarr",
                             on_chunk=lambda r: seen.append(r["index"]))
    assert seen == [2, 3, 4] and resumed.resumed_chunks == 2
    for name in ("concentration", "clearance", "nca_auc_24h"):
        np.testing.assert_array_equal(values(resumed, name), values(reference, name))
    assert resumed.dataset.attrs["audit_status"] == "passed"


def test_a_chunk_cut_off_while_being_written_is_written_again(tmp_path: Path,
                                                            monkeypatch: Any) -> None:
    reference = run_population(BASE, chunk_size=80, store=tmp_path / "ref.zarr")
    original = PopulationStore.write_chunk

    def crash_in_chunk_one(self: Any, start: int, stop: int, ds: Any) -> None:
        if start == 80:
            # half of the chunk's data reaches the disk, then the process dies
            ds = ds.copy()
            ds["concentration"][:] = -1.0
            original(self, start, stop, ds)
            raise KeyboardInterrupt
        original(self, start, stop, ds)

    monkeypatch.setattr(PopulationStore, "write_chunk", crash_in_chunk_one)
    with pytest.raises(KeyboardInterrupt):
        run_population(BASE, chunk_size=80, store=tmp_path / "run.zarr")
    monkeypatch.setattr(PopulationStore, "write_chunk", original)
    store = PopulationStore.open(tmp_path / "run.zarr")
    assert sorted(store.completed()) == [0]  # the cut-off chunk is not declared done
    resumed = run_population(BASE, chunk_size=80, store=tmp_path / "run.zarr")
    np.testing.assert_array_equal(values(resumed, "concentration"),
                                  values(reference, "concentration"))


def test_a_store_of_another_run_is_not_resumed(tmp_path: Path) -> None:
    run_population(BASE, chunk_size=120, store=tmp_path / "s.zarr")
    with pytest.raises(StoreMismatch, match="chunk_size"):
        run_population(BASE, chunk_size=60, store=tmp_path / "s.zarr")
    other = {**BASE, "seed": 18}
    with pytest.raises(StoreMismatch, match="scenario, seed"):
        run_population(other, chunk_size=120, store=tmp_path / "s.zarr")
    again = run_population(other, chunk_size=60, store=tmp_path / "s.zarr", overwrite=True)
    assert again.chunk_size == 60


class LeakyForPatient147(TwoCompartment):
    """Patient 147 (population-wide id) loses 1 % of its eliminated drug from the books."""

    def simulate(self, progress: Any = None) -> Any:
        traj = super().simulate(progress)
        hit = np.flatnonzero(self.patient_ids == 147)
        if hit.size:
            traj.ledgers["drug"].outflow["eliminated"][:, hit[0]] *= 0.99
        return traj


def test_a_failing_chunk_names_its_patients_and_spares_the_others(tmp_path: Path) -> None:
    with pytest.raises(PopulationAuditFailure) as info:
        run_population(BASE, chunk_size=50, store=tmp_path / "f.zarr",
                       model_class=LeakyForPatient147)
    failures = info.value.failures
    assert [(f.index, f.patients) for f in failures] == [(2, [147])]
    assert "patients 100–149" in str(info.value) and "patient 147" in str(info.value)
    assert "mass_balance[drug]" in failures[0].reason
    ds = open_population(tmp_path / "f.zarr", allow_incomplete=True)
    passed = ds["patient_passed"].values
    assert passed.sum() == 190 and not passed[100:150].any()
    # the other chunks hold the same numbers as a run without the broken patient
    clean = run_population(BASE, chunk_size=50, store=tmp_path / "c.zarr")
    np.testing.assert_array_equal(ds["concentration"].values[:, passed],
                                  values(clean, "concentration")[:, passed])
    assert ds.attrs["audit_status"] == "failed"


def test_sampled_covariates_drive_the_pk_covariate_models(tmp_path: Path) -> None:
    sc = {**BASE, "parameters": {**BASE["parameters"], "allometric": {},
                                 "renal_function": {"fraction": 0.7}},
          "population": {"size": 300, "variability": {"clearance": 0.25},
                         "covariates": {
                             "weight": {"distribution": "lognormal", "median": "72 kg",
                                        "omega": 0.2, "lower": "40 kg"},
                             "age": {"distribution": "normal", "mean": "60 year",
                                     "sd": "15 year", "lower": "18 year", "upper": "95 year"},
                             "serum_creatinine": {"distribution": "lognormal",
                                                  "median": "1 mg/dL", "omega": 0.3},
                             "sex": {"female_fraction": 0.5}},
                         "covariate_correlations": {"weight, sex": -0.5}}}
    result = run_population(sc, chunk_size=100, store=tmp_path / "cov.zarr")
    ds = result.dataset.compute()
    w, age, scr = ds["weight"].values, ds["age"].values, ds["serum_creatinine"].values
    female = ds["female"].values.astype(bool)
    crcl = (140 - age) * w / (72 * scr) * np.where(female, 0.85, 1.0)  # Cockcroft–Gault
    from medtransport.runner import prepare

    model = prepare(sc)
    eta = model.etas["clearance"]
    expected_cl = 4.6 * (w / 70) ** 0.75 * (0.3 + 0.7 * crcl / 100) * np.exp(eta)
    np.testing.assert_allclose(ds["clearance"].values, expected_cl, rtol=1e-12)
    np.testing.assert_allclose(ds["central_volume"].values, 30 * w / 70, rtol=1e-12)
    # lighter women: the copula's correlation shows in the sampled weights
    assert w[female].mean() < w[~female].mean()


def test_summaries_match_numpy_and_the_pk_nca(tmp_path: Path) -> None:
    result = run_population(BASE, chunk_size=60, store=tmp_path / "s.zarr")
    whole = mt.run(BASE)
    conc = whole["concentration"].sel(tissue="central").values  # (time, patient)
    bands = result.bands([5, 50, 95], source="store").compute()
    np.testing.assert_allclose(bands.values, np.percentile(conc, [5, 50, 95], axis=1),
                               rtol=1e-12)
    t_h = whole["time"].values / 3600
    for i in (0, 101, 239):  # the plugin's own NCA, patient by patient
        ref = nca(mt.ureg.Quantity(t_h, "h"), mt.ureg.Quantity(conc[:, i], "mg/L"),
                  route="infusion")
        assert float(result.dataset["nca_cmax"][i]) == pytest.approx(ref.cmax.m_as("mg/L"))
        assert float(result.dataset["nca_auc_last"][i]) == pytest.approx(
            ref.auc_last.m_as("mg*h/L"), rel=1e-10)
    auc = result.dataset["nca_auc_24h"].values
    mics = [0.25, 0.5, 1.0]
    pta = result.pta(mics).compute()
    np.testing.assert_array_equal(pta.values, [np.mean(auc >= 400 * m) for m in mics])
    assert 0 < float(pta.sel(mic=0.5)) < 1 and np.all(np.diff(pta.values) <= 0)
    dist = result.nca([50]).compute()
    assert float(dist["nca_cmax"].sel(percentile=50)) == pytest.approx(
        np.median(conc.max(axis=0)), rel=1e-12)


def test_curve_metrics_of_a_known_curve() -> None:
    import xarray as xr

    t_h = np.linspace(0.0, 24.0, 97)
    k = 0.2  # C = 10·exp(−k t): AUC0–24 = 10/k·(1 − e^{−24k}) — log-down is exact here
    curve = xr.DataArray(10 * np.exp(-k * t_h)[:, None], dims=("time", "patient"),
                         coords={"time": t_h * 3600}, attrs={"units": "mg/L"})
    m = curve_metrics(curve)
    assert m["nca_auc_last"][0][0] == pytest.approx(10 / k * (1 - np.exp(-24 * k)), rel=1e-12)
    assert m["nca_auc_24h"][0][0] == pytest.approx(m["nca_auc_last"][0][0], rel=1e-12)
    assert m["nca_cmax"][0][0] == 10 and m["nca_tmax"][0][0] == 0
    assert m["nca_cmin"][0][0] == pytest.approx(10 * np.exp(-24 * k), rel=1e-12)
    assert summary_curve(xr.Dataset({"concentration": curve})).dims == ("time", "patient")



@pytest.mark.parametrize("compiled", [True, False])
def test_curve_metrics_match_a_plain_loop_on_awkward_curves(compiled: bool) -> None:
    """The per-patient pass (compiled, and in plain Python as a client lays out a store)
    against the rules written out one segment at a time: rises, plateaus, falls to zero and
    back, a trough before the peak, and a NaN curve."""
    import math

    import xarray as xr

    rng = np.random.default_rng(12)
    t_h = np.linspace(0.0, 48.0, 193)
    curves = rng.uniform(0.0, 5.0, (193, 6))
    curves[:, 0] = np.r_[np.zeros(20), np.linspace(0, 8, 40), 8 * np.exp(-0.1 * np.arange(133))]
    curves[:, 1] = 3.0  # a plateau: the first time is Tmax
    curves[50:60, 2] = 0.0  # falls to zero and rises again
    curves[:, 3] = np.linspace(1.0, 9.0, 193)  # rising only: Cmin after the peak is the peak
    curves[7, 4] = np.nan
    curve = xr.DataArray(curves, dims=("time", "patient"), coords={"time": t_h * 3600},
                         attrs={"units": "mg/L"})
    m = curve_metrics(curve, compiled=compiled)
    for p in range(6):
        c = curves[:, p]
        if np.isnan(c).any():
            for key in ("nca_cmax", "nca_tmax", "nca_cmin", "nca_auc_last", "nca_auc_24h"):
                assert np.isnan(m[key][0][p])
            continue
        auc = auc24 = 0.0
        for k in range(len(t_h) - 1):
            dt, c0, c1 = t_h[k + 1] - t_h[k], c[k], c[k + 1]
            seg = dt * (c0 - c1) / math.log(c0 / c1) if 0 < c1 < c0 else dt * (c0 + c1) / 2
            auc += seg
            auc24 += seg if t_h[k] >= 24.0 - 1e-9 else 0.0
        peak = int(np.argmax(c))
        assert m["nca_cmax"][0][p] == c.max() and m["nca_tmax"][0][p] == t_h[peak]
        assert m["nca_cmin"][0][p] == c[peak:].min() and m["nca_clast"][0][p] == c[-1]
        assert m["nca_auc_last"][0][p] == pytest.approx(auc, rel=1e-13)
        assert m["nca_auc_24h"][0][p] == pytest.approx(auc24, rel=1e-13)

def test_the_cli_runs_a_population_and_resumes_it(tmp_path: Path) -> None:
    scenario = tmp_path / "pop.json"
    scenario.write_text(json.dumps(BASE), encoding="utf-8")
    store, out, png = tmp_path / "c.zarr", tmp_path / "summary.nc", tmp_path / "bands.png"
    args = ["run", str(scenario), "--population", "120", "--chunk-size", "40",
            "--store", str(store), "-o", str(out), "--plot", str(png)]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "120 patients in 3 chunks of 40 (0 resumed)" in first.output
    assert out.is_file() and png.stat().st_size > 10_000
    summary = mt.read_netcdf(out)
    assert summary["concentration_percentiles"].dims == ("band_percentile", "time")
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0 and "(3 resumed)" in again.output
    missing = CliRunner().invoke(main, ["run", str(scenario), "--population", "10"])
    assert missing.exit_code == 2 and "--store" in missing.output


class RaisesForChunkTwo(TwoCompartment):
    """A model that crashes (not an audit failure) for the patients from 100 on."""

    def simulate(self, progress: Any = None) -> Any:
        if self.patient_range[0] >= 100:
            raise FloatingPointError("solver blew up")
        return super().simulate(progress)


def test_a_chunk_that_raises_is_reported_with_all_its_patients(tmp_path: Path) -> None:
    with pytest.raises(PopulationAuditFailure) as info:
        run_population({**BASE, "population": {**BASE["population"], "size": 150}},
                       chunk_size=50, store=tmp_path / "r.zarr", model_class=RaisesForChunkTwo)
    (failure,) = info.value.failures
    assert failure.patients == list(range(100, 150))
    assert "FloatingPointError: solver blew up" in failure.reason
    partial = run_population({**BASE, "population": {**BASE["population"], "size": 150}},
                             chunk_size=50, store=tmp_path / "r.zarr",
                             model_class=RaisesForChunkTwo, strict=False)
    assert [f.index for f in partial.failures] == [2]
    assert int(partial.dataset["patient_passed"].sum()) == 100
    # a rerun tries the failed chunk again, and only it
    seen: list[int] = []
    run_population({**BASE, "population": {**BASE["population"], "size": 150}},
                   chunk_size=50, store=tmp_path / "r.zarr",
                   on_chunk=lambda r: seen.append(r["index"]))
    assert seen == [2]


def test_a_population_size_and_bad_options_are_checked() -> None:
    with pytest.raises(mt.ScenarioError, match=r"population\.size"):
        run_population(BASE, n=0)
    with pytest.raises(mt.ScenarioError, match="needs a population section"):
        run_population({k: v for k, v in BASE.items() if k != "population"})
    with pytest.raises(mt.ScenarioError, match="dtype"):
        run_population(BASE, dtype="float16")
