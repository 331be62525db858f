"""Files a scenario names (issue 20): where results may be written, which inputs may be read,
and that reading a result or explaining a scenario never runs a scenario named in a file."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

import medtransport.runner
from medtransport.cli import main
from medtransport.errors import ScenarioError
from medtransport.trust import MAX_NESTING, nested_run

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from plugin_fixtures import SLAB, fresh_registry  # noqa: F401  (autouse fixture)


def _noise(input_spec: dict[str, Any]) -> dict[str, Any]:
    return {"name": "noised", "model": "noise.forward",
            "parameters": {"input": input_spec, "schedule": {"kind": "linear"},
                           "output_steps": [1, 10]},
            "time": {"stop": "1 s", "step": "1 ms"}, "seed": 1}




def _write(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def _cli(*args: str | Path) -> Any:
    return CliRunner().invoke(main, [str(a) for a in args])


# ------------------------------------------------------------------------------ output.path

def test_output_path_resolves_against_the_scenario_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    scenario = _write(tmp_path / "project" / "s.yaml", {**SLAB, "output": {"path": "out.nc"}})
    result = _cli("run", scenario)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "project" / "out.nc").is_file()
    assert not (work / "out.nc").exists()


@pytest.mark.parametrize("where", ["../../escaped.nc", "ABSOLUTE"])
def test_output_path_outside_scenario_dir_and_cwd_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    work = tmp_path / "a" / "work"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    path = str(outside / "escaped.nc") if where == "ABSOLUTE" else where
    scenario = _write(tmp_path / "a" / "project" / "s.yaml", {**SLAB, "output": {"path": path}})
    result = _cli("run", scenario)
    assert result.exit_code == 2, result.output
    assert "output.path" in result.output and "outside" in result.output
    assert not list(tmp_path.rglob("escaped.nc"))
    # Named on the command line, the same place is fine.
    result = _cli("run", scenario, "-o", outside / "escaped.nc")
    assert result.exit_code == 0, result.output
    assert (outside / "escaped.nc").is_file()


@pytest.mark.parametrize("via", ["output.path", "-o"])
def test_a_file_that_is_not_our_result_is_not_replaced_without_overwrite(
        tmp_path: Path, via: str) -> None:
    victim = tmp_path / "notes.nc"
    victim.write_text("my precious notes\n")
    extra = {"output": {"path": "notes.nc"}} if via == "output.path" else {}
    scenario = _write(tmp_path / "s.yaml", {**SLAB, **extra})
    args = ["run", scenario] + (["-o", victim] if via == "-o" else [])
    result = _cli(*args)
    assert result.exit_code == 2, result.output
    assert "not a medtransport result" in result.output and "--overwrite" in result.output
    assert victim.read_text() == "my precious notes\n"
    result = _cli(*args, "--overwrite")
    assert result.exit_code == 0, result.output
    assert victim.read_bytes()[:4] == b"\x89HDF"


def test_our_own_result_is_replaced_without_overwrite(tmp_path: Path) -> None:
    scenario = _write(tmp_path / "s.yaml", {**SLAB, "output": {"path": "out.nc"}})
    assert _cli("run", scenario).exit_code == 0
    first = (tmp_path / "out.nc").stat().st_mtime_ns
    result = _cli("run", scenario)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out.nc").stat().st_mtime_ns >= first


@pytest.mark.parametrize("via", ["output.path", "-o"])
def test_our_own_csv_is_replaced_without_overwrite_and_a_foreign_one_is_not(
        tmp_path: Path, via: str) -> None:
    """A CSV result carries its '#' provenance line: running again with the same -o (or
    output.path) replaces it like our NetCDF; a table of someone else's with the same shape
    of header (units in brackets, a time column) is not ours and needs --overwrite."""
    target = tmp_path / "out.csv"
    extra = {"output": {"path": "out.csv"}} if via == "output.path" else {}
    scenario = _write(tmp_path / "s.yaml", {**SLAB, **extra})
    args = ["run", scenario, "-q"] + (["-o", target] if via == "-o" else [])
    assert _cli(*args).exit_code == 0
    first = target.read_text(encoding="utf-8")
    assert first.startswith("# medtransport result (medtransport ")
    target.write_text(first + "a line the rerun replaces\n", encoding="utf-8")
    result = _cli(*args)  # failed before: "out.csv exists and is not a medtransport result"
    assert result.exit_code == 0, result.output
    assert target.read_text(encoding="utf-8") == first
    foreign = first.split("\n", 1)[1]  # the same table without our line: someone's copy
    target.write_text(foreign, encoding="utf-8")
    result = _cli(*args)
    assert result.exit_code == 2, result.output
    assert "not a medtransport result" in result.output and "--overwrite" in result.output
    assert target.read_text(encoding="utf-8") == foreign
    assert _cli(*args, "--overwrite").exit_code == 0
    assert target.read_text(encoding="utf-8").startswith("# medtransport result")


# ------------------------------------------------------------------------------ inputs

def test_input_outside_the_scenario_tree_is_refused_alike_whether_or_not_it_exists(
        tmp_path: Path) -> None:
    secret = tmp_path / "secret.nc"
    secret.write_bytes(b"\x89HDF not really")
    project = tmp_path / "project"
    texts = []
    for name in ("../secret.nc", "../missing.nc"):
        scenario = _write(project / "s.yaml", _noise({"kind": "netcdf", "path": name,
                                                      "variable": "x"}))
        result = _cli("run", scenario)
        assert result.exit_code == 2, result.output
        assert "parameters.input.path" in result.output
        texts.append(result.output.replace(name, "NAME"))
    assert texts[0] == texts[1]
    assert "--allow-path" in texts[0]
    # Absolute paths are confined just the same.
    scenario = _write(project / "s.yaml", _noise({"kind": "image", "path": str(secret)}))
    result = _cli("run", scenario)
    assert result.exit_code == 2 and "outside the scenario's directory" in result.output


def test_allow_path_lets_the_command_line_widen_the_inputs(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    nested = _write(shared / "slab.yaml", SLAB)
    scenario = _write(tmp_path / "project" / "s.yaml", _noise(
        {"kind": "scenario", "scenario": "../shared/slab.yaml", "variable": "concentration"}))
    assert nested.is_file()
    assert _cli("run", scenario).exit_code == 2
    result = _cli("run", scenario, "--allow-path", shared)
    assert result.exit_code == 0, result.output


# ------------------------------------------------------------------------------ no runs

@pytest.fixture
def nested(tmp_path: Path) -> Path:
    _write(tmp_path / "slab.yaml", SLAB)
    return _write(tmp_path / "noised.yaml", _noise(
        {"kind": "scenario", "scenario": "slab.yaml", "variable": "concentration"}))


def test_explain_never_runs_a_nested_scenario(nested: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    ran = []
    real = medtransport.runner.run
    monkeypatch.setattr(medtransport.runner, "run", lambda *a, **k: ran.append(a) or real(*a))
    result = _cli("explain", nested)
    assert ran == []
    assert result.exit_code == 2, result.output
    assert "parameters.input.scenario" in result.output and "explain" in result.output


def test_report_of_a_forged_result_runs_and_reads_nothing_named_in_it(
        nested: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A result whose recorded scenario names another scenario (or an input file): the
    report is made from the file alone."""
    out = tmp_path / "slab.nc"
    assert _cli("run", tmp_path / "slab.yaml", "-o", out).exit_code == 0
    import h5py

    forged = yaml.safe_load(nested.read_text())
    with h5py.File(out, "a") as f:
        f.attrs["scenario"] = json.dumps(forged)
        f.attrs["model_id"] = "noise.forward"
    ran = []
    real = medtransport.runner.run
    monkeypatch.setattr(medtransport.runner, "run", lambda *a, **k: ran.append(a) or real(*a))
    result = _cli("report", out, "-o", tmp_path / "r.html")
    assert ran == [], "report ran a scenario named inside the result"
    assert result.exit_code == 0, result.output
    page = (tmp_path / "r.html").read_text()
    assert "could not be recomputed" not in page and "what is counted" in page


