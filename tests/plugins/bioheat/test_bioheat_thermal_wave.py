"""The bioheat thermal-relaxation option (Cattaneo–Vernotte: τ·∂q/∂t + q = −k∇T):

- a cosine temperature mode of an insulated, perfused slab against the closed form of the
  thermal-wave equations, (ρc·s + ω_bρ_bc_b)(τ·s + 1) + k·λ_h = 0 — it dips below the arterial
  temperature, which Pennes' solution never does;
- τ → 0 recovers Pennes (backward Euler) on the same grid;
- the energy ledger closes (the run's audits pass) with a laser, a convective skin and a held
  core temperature; a method other than backward Euler is refused naming the field.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import pytest

import medtransport as mt
from medtransport.errors import ScenarioError
from medtransport.runner import prepare

K, RHO_C, OMEGA = 0.5, 4.0e6, 5e-4  # W/(m·K), J/(m³·K), 1/s
BLOOD_RHO_C = 1050.0 * 3617.0  # the plugin's blood (IT'IS)
T_A = 310.15


def scenario(tau: str, length: float = 0.005, cells: int = 40) -> dict[str, Any]:
    return {"name": "thermal wave", "model": "bioheat.pennes",
            "domain": {"shape": "box", "size": [f"{length} m"], "cells": [cells]},
            "parameters": {"tissue": "plain", "metabolism": False,
                           "thermal_relaxation_time": tau,
                           "tissues": {"plain": {"density": "1000 kg/m^3",
                                                 "specific_heat": "4000 J/(kg*K)",
                                                 "conductivity": f"{K} W/(m*K)",
                                                 "perfusion_rate": f"{OMEGA} 1/s",
                                                 "metabolic_heat": "0 W/m^3"}}},
            "boundaries": {"x-": {"kind": "no_flux"}, "x+": {"kind": "no_flux"}},
            "time": {"stop": "100 s", "step": "0.02 s", "output_every": "5 s"},
            "solver": {"method": "backward_euler"}}


def run_mode(tau: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Run from T = T_a + cos(πx/L) (an exact eigenvector of the closed slab's grid); returns
    (times, the mode's amplitude, λ_h)."""
    length, cells = 0.005, 40
    model = prepare(scenario(f"{tau} s", length, cells))
    x = (np.arange(cells) + 0.5) * length / cells
    phi = np.cos(math.pi * x / length)
    model.t0 = T_A + phi  # an initial field a scenario cannot spell: set on the built model
    ds = mt.run(model)
    amp = (ds["temperature"].values - T_A) @ phi / (phi @ phi)
    h = length / cells
    lam_h = (2.0 / h * math.sin(math.pi * h / (2 * length))) ** 2
    return ds["time"].values, amp, lam_h


def closed_form(t: np.ndarray, lam_h: float, tau: float) -> np.ndarray:
    a = OMEGA * BLOOD_RHO_C
    if tau == 0.0:
        return np.exp(-(a + K * lam_h) / RHO_C * t)
    s1, s2 = np.roots([RHO_C * tau, RHO_C + a * tau, a + K * lam_h]).astype(complex)
    c1 = (-a / RHO_C - s2) / (s1 - s2)
    return np.real(c1 * np.exp(s1 * t) + (1 - c1) * np.exp(s2 * t))


@pytest.mark.parametrize("tau", [0.0, 15.0])
def test_a_cosine_mode_follows_the_thermal_wave_closed_form(tau: float) -> None:
    t, amp, lam_h = run_mode(tau)
    exact = closed_form(t, lam_h, tau)
    np.testing.assert_allclose(amp, exact, atol=3e-3)  # backward Euler's O(Δt) error
    if tau > 0:
        assert amp.min() < -0.05  # below the arterial temperature: the thermal wave
    else:
        assert amp.min() > 0.0


def test_tau_to_zero_recovers_pennes() -> None:
    ds = mt.run({**scenario("1e-6 s"), "parameters": {**scenario("1e-6 s")["parameters"],
                                                         "initial_temperature": "40 degC"}})
    hot = mt.run({**scenario("0 s"), "parameters": {**scenario("0 s")["parameters"],
                                                       "initial_temperature": "40 degC"}})
    cooled = hot["temperature"].values[0] - hot["temperature"].values[-1]
    assert np.all(cooled > 0.1)  # perfusion cools the slab by a tenth of a kelvin …
    # … and τ = 1 µs changes that by at most ~τ/Δt of a step's change
    assert np.max(np.abs(ds["temperature"].values - hot["temperature"].values)) < 1e-5


def test_the_ledger_closes_with_a_source_skin_and_held_core() -> None:
    cls = mt.plugins.get_registry().model_class("bioheat.pennes")
    sc = copy.deepcopy(cls.example_scenarios()[1])  # the skin slab, backward Euler
    sc["parameters"]["thermal_relaxation_time"] = "15 s"
    ds = mt.run(sc)  # raises AuditFailure if the energy books do not balance
    fourier = mt.run(cls.example_scenarios()[1])
    assert ds.attrs["solver_thermal_relaxation_time_s"] == 15.0
    diff = np.max(np.abs(ds["temperature"].values - fourier["temperature"].values))
    assert diff > 1e-3  # relaxation changes the answer


def test_a_method_other_than_backward_euler_is_refused_naming_the_field() -> None:
    sc = scenario("15 s")
    sc["solver"] = {"method": "crank_nicolson"}
    with pytest.raises(ScenarioError, match=r"thermal_relaxation_time.*backward_euler"):
        prepare(sc)
    with pytest.raises(ScenarioError, match="thermal_relaxation_time"):
        prepare(scenario("-1 s"))
