"""``medtransport run -o``: the extension decides the format; ``--data`` replaces the data
section's path. Expected values come from the scenario (a 100 mg bolus into 32 L with
CL 2.8 L/h: C(t) = 100/32·exp(−2.8·t/32) mg/L), not from the code under test."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import pytest
import xarray as xr
import yaml
from click.testing import CliRunner, Result

from medtransport import read_netcdf
from medtransport.cli import main
from medtransport.export import csv_table, output_format

BOLUS = {"name": "bolus", "model": "pk.one_compartment",
         "parameters": {"clearance": "2.8 L/h", "central_volume": "32 L"},
         "events": [{"type": "bolus", "amount": "100 mg"}],
         "time": {"stop": "4 h", "step": "1 h"}}


def invoke(*args: Any) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def scenario(tmp_path: Path, **changes: Any) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**BOLUS, **changes}), encoding="utf-8")
    return path


def bolus_conc(t_h: float) -> float:
    return 100.0 / 32.0 * math.exp(-2.8 / 32.0 * t_h)


def test_nc_writes_netcdf(tmp_path: Path) -> None:
    result = invoke("run", scenario(tmp_path), "-q", "-o", tmp_path / "r.nc")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r.nc").read_bytes()[:4] == b"\x89HDF"  # NetCDF-4 is HDF5
    ds = read_netcdf(tmp_path / "r.nc")
    assert float(ds["concentration"].isel(time=-1, tissue=0)) == pytest.approx(
        bolus_conc(4.0), rel=1e-9)


def test_csv_writes_the_table_with_units_in_the_header(tmp_path: Path) -> None:
    out = tmp_path / "conc.csv"
    result = invoke("run", scenario(tmp_path), "-q", "-o", out)
    assert result.exit_code == 0, result.output
    text = out.read_text(encoding="utf-8")
    assert not text.startswith("\x89HDF")  # today's bug: NetCDF under a .csv name
    first, text = text.split("\n", 1)  # what wrote it, then the table
    assert first.startswith("# medtransport result (medtransport ") and "audits passed" in first
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 5
    header = list(rows[0])
    assert header[0] == "time [h]"  # a 4-h run is read in hours (issue 21)
    assert "concentration[central] [mg/L]" in header and "eliminated [mg]" in header
    assert [float(row["time [h]"]) for row in rows] == pytest.approx([0, 1, 2, 3, 4])
    for row in rows:
        t_h = float(row["time [h]"])
        assert float(row["concentration[central] [mg/L]"]) == pytest.approx(
            bolus_conc(t_h), rel=1e-9)


def test_zarr_writes_a_store_and_replaces_an_old_one(tmp_path: Path) -> None:
    out = tmp_path / "r.zarr"
    for _ in range(2):  # the second run replaces the first store
        result = invoke("run", scenario(tmp_path), "-q", "-o", out)
        assert result.exit_code == 0, result.output
    ds = xr.open_zarr(out, consolidated=False)
    assert ds["concentration"].attrs["units"] == "mg/L"
    assert float(ds["concentration"].isel(time=-1, tissue=0)) == pytest.approx(
        bolus_conc(4.0), rel=1e-9)
    assert ds.attrs["audit_status"] == "passed"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.zarr", "s.yaml"]


def test_zarr_will_not_replace_a_directory_that_is_not_a_store(tmp_path: Path) -> None:
    (tmp_path / "keep.zarr").mkdir()
    (tmp_path / "keep.zarr" / "precious.txt").write_text("mine")
    result = invoke("run", scenario(tmp_path), "-q", "-o", tmp_path / "keep.zarr")
    assert result.exit_code == 2
    assert "is not a Zarr store" in result.stderr
    assert (tmp_path / "keep.zarr" / "precious.txt").read_text() == "mine"


@pytest.mark.parametrize("name", ["conc.txt", "conc", "conc.netcdf", "conc.csv.bak"])
def test_any_other_extension_is_refused_and_nothing_written(tmp_path: Path, name: str) -> None:
    path = scenario(tmp_path)
    result = invoke("run", path, "-q", "-o", tmp_path / name)
    assert result.exit_code == 2
    assert "-o/--output" in result.stderr and ".nc (NetCDF)" in result.stderr
    assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.yaml"]


def test_the_scenarios_output_path_obeys_the_same_rule(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = scenario(tmp_path, output={"path": "result.txt"})
    monkeypatch.chdir(tmp_path)
    result = invoke("run", path, "-q")
    assert result.exit_code == 2
    assert "output.path" in result.stderr and "result.txt" in result.stderr


def test_extension_is_case_insensitive() -> None:
    assert output_format("A.NC") == ".nc" and output_format("b.Csv") == ".csv"
    with pytest.raises(ValueError, match=r"\.zarr"):
        output_format("c.h5")


def test_csv_table_prefers_records_and_leaves_missing_values_empty() -> None:
    ds = xr.Dataset(
        {"DV": ("record", [float("nan"), 4.2], {"units": "mg/L"}),
         "EVID": ("record", [1, 0], {"units": "1"}),
         "amount": (("record", "compartment"), [[100.0, 0.0], [60.0, 38.0]],
                    {"units": "mg"}),
         "grid": ("time", [0.0, 1.0, 2.0], {"units": "mg/L"})},
        coords={"record": ("record", [0, 1]), "compartment": ["depot", "central"],
                "time": ("time", [0.0, 1.0, 2.0], {"units": "s"})})
    rows = list(csv.reader(io.StringIO(csv_table(ds))))
    assert rows[0] == ["record", "DV [mg/L]", "EVID", "amount[depot] [mg]",
                       "amount[central] [mg]"]
    assert rows[1] == ["0", "", "1", "100.0", "0.0"]
    assert rows[2] == ["1", "4.2", "0", "60.0", "38.0"]


def test_data_replaces_the_data_sections_path(tmp_path: Path) -> None:
    data = tmp_path / "other.csv"
    data.write_text("ID,TIME,AMT,CMT\n1,0,100,1\n")
    result = invoke("run", scenario(tmp_path), "-q", "--data", data, "-o", tmp_path / "r.nc")
    assert result.exit_code == 2
    assert "--data replaces the path of the scenario's data section" in result.stderr
    result = invoke("run", scenario(tmp_path), "-q", "--data", tmp_path / "none.csv")
    assert result.exit_code == 2 and "--data" in result.stderr


def test_a_population_runs_summaries_obey_the_same_rule(tmp_path: Path) -> None:
    path = scenario(tmp_path, population={"size": 8, "variability": {"clearance": 0.3}},
                    seed=3)
    result = invoke("run", path, "--population", 8, "--store", tmp_path / "st.zarr",
                    "-o", tmp_path / "summary.txt")
    assert result.exit_code == 2 and "summary.txt has extension '.txt'" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.yaml"]  # no store either
    result = invoke("run", path, "--population", 8, "--store", tmp_path / "st.zarr",
                    "-o", tmp_path / "summary.csv")
    assert result.exit_code == 0, result.output
    header = (tmp_path / "summary.csv").read_text().splitlines()[1]
    assert header.startswith("time [h],") and "[mg/L]" in header


def test_data_does_not_combine_with_a_chunked_population(tmp_path: Path) -> None:
    data = tmp_path / "d.csv"
    data.write_text("ID,TIME,AMT,CMT\n1,0,100,1\n")
    result = invoke("run", scenario(tmp_path), "--population", 4, "--store",
                    tmp_path / "st.zarr", "--data", data)
    assert result.exit_code == 2 and "'--data'" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.csv", "s.yaml"]
