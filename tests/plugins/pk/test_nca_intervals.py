"""NCA per dosing interval against the closed forms of a one-compartment bolus regimen."""

from __future__ import annotations

import numpy as np
import pytest

from medtransport.runner import run

CL, V, TAU, D = 2.8, 32.0, 12.0, 100.0
K = CL / V


def regimen(steady: bool, count: int = 6, step: str = "0.25 h") -> dict:
    return {"name": "q12h", "model": "pk.one_compartment",
            "parameters": {"clearance": f"{CL} L/h", "central_volume": f"{V} L"},
            "events": [{"type": "bolus", "amount": f"{D} mg", "every": f"{TAU} h",
                        "count": count, "steady_state": steady}],
            "time": {"stop": f"{TAU * count} h", "step": step}}


def test_at_steady_state_clearance_is_dose_over_auc_tau() -> None:
    ds = run(regimen(steady=True))
    # the log-down trapezoid is exact for a monoexponential decline
    assert float(ds["nca_clearance_ss"]) == pytest.approx(CL, rel=1e-9)
    assert ds["nca_clearance_ss"].attrs["units"] == "L/h"
    peak = D / V / (1 - np.exp(-K * TAU))
    np.testing.assert_allclose(ds["nca_interval_cmax"].values, peak, rtol=1e-12)
    np.testing.assert_allclose(ds["nca_interval_ctrough"].values, peak * np.exp(-K * TAU),
                               rtol=1e-12)
    np.testing.assert_allclose(ds["nca_interval_cavg"].values, D / CL / TAU, rtol=1e-9)
    assert np.all(ds["nca_interval_tmax"].values == 0.0)
    assert np.all(ds["nca_interval_at_steady_state"].values == 1)
    # single-dose metrics do not apply to a regimen
    assert "nca_lambda_z" not in ds and "nca_auc_inf" not in ds


def test_accumulation_from_the_first_dose() -> None:
    ds = run(regimen(steady=False))
    n = np.arange(1, 7)
    want = (1 - np.exp(-n * K * TAU)) / (1 - np.exp(-K * TAU))
    np.testing.assert_allclose(ds["nca_interval_accumulation_ratio"].values, want, rtol=1e-9)
    np.testing.assert_allclose(ds["nca_interval_auc_tau"].values,
                               D / CL * (1 - np.exp(-K * TAU)) * want, rtol=1e-9)
    # six doses are six intervals, each its own Tmax, not one curve peaking at the end
    assert ds.sizes["dose_interval"] == 6


def test_an_oral_regimen_has_a_tmax_per_interval() -> None:
    sc = regimen(steady=False, count=12, step="0.05 h")
    sc["parameters"].update(absorption_rate="1.1 1/h", bioavailability=0.8)
    sc["events"][0]["type"] = "oral"
    ds = run(sc)
    assert np.all(ds["nca_interval_tmax"].values < TAU)
    # CL/F once AUCτ has settled, within the trapezoid error of a 0.05 h grid
    assert float(ds["nca_clearance_ss"]) == pytest.approx(CL / 0.8, rel=1e-3)
