"""The audit report's content: the numbers in the page are those in the result's attributes.

The page is read back with the standard library's HTML parser. The oracle is the result itself
(its ``audit_report``, ``model_id``, ``seed`` … attributes and its ledger variables), never the
report's own code; unit conversions are checked against hand-computed values.
"""

from __future__ import annotations

import base64
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr

import medtransport as mt
from medtransport.audit import AuditReport
from medtransport.audit.report import AuditResult
from medtransport.plugins import get_registry
from medtransport.report import render_report, report_from_failure, report_from_file
from medtransport.report.content import _doses
from medtransport.runner import prepare
from medtransport.testing import build_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report_helpers import (
    DYE,
    FIVE_QUESTIONS,
    POPULATION,
    VANCOMYCIN,
    Element,
    leaky_failure,
    parse,
    scenario_copy,
)


@pytest.fixture(scope="module")
def dye(tmp_path_factory: pytest.TempPathFactory) -> tuple[xr.Dataset, Element, str]:
    """The dye example written to NetCDF, read back, and reported from the file."""
    directory = tmp_path_factory.mktemp("dye")
    mt.write_netcdf(mt.run(DYE), directory / "dye.nc")
    report_from_file(directory / "dye.nc", directory / "dye.html")
    html = (directory / "dye.html").read_text(encoding="utf-8")
    return mt.read_netcdf(directory / "dye.nc"), parse(html), html


@pytest.fixture(scope="module")
def failure(tmp_path_factory: pytest.TempPathFactory) -> tuple[mt.AuditFailure, Element, str]:
    exc, model = leaky_failure()
    path = report_from_failure(exc, tmp_path_factory.mktemp("leak") / "leak.html", model=model)
    html = path.read_text(encoding="utf-8")
    return exc, parse(html), html


def audit_rows(page: Element) -> list[Element]:
    return page.by_id("audits").find_all("tr", **{"data-passed": "true"}) + \
        page.by_id("audits").find_all("tr", **{"data-passed": "false"})


def cell(row: Element, cls: str) -> Element:
    (found,) = row.find_all("td", class_=cls)
    return found


def check_audits_match(page: Element, report: AuditReport) -> None:
    rows = {r.attrs["data-audit"]: r for r in audit_rows(page)}
    assert sorted(rows) == sorted(r.name for r in report.results)
    for result in report.results:
        row = rows[result.name]
        for key in ("measured", "tolerance"):
            expected = getattr(result, key)
            shown = cell(row, key)
            exact = float(shown.attrs["data-value"])
            assert exact == expected or (math.isnan(exact) and math.isnan(expected))
            # what a reader sees agrees to the printed digits
            assert float(shown.text) == pytest.approx(expected, rel=1e-5, abs=0)
        assert row.attrs["data-passed"] == ("true" if result.passed else "false")
        assert cell(row, "verdict").all_text == ("pass" if result.passed else "FAIL")


# ----------------------------------------------------------------------------- a passing run

def test_the_audit_table_shows_the_results_values(dye: tuple[xr.Dataset, Element, str]) -> None:
    ds, page, _ = dye
    report = AuditReport.from_json(ds.attrs["audit_report"])
    assert len(report.results) >= 5
    check_audits_match(page, report)
    assert page.by_id("status").attrs["data-status"] == "passed"


def test_provenance_is_that_of_the_result(dye: tuple[xr.Dataset, Element, str]) -> None:
    ds, page, _ = dye
    assert page.by_id("model-id").attrs["data-value"] == ds.attrs["model_id"] == "diffusion.fick"
    assert page.by_id("model-version").attrs["data-value"] == ds.attrs["model_version"]
    assert page.by_id("package-version").attrs["data-value"] == \
        ds.attrs["medtransport_version"] == mt.__version__
    assert page.by_id("seed").attrs["data-value"] == str(int(ds.attrs["seed"])) == "1"
    scenario_text = page.by_id("scenario-text").text
    recorded = json.loads(ds.attrs["scenario"])
    assert recorded["name"] in scenario_text and "diffusivity: 4.5e-10 m^2/s" in scenario_text


