"""The report of a chunked population run, read from its store: percentile bands and one
audit summary per chunk, with a chunk that failed marked as such and its patient named."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medtransport.audit import AuditReport
from medtransport.report import report_from_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report_helpers import POPULATION, parse

batch = pytest.importorskip("medtransport.batch",
                            reason="chunked population runs (medtransport.batch) need zarr")
pytest.importorskip("zarr", reason="chunked population runs need zarr")


def _leaky_for_patient_13() -> Any:
    from medtransport.plugins import get_registry

    base = get_registry().model_class("pk.two_compartment")

    def simulate(self: Any, progress: Any = None) -> Any:
        traj = base.simulate(self, progress)
        ids = list(range(*self.patients)) if getattr(self, "patients", None) else []
        if 13 in ids:  # global patient 13 leaks: its elimination is not booked in full
            traj.ledgers["drug"].outflow["eliminated"][:, ids.index(13)] *= 0.99
        return traj

    return type("LeakyFor13", (base,), {"simulate": simulate})


def test_a_store_report_has_one_audit_summary_per_chunk(tmp_path: Path) -> None:
    store = tmp_path / "pop.zarr"
    result = batch.run_population(POPULATION, n=90, chunk_size=30, store=store)
    ds = result.dataset
    conc = np.asarray(ds["concentration"].sel(tissue="central").transpose("time", "patient"))
    html = tmp_path / "pop.html"
    report_from_file(store, html)
    page = parse(html.read_text(encoding="utf-8"))
    assert page.by_id("status").attrs["data-status"] == "passed"
    # the store was laid out from a one-patient probe: its answers are not the population's
    answers = page.by_id("answers")
    assert "five-answers" not in html.read_text(encoding="utf-8")
    assert "store of 90 patients" in answers.all_text
    rows = page.by_id("chunks").find_all("tbody")[0].find_all("tr")
    assert [r.attrs["data-chunk"] for r in rows] == ["chunk 0", "chunk 1", "chunk 2"]
    for row, record in zip(rows, (result.records[i] for i in range(3)), strict=True):
        report = AuditReport.from_json(record["audit"])
        (mb,) = [r for r in report.results if r.name == "mass_balance[drug]"]
        assert float(row.find_all("td")[2].attrs["data-value"]) == mb.measured
    last = page.by_id("percentiles").find_all("tbody")[0].find_all("tr")[1]
    shown = [float(td.text) for td in last.find_all("td")[1:]]
    assert shown == pytest.approx(np.percentile(conc[-1], [5, 50, 95]), rel=1e-5)
    result.close()


def test_a_failed_chunk_is_reported_with_its_patient(tmp_path: Path) -> None:
    store = tmp_path / "leak.zarr"
    result = batch.run_population(POPULATION, n=60, chunk_size=20, store=store,
                                  model_class=_leaky_for_patient_13(), strict=False)
    failed = [r for r in result.records.values() if r["status"] != "passed"]
    if not failed:
        pytest.skip("this population runner does not expose global patient ids to a model")
    html = tmp_path / "leak.html"
    report_from_file(store, html)
    page = parse(html.read_text(encoding="utf-8"))
    assert page.by_id("status").attrs["data-status"] == "failed"
    row = page.by_id("audits").find_all("tr", **{"data-audit": "chunk[0]"})[0]
    assert row.attrs["data-passed"] == "false" and "13" in row.all_text
    (chunk0,) = [r for r in page.by_id("chunks").find_all("tr", class_="fail")]
    assert chunk0.attrs["data-chunk"] == "chunk 0"
    result.close()


def test_the_store_keeps_each_chunks_books_and_the_report_draws_the_whole_account(
        tmp_path: Path) -> None:
    """The population store keeps, per chunk, its ledger summed over its patients and its
    largest |residual|: together they equal the books of the same population run in memory,
    and the store's report draws them."""
    import medtransport as mt
    from medtransport.report.store_report import load_store

    store = tmp_path / "pop.zarr"
    batch.run_population(POPULATION, n=90, chunk_size=25, store=store).close()
    sc = mt.load_scenario(POPULATION)
    whole = mt.run(sc.with_changes(population={**batch.json_section(sc.population),
                                                "size": 90}))
    assert whole.sizes["patient"] == 90
    ds, _ = load_store(store)
    for part in ("stored", "expected", "inflow", "outflow"):
        mine = whole[f"drug_{part}"]
        expected = mine.sum("patient") if "patient" in mine.dims else mine * 90
        assert ds[f"drug_{part}"].attrs["summed_patients"] == 90
        np.testing.assert_allclose(ds[f"drug_{part}"].values, expected.values, rtol=1e-12,
                                   atol=1e-9)
    np.testing.assert_allclose(ds["drug_residual"].values,
                               np.abs(whole["drug_residual"]).max("patient").values,
                               rtol=1e-12, atol=1e-15)
    html = tmp_path / "pop.html"
    report_from_file(store, html)
    (ledger,) = parse(html.read_text(encoding="utf-8")).find_all("img", class_="ledger")
    assert "summed over 90 patients" in ledger.attrs["alt"]
    ds.close()


