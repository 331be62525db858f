"""bioheat.pennes: thermal dose, damage, sources, boundaries, tissues, units and bad input.

Expected values come from the literature (REFERENCES §3) or from closed forms computed here.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import medtransport as mt
from medtransport.errors import AuditFailure, ScenarioError
from medtransport.testing import build_model
from medtransport.units import Q_
from medtransport_bioheat import dose
from medtransport_bioheat.model import PennesBioheat
from medtransport_bioheat.tissues import TABLE

K = 0.5


def plain(perfusion: str = "0 1/s", conductivity: float = K, **extra: Any) -> dict[str, Any]:
    return {"tissue": "plain", "metabolism": False,
            "tissues": {"plain": {"density": "1000 kg/m^3", "specific_heat": "4000 J/(kg*K)",
                                  "conductivity": f"{conductivity} W/(m*K)",
                                  "perfusion_rate": perfusion, "metabolic_heat": "0 W/m^3"}},
            **extra}


def scenario(**sections: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"name": "test", "model": "bioheat.pennes",
                            "domain": {"shape": "box", "size": ["1 cm"], "cells": [10]},
                            "parameters": plain(),
                            "time": {"stop": "60 s", "step": "1 s"}}
    base.update(sections)
    return base


# ----------------------------------------------------------------------------- dose


@pytest.mark.parametrize(("celsius", "minutes", "expected"),
                         [(44.0, 10.0, 20.0), (45.0, 30.0, 120.0), (42.0, 60.0, 15.0)])
def test_cem43_check_values(celsius: float, minutes: float, expected: float) -> None:
    """REFERENCES §3: 44 °C for 10 min = 20 min; 45 °C 30 min = 120; 42 °C 60 min = 15."""
    ds = mt.run(scenario(parameters=plain(initial_temperature=f"{celsius} degC",
                                          arterial_temperature=f"{celsius} degC"),
                         time={"stop": f"{minutes} min", "step": "30 s"}))
    np.testing.assert_allclose(ds["thermal_dose"].values[-1], expected, rtol=1e-9)
    assert ds["thermal_dose"].attrs["units"] == "min"


def test_arrhenius_damage_at_constant_temperature() -> None:
    # Henriques' skin parameters at 60 °C for 20 s: Ω = A·exp(−Ea/(R·T))·t
    a, ea, t_k, seconds = 3.1e98, 6.28e5, 333.15, 20.0
    expected = math.exp(math.log(a) - ea / (8.314462618 * t_k)) * seconds
    ds = mt.run(scenario(parameters=plain(initial_temperature="60 degC",
                                          arterial_temperature="60 degC",
                                          arrhenius={"frequency_factor": f"{a} 1/s",
                                                     "activation_energy": f"{ea} J/mol"}),
                         time={"stop": f"{seconds} s", "step": "1 s"}))
    np.testing.assert_allclose(ds["damage"].values[-1], expected, rtol=1e-9)
    assert expected > 1.0  # a full-thickness burn: the damaged zone is the whole slab
    np.testing.assert_allclose(float(ds["damaged_volume"].values[-1]), 0.01, rtol=1e-12)


def test_dose_rate_switches_base_at_43_celsius() -> None:
    # R^(43 − T): 0.25^1 one degree below, 0.5^(−2) = 4 two degrees above
    t = np.array([316.15 - 1.0, 316.15, 316.15 + 2.0])
    np.testing.assert_allclose(dose.cem43_rate(t), [0.25, 1.0, 4.0])


# ----------------------------------------------------------------------------- sources


def test_laser_inflow_is_power_times_time_with_a_pulse_inside_a_step() -> None:
    """15 W in pulses that start and stop inside steps; a 3-D box of 17³ cells (conjugate
    gradients): the books close and the inflow is exactly P·Σ durations."""
    sc = scenario(
        domain={"shape": "box", "size": ["3 cm"] * 3, "origin": ["-1.5 cm"] * 3,
                "cells": [17, 17, 17]},
        parameters={"tissue": "liver", "initial_temperature": "37 degC",
                    "perfusion_shutdown": 1.0,
                    "sources": [{"name": "fibre", "kind": "laser",
                                 "position": ["0 mm", "0 mm", "0 mm"],
                                 "effective_attenuation": "3 1/cm",
                                 "diffuser_length": "10 mm"}]},
        events=[{"type": "power", "source": "fibre", "power": "15 W", "at": "0.5 s",
                 "duration": "12.25 s", "every": "20 s", "count": 2}],
        boundaries={f"{a}{s}": {"kind": "dirichlet", "value": "37 degC"}
                    for a in "xyz" for s in "-+"},
        time={"stop": "40 s", "step": "1 s", "output_every": "5 s"})
    ds = mt.run(sc)
    np.testing.assert_allclose(float(ds["energy_inflow"].values[-1]), 15.0 * 2 * 12.25,
                               rtol=1e-12)
    assert ds.attrs["audit_status"] == "passed"


def test_beer_lambert_deposits_the_absorbed_fraction() -> None:
    """A slab of thickness L absorbs (1 − e^{−μL}) of the irradiance (Beer–Lambert)."""
    mu, length, irradiance, seconds = 200.0, 0.01, 1000.0, 10.0
    ds = mt.run(scenario(parameters=plain(sources=[{"name": "beam", "kind": "laser",
                                                    "effective_attenuation": f"{mu} 1/m"}]),
                         events=[{"type": "power", "source": "beam",
                                  "power": f"{irradiance} W/m^2", "duration": "1 h"}],
                         time={"stop": f"{seconds} s", "step": "1 s"}))
    expected = irradiance * seconds * (1 - math.exp(-mu * length))
    np.testing.assert_allclose(float(ds["energy_inflow"].values[-1]), expected, rtol=1e-12)


def test_focused_ultrasound_is_two_alpha_i_at_the_focus() -> None:
    ds = mt.run(scenario(
        domain={"shape": "sphere", "radius": "1 cm", "cells": [200]},
        parameters=plain(sources=[{"name": "hifu", "kind": "focused_ultrasound",
                                   "width": ["1 mm"], "attenuation": "5 1/m"}]),
        events=[{"type": "power", "source": "hifu", "intensity": "1e6 W/m^2",
                 "duration": "1 s"}],
        boundaries={"r+": {"kind": "dirichlet", "value": "37 degC"}},
        time={"stop": "1 ms", "step": "1 ms"}))
    # after 1 ms conduction has moved ~3κt/σ² ≈ 4e-4 of the heat: ΔT = 2αI·t/(ρc) at the focus
    rise = ds["temperature"].values[-1, 0] - 310.15
    np.testing.assert_allclose(rise, 2 * 5 * 1e6 * 0.001 / 4e6, rtol=1e-3)


# ----------------------------------------------------------------------------- boundaries


def test_two_layers_and_convective_skin_give_the_series_resistance_profile() -> None:
    """Steady conduction through two layers (k 0.2 and 0.5 W/(m·K), 4 mm and 6 mm) from a core
    at 37 °C to air at 20 °C through h = 10 W/(m²·K): heat flux (T_core − T_air)/(1/h + Σ L/k),
    linear in each layer — which finite volumes with harmonic face means reproduce exactly."""
    sc = scenario(
        parameters={"tissue": "inner", "metabolism": False, "initial_temperature": "37 degC",
                    "layers": [{"tissue": "outer", "thickness": "4 mm"}],
                    "tissues": {n: {"density": "1000 kg/m^3", "specific_heat": "4000 J/(kg*K)",
                                    "conductivity": f"{k} W/(m*K)", "perfusion_rate": "0 1/s",
                                    "metabolic_heat": "0 W/m^3"}
                                for n, k in (("outer", 0.2), ("inner", 0.5))}},
        boundaries={"x-": {"kind": "robin", "transfer_coefficient": "10 W/(m^2*K)",
                           "ambient": "20 degC"},
                    "x+": {"kind": "dirichlet", "value": "37 degC"}},
        time={"stop": "1e8 s", "step": "1e7 s"}, solver={"method": "backward_euler"})
    model = build_model(PennesBioheat, sc)
    ds = mt.run(model)
    flux = 17.0 / (1 / 10 + 0.004 / 0.2 + 0.006 / 0.5)  # W/m², outward at x = 0
    x = ds["x"].values
    surface = 293.15 + flux / 10
    exact = np.where(x < 0.004, surface + flux * x / 0.2,
                     surface + flux * 0.004 / 0.2 + flux * (x - 0.004) / 0.5)
    np.testing.assert_allclose(ds["temperature"].values[-1], exact, rtol=0, atol=1e-8)
    # the ledger's outflow through the skin face is the same flux, leaving (positive), and
    # through the core face it enters (negative outflow)
    outflow = model.simulate().ledgers["energy"].outflow
    np.testing.assert_allclose(np.diff(outflow["x-"])[-1] / 1e7, flux, rtol=1e-9)
    np.testing.assert_allclose(np.diff(outflow["x+"])[-1] / 1e7, -flux, rtol=1e-9)


# ----------------------------------------------------------------------------- solver


def test_unstable_ftcs_is_refused_naming_the_largest_stable_step() -> None:
    dx, kappa = 0.001, K / 4e6
    largest = dx ** 2 / (2 * kappa)  # insulated slab: 1-D limit r ≤ 1/2
    with pytest.raises(AuditFailure, match="at most") as info:
        mt.run(scenario(solver={"method": "ftcs"},
                        time={"stop": "60 s", "step": f"{largest * 1.5} s"}))
    text = str(info.value)
    assert f"{largest:.4g}"[:4] in text


def test_ftcs_agrees_with_crank_nicolson_when_stable() -> None:
    sc = scenario(parameters=plain("5e-4 1/s", initial_temperature="45 degC"),
                  boundaries={"x-": {"kind": "robin", "transfer_coefficient": "50 W/(m^2*K)",
                                     "ambient": "20 degC"}},
                  time={"stop": "30 s", "step": "0.05 s"})
    a = mt.run({**sc, "solver": {"method": "ftcs"}})["temperature"].values[-1]
    b = mt.run({**sc, "solver": {"method": "crank_nicolson"}})["temperature"].values[-1]
    assert np.max(np.abs(a - b)) < 3e-3  # K; FTCS's first-order time error at Δt = 0.05 s


def test_perfusion_shutdown_keeps_the_books_and_heats_more() -> None:
    base = scenario(
        domain={"shape": "sphere", "radius": "1 cm", "cells": [40]},
        parameters={"tissue": "liver", "initial_temperature": "37 degC",
                    "sources": [{"name": "rf", "kind": "rf", "region": {"r": ["0 mm", "3 mm"]}}]},
        events=[{"type": "power", "source": "rf", "sar": "5000 W/kg", "duration": "90 s"}],
        boundaries={"r+": {"kind": "dirichlet", "value": "37 degC"}},
        time={"stop": "90 s", "step": "1 s"})
    plain_run = mt.run(base)
    shut = mt.run({**base, "parameters": {**base["parameters"], "perfusion_shutdown": 1.0}})
    assert float(shut["damaged_volume"].values[-1]) > 0
    assert shut["temperature"].values[-1, 0] > plain_run["temperature"].values[-1, 0] + 0.1
    assert shut.attrs["audit_status"] == "passed"


# ----------------------------------------------------------------------------- tissues, units


def test_table_matches_the_itis_values_cited_in_references() -> None:
    # REFERENCES §3: ρ, c, k and HTR (mL/min/kg); ω = HTR·1e-6/60·ρ
    for name, (rho, c, k, htr) in {"muscle": (1090, 3421, 0.49, 37), "fat": (911, 2348, 0.21, 33),
                                   "skin": (1109, 3391, 0.37, 106),
                                   "liver": (1079, 3540, 0.52, 860)}.items():
        t = TABLE[name]
        assert t.volumetric_heat_capacity == pytest.approx(rho * c, rel=1e-12)
        assert float(t.conductivity.m_as("W/(m*K)")) == k
        assert t.perfusion == pytest.approx(htr * 1e-6 / 60 * rho, rel=1e-12)


def test_celsius_and_fahrenheit_are_accepted_at_the_edges() -> None:
    ds = mt.run(scenario(parameters=plain(initial_temperature="98.6 degF",
                                          arterial_temperature="310.15 K",
                                          probes={"mid": ["5 mm"]}),
                         time={"stop": "1 s", "step": "1 s"}))
    np.testing.assert_allclose(ds["temperature"].values[0], 310.15, atol=1e-9)
    assert ds["probe_temperature"].attrs["units"] == "degC"
    np.testing.assert_allclose(ds["probe_temperature"].values[0, 0], 37.0, atol=1e-9)
    assert ds["max_temperature"].attrs["units"] == "degC"


@pytest.mark.parametrize(("changes", "field"), [
    ({"parameters": {"tissue": "bone"}}, "parameters.tissue"),
    ({"parameters": plain(sources=[{"name": "l", "kind": "laser",
                                    "effective_attenuation": "1 1/mm"}]),
      "events": [{"type": "power", "source": "l", "power": "15 W/kg", "duration": "1 s"}]},
     "events.0.power"),
    ({"parameters": plain(),
      "events": [{"type": "power", "source": "nope", "power": "1 W/m^2", "duration": "1 s"}]},
     "events.0.source"),
    ({"parameters": plain(probes={"far": ["5 cm"]})}, "parameters.probes.far"),
    ({"parameters": plain(), "boundaries": {"x-": {"kind": "robin",
                                                   "transfer_coefficient": "10 W/m^2",
                                                   "ambient": "20 degC"}}},
     "boundaries.x-.transfer_coefficient"),
    ({"parameters": plain(), "boundaries": {"x-": {"kind": "dirichlet", "value": "37 kg"}}},
     "boundaries.x-.value"),
])
def test_bad_input_names_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ScenarioError) as info:
        mt.run(scenario(**changes))
    assert field in str(info.value)


def test_cli_refuses_bad_input_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\nmodel: bioheat.pennes\ndomain: {shape: box, size: [1 cm], "
                    "cells: [10]}\nparameters: {initial_temperature: 37 kg}\n"
                    "time: {stop: 1 s, step: 1 s}\n")
    p = subprocess.run([sys.executable, "-m", "medtransport", "run", str(path)],
                       capture_output=True, text=True)
    assert p.returncode != 0
    assert "parameters.initial_temperature" in p.stderr + p.stdout
    assert "Traceback" not in p.stderr


def test_temperatures_in_kelvin_inside() -> None:
    q = Q_(37.0, "degC").to("K")
    np.testing.assert_allclose(q.magnitude, 310.15)


def test_one_factorization_per_run_and_the_fast_solver_in_3d() -> None:
    slab = build_model(PennesBioheat, scenario(parameters=plain("5e-4 1/s")))
    notes = slab.simulate().notes
    assert notes["factorizations"] == 1 and notes["linear_solver"].startswith("sparse LU")
    box = {"shape": "box", "size": ["2 cm"] * 3, "cells": [17, 17, 17]}
    held = {f"{a}{s}": {"kind": "dirichlet", "value": "37 degC"} for a in "xyz" for s in "-+"}
    uniform = build_model(PennesBioheat, scenario(domain=box, boundaries=held,
                                                  parameters=plain("5e-4 1/s"),
                                                  time={"stop": "10 s", "step": "5 s"}))
    assert uniform.simulate().notes["linear_solver"].startswith("fast sine/cosine")
    layered = build_model(PennesBioheat, scenario(
        domain=box, boundaries=held, time={"stop": "10 s", "step": "5 s"},
        parameters={"tissue": "liver", "inclusions": [{"tissue": "tumour", "radius": "5 mm",
                                                       "center": ["1 cm"] * 3}]}))
    notes = layered.simulate().notes
    assert notes["linear_solver"].startswith("conjugate gradients") and notes["cg_iterations"]


# ----------------------------------------------------------------------- feedback control


def controlled(target: str, band: str = "0.5 K", **extra: Any) -> dict[str, Any]:
    """A perfused 1-D slab heated by RF in its middle, regulated on the middle probe."""
    return scenario(
        domain={"shape": "box", "size": ["4 cm"], "cells": [40]},
        parameters=plain(perfusion="5e-3 1/s", sources=[
            {"name": "rf", "kind": "rf", "region": {"x": ["1.5 cm", "2.5 cm"]}}],
            probes={"middle": ["2 cm"]}),
        events=[{"type": "power", "source": "rf", "sar": "200 W/kg", "at": "0 s",
                 "duration": "20 min", "control": {"probe": "middle", "target": target,
                                                   "band": band}, **extra}],
        boundaries={"x-": {"kind": "dirichlet", "value": "37 degC"},
                    "x+": {"kind": "dirichlet", "value": "37 degC"}},
        time={"stop": "20 min", "step": "2 s", "output_every": "30 s"})


def test_a_controlled_source_holds_its_probe_within_the_band_and_books_what_it_gave() -> None:
    ds = mt.run(controlled("41 degC"))
    probe = ds["probe_temperature"].sel(probe="middle").values
    t_min = ds["time"].values / 60.0
    settled = probe[t_min >= 10.0]
    # proportional control: at or below the target, within the band once settled
    assert np.all(settled <= 41.0 + 1e-6) and np.all(settled >= 40.5), settled
    assert np.ptp(settled) < 0.05
    given = np.diff(ds["energy_inflow"].values)
    full = 200.0 * 1000.0 * 0.01 * 30.0  # SAR·ρ·(1 cm of slab)·30 s, J/m² per output interval
    assert given[0] == pytest.approx(full, rel=1e-9)  # far below the target: full power
    assert np.all(given[t_min[1:] > 10.0] < 0.9 * full)  # held back once there
    assert ds.attrs["audit_status"] == "passed"


def test_a_target_below_the_start_gives_no_power() -> None:
    ds = mt.run(controlled("36 degC"))
    assert np.all(ds["energy_inflow"].values == 0.0)
    assert float(ds["probe_temperature"].max()) == pytest.approx(37.0, abs=1e-9)


def test_booking_the_nominal_power_instead_of_the_applied_fails_the_energy_balance() -> None:
    """A controller implemented without telling the ledger (it books the level asked for):
    the energy balance finds the gap."""

    class BooksNominal(PennesBioheat):
        def simulate(self, progress: Any = None) -> Any:
            traj = super().simulate(progress)
            t = traj.states["time"].values
            level = 200.0 * 1000.0 * 0.01  # W/m² over the heated centimetre, uncontrolled
            traj.ledgers["energy"].inflow["rf"] = level * (t - t[0])
            return traj

    with pytest.raises(AuditFailure, match="mass_balance"):
        mt.run(build_model(BooksNominal, controlled("41 degC")))


@pytest.mark.parametrize(("control", "path"), [
    ({"probe": "elsewhere", "target": "41 degC"}, "events.0.control.probe"),
    ({"probe": "middle", "target": "41 mm"}, "events.0.control.target"),
    ({"probe": "middle", "target": "41 degC", "band": "0.5 degC"}, "events.0.control.band"),
    ({"probe": "middle", "target": "41 degC", "band": "-1 K"}, "events.0.control.band"),
    ({"probe": "middle", "target": "41 degC", "gain": 2}, "events.0.control.gain"),
    ("on", "events.0.control"),
])
def test_bad_controls_name_the_field(control: Any, path: str) -> None:
    sc = controlled("41 degC")
    sc["events"][0]["control"] = control
    with pytest.raises(ScenarioError) as err:
        build_model(PennesBioheat, sc)
    assert path in [p for p, _ in err.value.problems], err.value.problems