def test_the_five_answers_and_the_initial_amount_in_ledger_units(
        dye: tuple[xr.Dataset, Element, str]) -> None:
    _, page, _ = dye
    rows = {r.find_all("th")[0].all_text: r.find_all("td")[0].all_text
            for r in page.by_id("five-answers").find_all("tr")[1:]}
    assert set(FIVE_QUESTIONS) <= set(rows)
    # 1 µmol/cm² = 1e-6 mol / 1e-4 m² = 0.01 mol/m² (by hand)
    assert "1.0 µmol/cm²" in rows["how much it starts with"]
    assert "0.01 mol/m²" in rows["how much it starts with"]
    assert "robin" in rows["what may leave"] or "convective" in rows["what may leave"]


def test_the_ledger_image_is_embedded_with_alt_text(dye: tuple[xr.Dataset, Element, str]) -> None:
    ds, page, _ = dye
    (img,) = page.find_all("img", class_="ledger")
    prefix = "data:image/png;base64,"
    assert img.attrs["src"].startswith(prefix)
    assert base64.b64decode(img.attrs["src"][len(prefix):])[:8] == b"\x89PNG\r\n\x1a\n"
    worst = float(np.max(np.abs(ds["solute_residual"].values)))
    # shown in the unit the scenario wrote its amount in: 1 mol/m² = 100 µmol/cm²
    assert ds["solute_residual"].attrs["units"] == "mol/m**2"
    assert f"{worst * 100:.6g} µmol/cm²" in img.attrs["alt"] and "solute" in img.attrs["alt"]
    family = page.find_all("img", class_="family")
    assert len(family) == 1 and family[0].attrs["alt"]


def test_the_page_is_self_contained_and_accessible(dye: tuple[xr.Dataset, Element, str]) -> None:
    _, page, html = dye
    lowered = html.lower()
    for needle in ("<script", "<link", "http://", "https://", "url(", "@import"):
        assert needle not in lowered, needle
    (doc,) = page.find_all("html")
    assert doc.attrs["lang"] == "en"
    assert len(page.find_all("h1")) == 1 and len(page.find_all("h2")) >= 5
    for img in page.find_all("img"):
        assert img.attrs.get("alt", "").strip(), "every image has alt text"
    for table in page.find_all("table"):
        assert table.find_all("caption") and table.find_all("th")


def test_a_dose_is_converted_to_the_ledger_unit() -> None:
    ds = mt.run(VANCOMYCIN)
    page = parse(render_report(ds))
    (row,) = page.by_id("doses").find_all("tbody")[0].find_all("tr")
    assert "1 g = 1000 mg of drug in the ledger" in row.all_text
    # the example of DESIGN.md: 0.1 mmol/kg × 70 kg = 7 mmol, not 7.4
    rows = _doses({"patient": {"weight": "70 kg"},
                   "events": [{"type": "bolus", "amount": "0.1 mmol/kg"}]}, {"agent": "mmol"})
    assert rows == [("events[0]: bolus",
                     "0.1 mmol/kg × 70 kg (patient weight) = 7 mmol of agent in the ledger")]


# ----------------------------------------------------------------------------- a failed run

def test_a_failed_run_is_marked_failed_and_says_where(
        failure: tuple[mt.AuditFailure, Element, str]) -> None:
    exc, page, html = failure
    assert str(exc).split(" — ")[0] in html  # the refusal's own words
    assert page.by_id("status").attrs["data-status"] == "failed"
    (title,) = page.find_all("title")
    assert title.text.startswith("FAILED")
    check_audits_match(page, exc.report)
    (mb,) = [r for r in exc.report.failures if r.name == "mass_balance[solute]"]
    row = page.by_id("audits").find_all("tr", **{"data-audit": "mass_balance[solute]"})[0]
    where = cell(row, "where").all_text
    assert f"{mb.where['time_s']:.6g} s" in where
    # the leak is 10 % of what is stored after t0: the worst residual is 10 % of stored(t1)
    stored = exc.dataset["solute_stored"].values
    assert mb.measured == pytest.approx(np.max(stored[1:] / 0.9 * 0.1), rel=1e-9)
    (img,) = page.find_all("img", class_="ledger")
    assert "FAILED" in img.attrs["alt"] and "dashed black line" in img.attrs["alt"]


