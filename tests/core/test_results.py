"""Results: units on everything, provenance, NetCDF round trips, atomic writes, failures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pint_xarray  # noqa: F401
import pytest
import xarray as xr

import medtransport as mt
from medtransport.audit import AuditReport
from medtransport.results import read_netcdf, write_netcdf

SLAB: dict[str, Any] = {
    "name": "results slab",
    "model": "diffusion.fick",
    "domain": {"shape": "box", "size": ["1 mm"], "cells": [20]},
    "parameters": {"diffusivity": "1e-9 m^2/s",
                   "initial": {"kind": "uniform", "amount": "1 umol/cm^2"}},
    "boundaries": {"x+": {"kind": "absorbing"}},
    "time": {"stop": "60 s", "step": "1 s", "output_every": "10 s"},
    "seed": 5,
}


@pytest.fixture(scope="module")
def result() -> xr.Dataset:
    return mt.run(SLAB)


def test_every_variable_and_coordinate_has_units_and_a_long_name(result: xr.Dataset) -> None:
    for name, var in {**result.data_vars, **result.coords}.items():
        assert "units" in var.attrs and "long_name" in var.attrs, name
        mt.ureg.parse_units(var.attrs["units"])


def test_provenance_attributes(result: xr.Dataset) -> None:
    a = result.attrs
    assert a["model_id"] == "diffusion.fick" and a["model_version"]
    assert a["medtransport_version"] == mt.__version__
    assert a["audit_status"] == "passed" and a["seed"] == 5
    assert mt.load_scenario(json.loads(a["scenario"])).name == "results slab"
    report = AuditReport.from_json(a["audit_report"])
    assert report.passed and {r.name for r in report.results} >= {
        "mass_balance[solute]", "normalization[solute]", "finiteness", "units"}


def test_the_ledger_is_in_the_dataset_and_its_residual_is_the_difference(
        result: xr.Dataset) -> None:
    stored, expected = result["solute_stored"].values, result["solute_expected"].values
    np.testing.assert_array_equal(result["solute_residual"].values, stored - expected)
    # stored is recomputed from the states: Σ w·c with w = Δx
    dx = 1e-3 / 20
    np.testing.assert_allclose(stored, result["concentration"].values.sum(axis=1) * dx,
                               rtol=1e-14)
    assert result["solute_outflow"].attrs["routes"] == "x+"


def test_netcdf_round_trip_keeps_values_units_and_pint_can_quantify(
        result: xr.Dataset, tmp_path: Path) -> None:
    path = write_netcdf(result, tmp_path / "r.nc")
    back = read_netcdf(path)
    for name in result.variables:
        np.testing.assert_array_equal(back[name].values, result[name].values)
        assert back[name].attrs.get("units") == result[name].attrs.get("units")
    assert back.attrs == result.attrs
    q = back.pint.quantify()
    conc = q["concentration"].data
    assert conc.units == mt.ureg.parse_units("mol/m**3")
    amount = (q["concentration"] * q["x"].diff("x").mean()).sum("x")
    assert amount.isel(time=0).data.to("umol/cm^2").magnitude == pytest.approx(1.0)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(
        result: xr.Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "r.nc"
    target.write_bytes(b"old contents")

    def crash(self: xr.Dataset, path: Any, *args: Any, **kwargs: Any) -> None:
        Path(path).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", crash)
    with pytest.raises(OSError, match="disk full"):
        write_netcdf(result, target)
    assert target.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.nc"]


def test_an_audit_failure_carries_the_report_and_the_raw_data_marked_failed() -> None:
    from medtransport.runner import prepare

    model = prepare(SLAB)
    original = model.simulate

    def leaky(progress: Any = None) -> Any:
        traj = original()
        traj.ledgers["solute"].outflow["x+"] *= 0.5
        return traj

    model.simulate = leaky  # type: ignore[method-assign]
    with pytest.raises(mt.AuditFailure) as info:
        mt.run(model)
    exc = info.value
    assert exc.dataset is not None and exc.dataset.attrs["audit_status"] == "failed"
    assert not AuditReport.from_json(exc.dataset.attrs["audit_report"]).passed
    failure = exc.report.failures[0]
    assert failure.name == "mass_balance[solute]" and "time_s" in failure.where


def test_a_stochastic_run_without_a_seed_records_the_one_it_drew() -> None:
    scenario = {**SLAB, "solver": {"method": "brownian", "walkers": 500}}
    del scenario["seed"]
    first = mt.run(scenario)
    seed = first.attrs["seed"]
    assert seed >= 0
    again = mt.run({**scenario, "seed": seed})
    np.testing.assert_array_equal(again["concentration"].values, first["concentration"].values)
    assert mt.run(scenario).attrs["seed"] != seed


def test_written_files_get_the_usual_permissions(result: xr.Dataset, tmp_path: Path) -> None:
    import os
    import stat

    mask = os.umask(0o022)
    try:
        path = write_netcdf(result, tmp_path / "r.nc")
    finally:
        os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