@pytest.mark.parametrize("named", ["netcdf", "scenario"])
def test_report_of_a_forged_result_builds_no_model_and_opens_no_input(
        named: str, nested: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The recorded scenario names an input file (present, inside the recorded directory) or
    a nested scenario: the report neither builds the model, nor resolves an input path, nor
    runs anything — its five answers are those the run recorded."""
    import h5py
    import numpy as np
    import xarray as xr

    from medtransport.model import Model
    from medtransport.results import write_netcdf

    out = tmp_path / "slab.nc"
    assert _cli("run", tmp_path / "slab.yaml", "-o", out).exit_code == 0
    write_netcdf(xr.Dataset({"temperature": (("y", "x"), np.full((4, 5), 310.0),
                                             {"units": "K"})}), tmp_path / "map.nc")
    spec = {"kind": "netcdf", "path": "map.nc", "variable": "temperature"} \
        if named == "netcdf" else {"kind": "scenario", "scenario": "slab.yaml",
                                   "variable": "concentration"}
    with h5py.File(out, "a") as f:
        f.attrs["scenario"] = json.dumps(_noise(spec))
        f.attrs["scenario_dir"] = str(tmp_path)
        f.attrs["model_id"] = "noise.forward"
    calls: list[str] = []

    def refuse(what: str) -> Any:
        def call(*a: Any, **k: Any) -> Any:
            calls.append(what)
            raise AssertionError(f"report called {what}")
        return call

    import medtransport.trust

    monkeypatch.setattr(medtransport.runner, "prepare", refuse("prepare"))
    monkeypatch.setattr(medtransport.runner, "run", refuse("run"))
    monkeypatch.setattr(medtransport.trust, "input_path", refuse("input_path"))
    monkeypatch.setattr(Model, "__init__", refuse("Model.__init__"))
    result = _cli("report", out, "-o", tmp_path / "r.html")
    assert calls == [], f"reading a result built or read: {calls}"
    assert result.exit_code == 0, result.output
    page = (tmp_path / "r.html").read_text()
    # the slab run's recorded answers: 1 µmol/cm² to start with
    assert "what is counted" in page and "1.0 µmol/cm²" in page


def test_nesting_depth_is_limited() -> None:
    def nest(level: int) -> None:
        with nested_run("parameters.input.scenario"):
            if level:
                nest(level - 1)

    nest(MAX_NESTING - 1)
    with pytest.raises(ScenarioError, match=f"the limit is {MAX_NESTING}"):
        nest(MAX_NESTING)


# ------------------------------------------------------------------------------ report input

@pytest.mark.parametrize("content", [b"", b"garbage", b"\x89HDF\r\n\x1a\n" + b"\0" * 64,
                                     b"CDF\x01" + b"\xff" * 100])
def test_a_corrupted_result_given_to_report_is_bad_input(tmp_path: Path,
                                                         content: bytes) -> None:
    bad = tmp_path / "bad.nc"
    bad.write_bytes(content)
    result = _cli("report", bad, "-o", tmp_path / "r.html")
    assert result.exit_code == 2, result.output
    assert "bad.nc" in result.output and "internal error" not in result.output
    assert not (tmp_path / "r.html").exists()


def test_a_foreign_netcdf_given_to_report_is_bad_input(tmp_path: Path) -> None:
    import xarray as xr

    xr.Dataset({"x": ("t", [1.0, 2.0])}).to_netcdf(tmp_path / "foreign.nc", engine="h5netcdf")
    result = _cli("report", tmp_path / "foreign.nc", "-o", tmp_path / "r.html")
    assert result.exit_code == 2, result.output
    assert "foreign.nc" in result.output


def test_a_corrupted_store_given_to_report_is_bad_input(tmp_path: Path) -> None:
    store = tmp_path / "s.zarr" / ".medtransport"
    store.mkdir(parents=True)
    (store / "manifest.json").write_text("{not json")
    result = _cli("report", tmp_path / "s.zarr", "-o", tmp_path / "r.html")
    assert result.exit_code == 2, result.output
    assert "s.zarr" in result.output


def test_population_summaries_do_not_replace_a_foreign_file(tmp_path: Path) -> None:
    scenario = _write(tmp_path / "pop.yaml", {
        "name": "pop", "model": "pk.one_compartment",
        "parameters": {"clearance": "4 L/h", "central_volume": "30 L"},
        "events": [{"type": "bolus", "amount": "500 mg"}],
        "population": {"size": 20, "variability": {"clearance": 0.3}},
        "time": {"stop": "12 h", "step": "1 h"}, "seed": 5})
    victim = tmp_path / "notes.nc"
    victim.write_text("mine\n")
    result = _cli("run", scenario, "--store", tmp_path / "s.zarr", "-o", victim)
    assert result.exit_code == 2, result.output
    assert victim.read_text() == "mine\n" and not (tmp_path / "s.zarr").exists()
