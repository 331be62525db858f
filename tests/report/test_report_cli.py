"""``medtransport report`` and ``medtransport run --report`` as a user runs them."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from medtransport import read_netcdf
from medtransport.audit import AuditReport
from medtransport.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report_helpers import DYE, POPULATION, parse, scenario_copy


def invoke(*args: str | os.PathLike[str]) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def test_run_with_report_then_report_from_the_file(tmp_path: Path) -> None:
    nc, first, second = tmp_path / "dye.nc", tmp_path / "run.html", tmp_path / "again.html"
    result = invoke("run", DYE, "-o", nc, "--report", first, "-q")
    assert result.exit_code == 0, result.output
    assert str(first) in result.output
    run_page = parse(first.read_text(encoding="utf-8"))
    # run --report has the scenario file itself: the page shows it as written, comments too
    assert "# A fluorescent dye" in run_page.by_id("scenario-text").text
    result = invoke("report", nc, "-o", second)
    assert result.exit_code == 0, result.output
    page = parse(second.read_text(encoding="utf-8"))
    report = AuditReport.from_json(read_netcdf(nc).attrs["audit_report"])
    for p in (run_page, page):
        assert "# A fluorescent dye" in p.by_id("scenario-text").text  # kept in the NetCDF
        assert p.by_id("status").attrs["data-status"] == "passed"
        rows = p.by_id("audits").find_all("tbody")[0].find_all("tr")
        assert [r.attrs["data-audit"] for r in rows] == [r.name for r in report.results]


def test_a_failed_run_writes_its_report_and_no_result(tmp_path: Path) -> None:
    # An auditor asking for a balance at float64 resolution gets a refusal — and a page.
    scenario = tmp_path / "tight.yaml"
    scenario.write_text(yaml.safe_dump(scenario_copy(DYE, audit={"rtol": 2.3e-16})))
    nc, html = tmp_path / "tight.nc", tmp_path / "tight.html"
    result = invoke("run", scenario, "-o", nc, "--report", html, "-q")
    assert result.exit_code == 1
    assert "Traceback" not in result.output and "books do not balance" in result.output
    assert not nc.exists() and html.exists()
    page = parse(html.read_text(encoding="utf-8"))
    assert page.by_id("status").attrs["data-status"] == "failed"
    failed = page.by_id("audits").find_all("tr", **{"data-passed": "false"})
    assert "mass_balance[solute]" in [r.attrs["data-audit"] for r in failed]


def test_bad_report_arguments_exit_2_without_a_traceback(tmp_path: Path) -> None:
    result = invoke("report", tmp_path / "missing.nc", "-o", tmp_path / "r.html")
    assert result.exit_code == 2 and "no such file" in result.output
    assert "Traceback" not in result.output
    result = invoke("run", DYE, "--report", tmp_path / "nowhere" / "r.html")
    assert result.exit_code == 2 and "--report" in result.output
    assert not list(tmp_path.iterdir())


def test_a_run_refused_before_it_started_writes_a_report_without_data(tmp_path: Path) -> None:
    scenario = tmp_path / "ftcs.yaml"
    scenario.write_text(yaml.safe_dump(scenario_copy(
        DYE, solver={"method": "ftcs"}, time={"stop": "30 min", "step": "1 min"})))
    html = tmp_path / "ftcs.html"
    result = invoke("run", scenario, "--report", html, "-q")
    assert result.exit_code == 1 and "refused before running" in result.output
    page = parse(html.read_text(encoding="utf-8"))
    assert page.by_id("status").attrs["data-status"] == "failed"
    (row,) = page.by_id("audits").find_all("tr", **{"data-passed": "false"})
    assert row.attrs["data-audit"] == "stability[ftcs]"
    assert not page.find_all("img")


def test_a_population_run_reports_from_its_store(tmp_path: Path) -> None:
    pytest.importorskip("zarr", reason="chunked population runs need zarr")
    store, html = tmp_path / "pop.zarr", tmp_path / "pop.html"
    result = invoke("run", POPULATION, "--population", "40", "--chunk-size", "20", "--store",
                    store, "--report", html)
    assert result.exit_code == 0, result.output
    page = parse(html.read_text(encoding="utf-8"))
    assert page.by_id("n-patients").text == "40"
    rows = page.by_id("chunks").find_all("tbody")[0].find_all("tr")
    assert [r.attrs["data-chunk"] for r in rows] == ["chunk 0", "chunk 1"]
    # without a store there is nothing to report from: refused before running
    result = invoke("run", POPULATION, "--population", "40", "--report", html)
    assert result.exit_code == 2 and "--store" in result.output


def test_a_scenario_with_a_relative_input_is_reported_from_anywhere(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The run records the five answers in the result, so `report` shows them from another
    directory — and the same once the scenario's directory and its input are gone (another
    machine): the report never reads the inputs the recorded scenario names."""
    import numpy as np
    import xarray as xr

    from medtransport.results import write_netcdf

    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    field = np.linspace(300.0, 320.0, 48).reshape(6, 8)
    write_netcdf(xr.Dataset({"temperature": (("y", "x"), field, {"units": "K",
                                                               "long_name": "temperature"})}),
                 project / "map.nc")
    scenario = {"name": "noising a map read from a file beside the scenario",
                "model": "noise.forward",
                "parameters": {"input": {"kind": "netcdf", "path": "map.nc",
                                         "variable": "temperature"},
                               "output_steps": [1, 500]},
                "time": {"stop": "1 s", "step": "1 ms"}, "seed": 3}
    (project / "noise.yaml").write_text(yaml.safe_dump(scenario))
    monkeypatch.chdir(elsewhere)
    assert invoke("run", project / "noise.yaml", "-o", "noised.nc", "-q").exit_code == 0
    result = invoke("report", "noised.nc", "-o", "page.html")
    assert result.exit_code == 0, result.output
    answers = parse((elsewhere / "page.html").read_text(encoding="utf-8")).by_id("answers")
    rows = {r.find_all("th")[0].all_text for r in answers.find_all("tr")[1:]}
    assert {"what is counted", "where", "how much it starts with"} <= rows

    (project / "map.nc").unlink()
    project.rename(tmp_path / "moved")  # the recorded directory is gone, as on another machine
    assert invoke("report", "noised.nc", "-o", "gone.html").exit_code == 0
    gone = parse((elsewhere / "gone.html").read_text(encoding="utf-8")).by_id("answers")
    assert gone.all_text == answers.all_text
    result = invoke("report", "noised.nc", "-o", "x.html", "--scenario-dir", tmp_path / "nope")
    assert result.exit_code != 0 and "--scenario-dir" in result.output
