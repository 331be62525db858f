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


def _table(path: Path) -> str:
    """A CSV result's table: its first line is the '#' line saying what wrote it."""
    first, table = path.read_text(encoding="utf-8").split("\n", 1)
    assert first.startswith("# medtransport result (medtransport ")
    return table


def _rows(path: Path) -> list[dict[str, Any]]:
    return list(csv.DictReader(io.StringIO(_table(path))))


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


def test_a_profile_examples_csv_labels_its_positions_in_the_display_units(
        tmp_path: Path) -> None:
    """The dye slab (2 mm, 200 cells): each profile column names its cell centre in mm, the
    unit the scenario writes lengths in, not `concentration[1.5000000000000002e-05]` in
    metres; the values are the NetCDF's canonical mol/m³ read in mM (the same number)."""
    from medtransport.results import read_netcdf

    dye = ROOT / "examples" / "scenarios" / "dye_tissue_slab.yaml"
    out, nc = tmp_path / "dye.csv", tmp_path / "dye.nc"
    _run(dye, "-o", out)
    _run(dye, "-o", nc)
    rows = list(csv.reader(io.StringIO(_table(out))))
    profile = [h for h in rows[0] if h.startswith("concentration[")]
    assert len(profile) == 200
    # cell centres of a 2-mm slab in 200 cells: (i + 1/2) × 0.01 mm
    centres = [float(h[len("concentration[x="):h.index(" mm]")]) for h in profile]
    assert centres == pytest.approx([(i + 0.5) * 0.01 for i in range(200)], rel=1e-12)
    assert all(h.endswith(" mm] [mM]") for h in profile)
    assert "e-0" not in ",".join(profile)  # no metres with float noise left in a label
    ds = read_netcdf(nc)
    column = rows[0].index("concentration[x=0.995 mm] [mM]")
    expected = ds["concentration"].isel(x=99).values  # mol/m³, which is mM
    assert [float(r[column]) for r in rows[1:]] == pytest.approx(expected, rel=1e-12)
    # the ledger's columns share the unit of the stored amount (the scenario's µmol/cm²)
    ledger = [h for h in rows[0] if h.startswith("solute_")]
    assert ledger and all(h.endswith("[µmol/cm²]") for h in ledger)


def test_csv_columns_and_labels_follow_the_display_rules() -> None:
    """Every column and label in a display unit: a coordinate by the scenario's unit, a
    concentration without a declared unit by a readable prefix (2e-3 kg/m³ = 2 µg/mL, not
    kg/m³), a variable the model names no unit for by the model's unit of its dimension,
    the ledger's residual in the unit of the stored amount (not ng beside mg)."""
    x = np.array([1, 3, 5]) * 0.5e-4 * (1 + 1e-16)  # 0.05, 0.15, 0.25 mm with float noise
    ds = xr.Dataset(
        {"concentration": (("time", "x"), np.full((2, 3), 2.0), {"units": "kg/m**3"}),
         "urea_stored": ("time", [0.5, 0.4], {"units": "mol"}),
         "urea_residual": ("time", [1e-15, 2e-15], {"units": "mol"}),
         "dialysate_removed": ("time", [0.0, 1.5], {"units": "mol"}),
         "fraction": (("time", "q"), np.ones((2, 2)), {"units": "1"})},
        coords={"time": ("time", [0.0, 60.0], {"units": "s"}),
                "x": ("x", x, {"units": "m"}),
                "q": ("q", [0.1 + 0.2, 0.7], {"units": "1"})})
    display = DisplayUnits(declared={"urea": "mmol"}, written={"[length]": "mm"})
    header = next(csv.reader(io.StringIO(csv_table(ds, display))))
    assert header == ["time [s]", "concentration[x=0.05 mm] [mg/mL]",
                      "concentration[x=0.15 mm] [mg/mL]", "concentration[x=0.25 mm] [mg/mL]",
                      "urea_stored [mmol]", "urea_residual [mmol]",
                      "dialysate_removed [mmol]", "fraction[0.3]", "fraction[0.7]"]
    rows = list(csv.reader(io.StringIO(csv_table(ds, display))))
    assert float(rows[1][1]) == pytest.approx(2.0)  # 2 kg/m³ = 2 g/L = 2 mg/mL
    assert float(rows[2][6]) == pytest.approx(1500.0)  # 1.5 mol = 1500 mmol
    assert float(rows[2][5]) == pytest.approx(2e-12)  # 2e-15 mol = 2e-12 mmol
    ds["concentration"] = ds["concentration"] * 1e-3
    ds["concentration"].attrs["units"] = "kg/m**3"
    header = next(csv.reader(io.StringIO(csv_table(ds, display))))
    assert header[1] == "concentration[x=0.05 mm] [µg/mL]"  # 2e-3 kg/m³ = 2 µg/mL
    assert float(next(iter(csv.reader(io.StringIO(csv_table(ds, display).splitlines()[1]))))
                 [1]) == pytest.approx(2.0)
    # labels stay apart however close the positions are: as many digits as needed
    close = ds.assign_coords(x=("x", [1.0, 1.0 + 1e-9, 1.0 + 2e-9], {"units": "m"}))
    labels = next(csv.reader(io.StringIO(csv_table(close, None))))[1:4]
    assert len(set(labels)) == 3 and labels[0] == "concentration[x=1 m] [kg/m³]"