def test_a_normalization_failure_names_the_first_output_time() -> None:
    base = get_registry().model_class("diffusion.fick")

    def inflated(self: Any) -> Any:
        return {k: v * 1.1 for k, v in base.initial_amounts(self).items()}

    broken = type("Inflated", (base,), {"initial_amounts": inflated})
    with pytest.raises(mt.AuditFailure) as info:
        mt.run(build_model(broken, mt.load_scenario(DYE)))
    (norm,) = [r for r in info.value.report.failures if r.name.startswith("normalization")]
    assert norm.where == {"time_s": 0.0}
    page = parse(render_report(info.value.dataset, report=info.value.report))
    row = page.by_id("audits").find_all("tr", **{"data-audit": norm.name})[0]
    assert cell(row, "where").all_text == "t = 0 s"


def test_a_run_refused_before_it_started_still_gets_a_report() -> None:
    model = prepare(DYE)
    report = AuditReport([AuditResult("stability[ftcs]", False, 0.9, 0.5, "", "r too large",
                                      stage="pre")])
    page = parse(render_report(None, report=report, model=model,
                               failure_message="refused before running"))
    assert page.by_id("status").attrs["data-status"] == "failed"
    check_audits_match(page, report)
    assert not page.find_all("img")
    assert "no ledger to plot" in page.all_text


def test_a_family_plot_that_raises_leaves_a_note(dye: tuple[xr.Dataset, Element, str]) -> None:
    ds, _, _ = dye
    base = get_registry().model_class("diffusion.fick")

    def plot(self: Any, dataset: Any, figure: Any) -> None:
        raise RuntimeError("no such colormap")

    model = build_model(type("BadPlot", (base,), {"plot": plot}), mt.load_scenario(DYE))
    page = parse(render_report(ds, model=model))
    (note,) = page.find_all("p", class_="family-note")
    assert "RuntimeError: no such colormap" in note.all_text
    assert page.find_all("img", class_="ledger")  # the rest of the report is still there


def test_a_result_whose_model_is_not_installed_is_still_reported(
        dye: tuple[xr.Dataset, Element, str]) -> None:
    ds, _, _ = dye
    alien = ds.copy()
    scenario = json.loads(ds.attrs["scenario"])
    scenario["model"] = "elsewhere.unknown_model"
    alien.attrs["scenario"] = json.dumps(scenario)
    alien.attrs["model_id"] = "elsewhere.unknown_model"
    page = parse(render_report(alien))
    # the five answers the run recorded: nothing needs the model here
    assert "how much it starts with" in page.by_id("answers").all_text
    check_audits_match(page, AuditReport.from_json(ds.attrs["audit_report"]))
    assert page.find_all("img", class_="ledger")


def test_a_result_written_before_the_answers_were_recorded_says_so(
        dye: tuple[xr.Dataset, Element, str]) -> None:
    ds, _, _ = dye
    old = ds.copy()
    del old.attrs["report_model"]
    page = parse(render_report(old))
    answers = page.by_id("answers")
    assert not page.find_all("table", id="five-answers") and "written before" in answers.all_text
    assert "never rebuilds the model" in answers.all_text
    assert page.find_all("img", class_="ledger")  # the rest of the report is still there


def test_not_a_result_is_refused_clearly() -> None:
    with pytest.raises(mt.MedtransportError, match="audit_report"):
        render_report(xr.Dataset())


# ----------------------------------------------------------------------------- a population

@pytest.fixture(scope="module")
def population() -> tuple[xr.Dataset, Element]:
    ds = mt.run(POPULATION)
    return ds, parse(render_report(ds))


