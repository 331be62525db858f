"""Data sets run end to end: the examples' predictions against closed forms computed here,
the same data in CSV and whitespace form, and ``medtransport run --data`` as a user runs it."""

from __future__ import annotations

import csv
import importlib.util
import io
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from medtransport.cli import main
from medtransport.runner import run

DATA = Path(__file__).parents[3] / "examples" / "data"


def _generator():
    spec = importlib.util.spec_from_file_location("make_vancomycin", DATA / "make_vancomycin.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def theoph() -> xr.Dataset:
    return run(DATA / "theoph.yaml")


def test_theoph_predictions_are_batemans_for_each_subjects_weight(theoph: xr.Dataset) -> None:
    # one-compartment oral: C = D·ka/(V(ka − k))·(e^{−kt} − e^{−ka·t}), with the scenario's
    # CL = 2.81 L/h and V = 32 L at 70 kg scaled by weight (exponents 1), D = mg/kg × WT
    ka = 1.57
    rows = list(csv.DictReader(line for line in (DATA / "theoph.csv").open()
                               if not line.startswith("#")))
    dose = {int(r["ID"]): float(r["AMT"]) * float(r["WT"]) for r in rows if r["EVID"] == "1"}
    weight = {int(r["ID"]): float(r["WT"]) for r in rows}
    ids, t = theoph["ID"].values, theoph["TIME"].values
    pred = theoph["concentration"].values
    assert theoph["concentration"].attrs["units"] == "mg/L"
    for i in range(ids.size):
        w = weight[int(ids[i])]
        v, cl = 32.0 * w / 70, 2.81 * w / 70
        k = cl / v
        expected = dose[int(ids[i])] * ka / (v * (ka - k)) * (math.exp(-k * t[i])
                                                              - math.exp(-ka * t[i]))
        assert pred[i] == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_vancomycin_predictions_equal_the_generators_exact_solution() -> None:
    # the synthetic data's generator solves the same model by its own matrix exponentials;
    # at η = 0 its concentrations are the population predictions (covariates: WT, AGE, SEX,
    # SCR through Cockcroft–Gault; a loading dose, ADDL infusions, a regimen change)
    gen = _generator()
    ds = run(DATA / "vancomycin.yaml")
    ids, t, evid = ds["ID"].values, ds["TIME"].values, ds["EVID"].values
    pred = ds["concentration"].values
    for i, (wt, age, sex, scr) in enumerate(gen.SUBJECTS, start=1):
        cl = 4.6 * (wt / 70) ** 0.75 * (0.1 + 0.9 * gen.crcl(wt, age, sex, scr) / 100)
        v1, q, v2 = 30.0 * wt / 70, 6.9 * (wt / 70) ** 0.75, 40.0 * wt / 70
        kmat = np.array([[-(cl + q) / v1, q / v2], [q / v1, -q / v2]])
        load, maint = gen.rounded(25 * wt), gen.rounded(15 * wt)
        infusions = [(0.0, 2.0, load / 2)]
        if i == 8:
            infusions += [(12.0 + 12 * j, maint / 1000, 1000.0) for j in range(4)]
            infusions += [(60.0 + 12 * j, 1.0, 750.0) for j in range(2)]
        else:
            infusions += [(12.0 + 12 * j, maint / 1000, 1000.0) for j in range(6)]
        mine = (ids == i) & (evid == 0)
        expected = gen.central(list(t[mine]), infusions, kmat, v1)
        np.testing.assert_allclose(pred[mine], expected, rtol=1e-9)


def test_csv_and_whitespace_forms_run_identically(tmp_path: Path, theoph: xr.Dataset) -> None:
    text = (DATA / "theoph.csv").read_text()
    (tmp_path / "theoph.csv").write_text(text.replace(",", "   "))
    shutil.copy(DATA / "theoph.yaml", tmp_path / "theoph.yaml")
    spaced = run(tmp_path / "theoph.yaml")
    for name in ("ID", "TIME", "EVID", "DV", "concentration", "record_amount"):
        np.testing.assert_array_equal(spaced[name].values, theoph[name].values, err_msg=name)


def invoke(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_run_data_writes_the_record_table_and_prints_each_subject(tmp_path: Path) -> None:
    # --data: the same subjects, in another file, with the scenario's units
    other = tmp_path / "first_three.csv"
    lines = (DATA / "theoph.csv").read_text().splitlines()
    other.write_text("\n".join(line for line in lines
                               if line.split(",")[0] in ("ID", "1", "2", "3")) + "\n")
    out, png = tmp_path / "records.csv", tmp_path / "fit.png"
    result = invoke("run", DATA / "theoph.yaml", "--data", other, "-o", out, "--plot", png)
    assert result.exit_code == 0, result.output
    assert "subjects of first_three.csv (3;" in result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader(io.StringIO(out.read_text().split("\n", 1)[1])))
    assert len(rows) == 3 * 12
    header = list(rows[0])
    for column in ("ID", "TIME [h]", "EVID", "MDV", "DV [mg/L]", "concentration [mg/L]"):
        assert column in header, header
    assert {r["ID"] for r in rows} == {"1", "2", "3"}
    assert rows[1]["DV [mg/L]"] == "0.74" and rows[1]["concentration [mg/L]"] == "0.0"


def test_a_bad_data_set_fails_cleanly_and_writes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("ID,TIME,AMT,DV,EVID,MDV,CMT,WT\n1,0,4,.,1,1,1,70\n1,2,.,5,0,0,3,70\n"
                   "1,1,.,6,0,0,2,70\n")
    out = tmp_path / "r.nc"
    result = invoke("run", DATA / "theoph.yaml", "--data", bad, "-o", out)
    assert result.exit_code == 2
    assert "data row 3 (ID 1, TIME 2 h): CMT 3 is out of range" in result.stderr
    assert "data row 4 (ID 1, TIME 1 h): TIME goes backwards" in result.stderr
    assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_run_data_writes_the_records_with_units_to_netcdf_and_zarr(tmp_path: Path,
                                                                   suffix: str) -> None:
    out = tmp_path / f"vanco{suffix}"
    result = invoke("run", DATA / "vancomycin.yaml", "-q", "-o", out)
    assert result.exit_code == 0, result.output
    ds = xr.open_zarr(out, consolidated=False) if suffix == ".zarr" else xr.open_dataset(out)
    assert ds.sizes["record"] == 41
    assert ds["DV"].attrs["units"] == "mg/L" and ds["TIME"].attrs["units"] == "h"
    obs = ds["EVID"].values == 0
    # the file's observations, in its order (subject 1: trough, peak, trough)
    assert ds["DV"].values[obs][:3].tolist() == [13.2, 41.0, 15.1]
    ds.close()


def test_the_result_carries_the_observed_nca_that_applies(theoph: xr.Dataset) -> None:
    rows = list(csv.DictReader(line for line in (DATA / "theoph.csv").open()
                               if not line.startswith("#")))
    cmax: dict[int, float] = {}
    for r in rows:
        if r["EVID"] == "0":
            cmax[int(r["ID"])] = max(cmax.get(int(r["ID"]), 0.0), float(r["DV"]))
    assert theoph["observed_cmax"].dims == ("patient",)
    assert theoph["observed_cmax"].attrs["units"] == "mg/L"
    assert theoph["observed_cmax"].values.tolist() == [cmax[k] for k in sorted(cmax)]
    assert theoph["observed_clearance"].attrs["units"] == "L/h"
    vanco = run(DATA / "vancomycin.yaml")
    assert "observed_cmax" in vanco and "observed_auc_inf" not in vanco  # several doses
