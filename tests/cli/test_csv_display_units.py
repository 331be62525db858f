"""CSV exports are read by people: their columns use the units the scenario was written in
or the model's customary ones (issue 21), while NetCDF keeps the canonical ones."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from medtransport.cli import main
from medtransport.display import DisplayUnits
from medtransport.export import csv_table

ROOT = Path(__file__).resolve().parents[2]


def _rows(path: Path) -> list[dict[str, Any]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


def _run(*args: Any) -> None:
    result = CliRunner().invoke(main, ["run", *map(str, args), "-q"])
    assert result.exit_code == 0, result.output


def test_a_pk_examples_csv_is_in_hours_and_milligrams(tmp_path: Path) -> None:
    out = tmp_path / "theo.csv"
    _run(ROOT / "examples" / "scenarios" / "theophylline_oral.yaml", "-o", out)
    rows = _rows(out)
    header = list(rows[0])
    assert header[0] == "time [h]"
    assert "concentration[central] [mg/L]" in header and "amount[depot] [mg]" in header
    # stop 72 h, step 10 min: outputs every 1/6 h
    times = np.array([float(r["time [h]"]) for r in rows])
    assert times[-1] == pytest.approx(72.0) and times[1] == pytest.approx(1 / 6)
    # 320 mg by mouth: the first dose is in the depot at t = 0, in mg
    assert float(rows[0]["amount[depot] [mg]"]) == pytest.approx(320.0)


def test_a_data_sets_csv_keeps_the_data_files_units(tmp_path: Path) -> None:
    out = tmp_path / "theoph.csv"
    _run(ROOT / "examples" / "data" / "theoph.yaml", "-o", out)
    rows = _rows(out)
    assert {"TIME [h]", "DV [mg/L]", "concentration [mg/L]"} <= set(rows[0])
    # the observations as the data file gives them (mg/L, h), record for record
    source = [line for line in (ROOT / "examples" / "data" / "theoph.csv").read_text()
              .splitlines() if line and not line.startswith("#")]
    data = list(csv.DictReader(io.StringIO("\n".join(source))))
    assert len(rows) == len(data)
    for row, record in zip(rows, data, strict=True):
        assert float(row["TIME [h]"]) == pytest.approx(float(record["TIME"]))
        if record["DV"] != ".":
            assert float(row["DV [mg/L]"]) == pytest.approx(float(record["DV"]))


def test_csv_table_converts_to_the_declared_and_written_units() -> None:
    ds = xr.Dataset(
        {"amount": ("time", [2e-6, 1e-6, 5e-7], {"units": "kg"}),
         "temperature": ("time", [310.15, 311.15, 312.15], {"units": "K"}),
         "volume": ("time", [1e-3, 1e-3, 1e-3], {"units": "m**3"})},
        coords={"time": ("time", [0.0, 1800.0, 3600.0], {"units": "s"})})
    display = DisplayUnits(declared={"amount": "mg", "temperature": "degC"},
                           written={"[length] ** 3": "L"})
    rows = list(csv.reader(io.StringIO(csv_table(ds, display))))
    # an hour's run is read in minutes; 2e-6 kg = 2 mg; 310.15 K = 37 °C; 1e-3 m³ = 1 L
    assert rows[0] == ["time [min]", "amount [mg]", "temperature [°C]", "volume [L]"]
    assert [float(x) for x in rows[1]] == pytest.approx([0.0, 2.0, 37.0, 1.0])
    assert [float(x) for x in rows[3]] == pytest.approx([60.0, 0.5, 39.0, 1.0])
    # without display units: the canonical ones, as before
    assert csv_table(ds).splitlines()[0] == "time [s],amount [kg],temperature [K],volume [m³]"
    assert math.isclose(float(csv_table(ds).splitlines()[1].split(",")[1]), 2e-6)