def test_population_percentile_bands_are_those_of_the_data(
        population: tuple[xr.Dataset, Element]) -> None:
    ds, page = population
    assert page.by_id("n-patients").text == str(ds.sizes["patient"]) == "1000"
    conc = ds["concentration"].sel(tissue="central").transpose("time", "patient").values
    q = np.percentile(conc, [5, 50, 95], axis=1)
    rows = page.by_id("percentiles").find_all("tbody")[0].find_all("tr")
    last = [float(td.text) for td in rows[1].find_all("td")[1:]]
    assert last == pytest.approx(q[:, -1], rel=1e-5)
    peak = int(np.argmax(q[1]))
    at_peak = [float(td.text) for td in rows[0].find_all("td")[1:]]
    assert at_peak == pytest.approx(q[:, peak], rel=1e-5)
    (img,) = page.find_all("img", class_="bands")
    assert "1000 patients" in img.attrs["alt"]


def test_population_per_block_audit_summary(population: tuple[xr.Dataset, Element]) -> None:
    ds, page = population
    report = AuditReport.from_json(ds.attrs["audit_report"])
    (mb,) = [r for r in report.results if r.name == "mass_balance[drug]"]
    residual = np.abs(ds["drug_residual"].transpose("time", "patient").values).max(axis=0)
    rows = page.by_id("chunks").find_all("tr", class_="pass") + \
        page.by_id("chunks").find_all("tr", class_="fail")
    assert len(rows) == 10  # 1000 patients in blocks of 100
    seen = []
    for row in rows:
        first, last = (int(x) for x in row.find_all("td")[1].text.split("–"))
        values = row.find_all("td")
        assert float(values[2].attrs["data-value"]) == residual[first:last + 1].max()
        assert float(values[4].attrs["data-value"]) == mb.tolerance
        assert int(values[3].text) == first + int(np.argmax(residual[first:last + 1]))
        seen.extend(range(first, last + 1))
    assert seen == list(range(1000))
    # the worst block's maximum is the audit's measured value
    assert max(float(r.find_all("td")[2].attrs["data-value"]) for r in rows) == mb.measured


def test_a_leak_in_one_patient_is_found_in_its_block() -> None:
    base = get_registry().model_class("pk.two_compartment")

    def simulate(self: Any, progress: Any = None) -> Any:
        traj = base.simulate(self, progress)
        traj.ledgers["drug"].outflow["eliminated"][:, 13] *= 0.99  # not booked in full
        return traj

    scenario = scenario_copy(POPULATION, population={"size": 40,
                                                     "variability": {"clearance": 0.3}})
    model = build_model(type("LeakyFor13", (base,), {"simulate": simulate}),
                        mt.load_scenario(scenario))
    with pytest.raises(mt.AuditFailure) as info:
        mt.run(model)
    page = parse(render_report(info.value.dataset, report=info.value.report, model=model))
    row = page.by_id("audits").find_all("tr", **{"data-audit": "mass_balance[drug]"})[0]
    assert "patient 13" in cell(row, "where").all_text
    failed = page.by_id("chunks").find_all("tr", class_="fail")
    assert [r.attrs["data-chunk"] for r in failed] == ["block 3"]  # patients 12–15
    values = failed[0].find_all("td")
    assert values[1].text == "12–15" and values[3].text == "13" and values[5].text == "1"


def test_a_population_file_s_default_plot_draws_the_cohort_s_ledger_not_a_line_per_patient(
        population: tuple[xr.Dataset, Element]) -> None:
    """The report of a population file draws the model's default plot; with one line and one
    legend entry per patient (3,000 entries) the axes collapsed and drawing took 20 s."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from medtransport.plotting import default_plot

    ds, _ = population
    fig = Figure(figsize=(11, 4.5))
    default_plot(prepare(POPULATION), ds, fig)
    ledger = fig.axes[0]
    assert len(ledger.get_legend().get_texts()) <= 6
    assert "1000 patients" in ledger.get_title()
    stored = {line.get_label(): line.get_ydata() for line in ledger.get_lines()}
    total = ds["drug_stored"].sum("patient").values  # in g on the plot, mg in the file
    np.testing.assert_allclose(np.asarray(stored["stored (recomputed)"]) * 1e3, total,
                               rtol=1e-12)
    assert all(ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes[:2])