def test_a_failed_chunk_stays_out_of_the_population_account(tmp_path: Path) -> None:
    from medtransport.report.store_report import load_store

    store = tmp_path / "leak.zarr"
    result = batch.run_population(POPULATION, n=60, chunk_size=20, store=store,
                                  model_class=_leaky_for_patient_13(), strict=False)
    passed = [r for r in result.records.values() if r["status"] == "passed"]
    assert len(passed) == 2  # chunk 0 (patients 0–19) holds the leaky patient 13
    ds, _ = load_store(store)
    assert ds["drug_stored"].attrs["summed_patients"] == 40
    # the account of the passed patients balances: their residual is round-off
    assert float(ds["drug_residual"].max()) < 1e-6
    result.close()
    ds.close()


def test_a_store_without_chunk_books_is_reported_without_a_ledger_plot(tmp_path: Path) -> None:
    """Stores written before the chunks kept their books still get their report."""
    import shutil

    store = tmp_path / "old.zarr"
    batch.run_population(POPULATION, n=40, chunk_size=20, store=store).close()
    for item in store.iterdir():
        if item.name.endswith(("_chunk_total", "_chunk_max")):
            shutil.rmtree(item)
    html = tmp_path / "old.html"
    report_from_file(store, html)
    page = parse(html.read_text(encoding="utf-8"))
    assert page.by_id("status").attrs["data-status"] == "passed"
    assert not page.find_all("img", class_="ledger") and page.find_all("img", class_="bands")


def test_a_virtual_trial_store_report_shows_the_drawn_covariates(
        tmp_path: Path) -> None:
    trial = POPULATION.with_name("vancomycin_population_virtual_trial.yaml")
    store, html = tmp_path / "trial.zarr", tmp_path / "trial.html"
    result = batch.run_population(trial, n=80, chunk_size=40, store=store)
    result.close()
    report_from_file(store, html)
    text = html.read_text(encoding="utf-8")
    assert "could not be drawn" not in text  # the family plot used to need 'amount'
    page = parse(text)
    # made from the store alone: the model (and so its own plot) is not rebuilt, and says so
    assert "never rebuilds the model" in page.by_id("family").all_text
    rows = {r.find_all("th")[0].text: [td.text for td in r.find_all("td")]
            for r in page.by_id("covariates").find_all("tbody")[0].find_all("tr")}
    assert {"weight", "age", "sex", "serum creatinine"} <= set(rows)
    # the scenario draws weight log-normally around a median of 75 kg (ω 0.2): the sample
    # median of 80 patients lies within ~3 standard errors (about 2.1 kg) of it
    assert rows["weight"][0] == "kg" and abs(float(rows["weight"][1]) - 75.0) < 7.0
    assert "% women" in rows["sex"][1]
    # the scenario's own patient is shown as the template, not as a patient of the trial
    assert "template" in page.by_id("patient").find_all("caption")[0].text


def test_a_population_run_report_shows_the_scenario_as_written(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from medtransport.cli import main

    trial = POPULATION.with_name("vancomycin_population_virtual_trial.yaml")
    html = tmp_path / "r.html"
    result = CliRunner().invoke(main, ["run", str(trial), "--population", "40", "--chunk-size",
                                       "20", "--store", str(tmp_path / "t.zarr"), "--report",
                                       str(html)])
    assert result.exit_code == 0, result.output
    assert f"writing the report to {html}…" in result.output
    page = parse(html.read_text(encoding="utf-8"))
    shown = page.by_id("scenario-text").text
    assert "# A virtual trial of vancomycin" in shown and "45 year" in shown
    # the template patient and the doses as written too, not pint's canonical spelling
    patient = {r.find_all("th")[0].text: r.find_all("td")[0].text
               for r in page.by_id("patient").find_all("tr") if r.find_all("td")}
    assert patient["age"] == "45 year" and patient["serum_creatinine"] == "0.9 mg/dL"
    doses = page.by_id("doses").all_text
    assert "every 12 h" in doses and "43200 s" not in doses


def test_the_report_a_population_run_writes_draws_the_model_family_plot(
        tmp_path: Path) -> None:
    """`run --population --store --report` is the trusted path: the run has its model, so the
    page draws the PK family's own plot (percentile bands and the drug account per patient);
    the report of the same store made later from the file alone still never builds it."""
    from click.testing import CliRunner

    from medtransport.cli import main

    store, html = tmp_path / "p.zarr", tmp_path / "run.html"
    result = CliRunner().invoke(main, ["run", str(POPULATION), "--population", "30",
                                       "--chunk-size", "15", "--store", str(store),
                                       "--report", str(html)])
    assert result.exit_code == 0, result.output
    family = parse(html.read_text(encoding="utf-8")).by_id("family")
    (image,) = family.find_all("img", class_="family")
    assert image.attrs["src"].startswith("data:image/png;base64,")
    # the alt text names the PK family's own panels, not the default plot's
    assert "pk.two_compartment" in image.attrs["alt"]
    assert "central concentration, 30 virtual patients" in image.attrs["alt"]
    assert not family.find_all("p", class_="family-note")
    # the five answers of the one-patient probe are not passed off as the population's
    assert "records none" in parse(html.read_text(encoding="utf-8")).by_id("answers").all_text

    later = tmp_path / "later.html"
    report_from_file(store, later)
    family = parse(later.read_text(encoding="utf-8")).by_id("family")
    assert not family.find_all("img", class_="family")
    assert "never rebuilds the model" in family.all_text
