"""A PK population: one batched exact solve, every patient's drug account audited."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import medtransport as mt
from medtransport.runner import prepare, run
from medtransport.testing import build_model
from medtransport_pk.model import TwoCompartment

BASE: dict[str, Any] = {
    "name": "population",
    "model": "pk.two_compartment",
    "parameters": {"clearance": "4.6 L/h", "central_volume": "30 L",
                   "intercompartmental_clearance": "6.9 L/h", "peripheral_volume": "40 L"},
    "events": [{"type": "infusion", "amount": "1 g", "duration": "1 h", "every": "12 h",
                "count": 2}],
    "time": {"stop": "24 h", "step": "30 min"},
    "seed": 3,
}


def population(size: int, **variability: float) -> dict[str, Any]:
    return {**BASE, "population": {"size": size, "variability": variability}}


def test_sampled_clearances_are_log_normal_around_the_typical_value() -> None:
    n, omega = 4000, 0.3
    ds = run(population(n, clearance=omega))
    log_cl = np.log(ds["clearance"].values)
    assert abs(log_cl.mean() - math.log(4.6)) < 5 * omega / math.sqrt(n)
    assert abs(log_cl.std() - omega) < 5 * omega / math.sqrt(2 * n)
    assert np.all(ds["central_volume"].values == 30.0)  # no variability declared
    assert ds["concentration"].dims == ("time", "patient", "tissue")
    assert ds["drug_stored"].dims == ("time", "patient")


def test_each_patient_equals_a_single_run_with_its_parameters() -> None:
    ds = run(population(20, clearance=0.3, central_volume=0.2, peripheral_volume=0.2))
    for i in (0, 7, 19):
        single = {**BASE, "parameters": {
            **BASE["parameters"], "clearance": f"{float(ds['clearance'][i])!r} L/h",
            "central_volume": f"{float(ds['central_volume'][i])!r} L",
            "peripheral_volume": f"{float(ds['peripheral_volume'][i])!r} L"}}
        alone = run(single)["concentration"].values
        np.testing.assert_allclose(ds["concentration"].isel(patient=i).values, alone,
                                   rtol=1e-10, atol=1e-12)


def test_a_patient_keeps_its_parameters_whatever_the_population_size() -> None:
    small = run(population(10, clearance=0.3))
    large = run(population(50, clearance=0.3))
    np.testing.assert_array_equal(small["clearance"].values, large["clearance"].values[:10])


def test_variability_on_a_parameter_the_model_lacks_is_named() -> None:
    with pytest.raises(mt.ScenarioError,
                       match=r"population\.variability\.peripheral_volume_2: .* no parameter"):
        prepare(population(5, peripheral_volume_2=0.2))
    with pytest.raises(mt.ScenarioError, match=r"population\.variability\.colour"):
        prepare(population(5, colour=0.2))


class LeakyForOnePatient(TwoCompartment):
    """Patient 13's elimination is not booked: a leak the population average would hide."""

    def simulate(self, progress: Any = None) -> Any:
        traj = super().simulate(progress)
        traj.ledgers["drug"].outflow["eliminated"][:, 13] *= 0.99
        return traj


def test_a_leak_in_one_patient_is_caught_and_the_patient_named() -> None:
    with pytest.raises(mt.AuditFailure) as info:
        run(build_model(LeakyForOnePatient, population(40, clearance=0.3)))
    failure = info.value.report.failures[0]
    assert failure.name == "mass_balance[drug]" and failure.where["patient"] == 13


MM_BOLUS: dict[str, Any] = {
    "name": "saturable population",
    "model": "pk.one_compartment",
    "parameters": {"clearance": "0 L/h", "central_volume": "40 L",
                   "michaelis_menten": {"vmax": "30 mg/h", "km": "5 mg/L"}},
    "events": [{"type": "bolus", "amount": "800 mg"}],
    "time": {"stop": "24 h", "step": "1 h"},
    "population": {"size": 12, "variability": {"vmax": 0.3, "km": 0.2, "central_volume": 0.2}},
    "seed": 11,
}


def test_a_saturable_population_matches_lambert_w_patient_by_patient() -> None:
    from scipy.special import lambertw

    ds = run(MM_BOLUS)
    t = ds["time"].values / 3600.0
    vol = ds["central_volume"].values
    model = prepare(MM_BOLUS)
    vmax = 30.0 * model._eta_factor("vmax")
    km = 5.0 * model._eta_factor("km")
    assert np.ptp(vmax) > 0 and np.ptp(km) > 0 and np.ptp(vol) > 0
    for i in range(12):
        c0 = 800.0 / vol[i]
        expected = km[i] * lambertw(c0 / km[i] * np.exp((c0 - vmax[i] * t / vol[i])
                                                         / km[i])).real
        got = ds["concentration"].isel(patient=i).sel(tissue="central").values
        np.testing.assert_allclose(got, expected, rtol=1e-7)


def test_variability_on_michaelis_menten_without_it_is_named() -> None:
    with pytest.raises(mt.ScenarioError, match=r"population\.variability\.vmax: .*not given"):
        prepare(population(5, vmax=0.2))
