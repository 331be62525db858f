"""oxygen.krogh against closed forms (Krogh 1919; Popel 1989) and its own fine-grid limit.

Michaelis–Menten consumption has no closed form in the Krogh cylinder, so the model is validated
in its two limits, where it has one, and by grid convergence in between:

- P50 → 0 (zero-order consumption): the Krogh–Erlang profile, with the capillary wall held at
  the blood's tension or, permeable, at the tension its steady flux leaves on the tissue side;
- P50 → ∞ with M0/P50 fixed (first-order consumption): the modified-Bessel profile;
- P50 = 1 mmHg: second-order convergence of the stored oxygen and the capillary supply under
  grid refinement, the Richardson-extrapolated limit close to the finest grid, and the
  comparison principle (consuming less than M0 everywhere, the profile lies above Krogh–Erlang).

Every run lasts 40 s, about 28 of the slowest relaxation times (R²·ln(R/r_c)/(2D) ≈ 1.4 s), so
the last output is the steady state to far below the tolerances. Tensions in mmHg.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import medtransport as mt
import numpy as np
import pytest
import yaml

from medtransport_oxygen.krogh import first_order_profile, krogh_erlang_profile

SCENARIO = yaml.safe_load((Path(__file__).parents[1] / "scenarios" / "krogh_muscle.yaml")
                          .read_text())
RC, R, PC = 5e-6, 50e-6, 40.0              # m, m, mmHg (the scenario's values)
D, ALPHA, M0 = 2e-9, 1.34e-3, 0.02          # m²/s, mol/(m³·mmHg), mol/(m³·s)
K = D * ALPHA                               # Krogh's diffusion constant


def steady(cells: int, **parameters: str) -> Any:
    sc = copy.deepcopy(SCENARIO)
    sc["domain"]["cells"] = [cells]
    sc["parameters"].update(parameters)
    sc["time"] = {"stop": "40 s", "step": "0.2 s", "output_every": "4 s"}
    ds = mt.run(sc)
    assert ds.attrs["audit_status"] == "passed"
    return ds


def final(ds: Any) -> tuple[np.ndarray, np.ndarray]:
    return ds["r"].values, ds["oxygen_tension"].isel(time=-1).values


@pytest.mark.parametrize(("cells", "tolerance"), [(30, 0.15), (120, 0.01)])
def test_zero_order_limit_is_the_krogh_erlang_profile(cells: int, tolerance: float) -> None:
    # P50 = 1e-4 mmHg: M differs from M0 by < P50/P_min ≈ 5e-6 relative, far below the grid error.
    r, p = final(steady(cells, p50="1e-4 mmHg"))
    exact = krogh_erlang_profile(r, RC, R, PC, M0, K)
    assert exact.min() > 20.0  # the tissue is oxygenated everywhere (no "lethal corner")
    assert np.max(np.abs(p - exact)) <= tolerance


def test_a_permeable_capillary_wall_lowers_the_wall_tension_by_flux_over_permeability() -> None:
    # At steady state the wall passes what the annulus consumes, J = M0·(R² − r_c²)/(2·r_c) per
    # unit wall area, so the tissue side of the wall sits J/permeability below the blood:
    # the Krogh–Erlang profile from P_c − J/P_wall (here 40 − 4.95 mmHg).
    sc = copy.deepcopy(SCENARIO)
    sc["domain"]["cells"] = [120]
    sc["parameters"]["p50"] = "1e-4 mmHg"
    sc["boundaries"]["r-"] = {"kind": "permeable", "permeability": "1e-6 mol/m^2/s/mmHg",
                              "outside": "40 mmHg"}
    sc["time"] = {"stop": "40 s", "step": "0.2 s", "output_every": "4 s"}
    r, p = final(mt.run(sc))
    wall = PC - M0 * (R ** 2 - RC ** 2) / (2 * RC) / 1e-6
    assert np.max(np.abs(p - krogh_erlang_profile(r, RC, R, wall, M0, K))) <= 0.01


def test_zero_order_limit_converges_at_second_order() -> None:
    errors = []
    for cells in (30, 60, 120):
        r, p = final(steady(cells, p50="1e-4 mmHg"))
        errors.append(np.max(np.abs(p - krogh_erlang_profile(r, RC, R, PC, M0, K))))
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all(orders > 1.8), (errors, orders)


def test_first_order_limit_is_the_bessel_profile() -> None:
    # M0/P50 = 5e-4 mol/(m³·s·mmHg) with P50 = 1e6 mmHg: M = k·P·(1 − P/P50 + …), 4e-5 relative.
    r, p = final(steady(120, p50="1e6 mmHg", max_consumption_rate="500 mol/m^3/s"))
    exact = first_order_profile(r, RC, R, PC, 5e-4, K)
    assert np.max(np.abs(p - exact)) <= 0.01
    assert exact[-1] < 0.8 * PC  # the consumption is strong enough to shape the profile


def test_michaelis_menten_converges_under_grid_refinement() -> None:
    stored, supply = [], []
    for cells in (20, 40, 80, 160):
        ds = steady(cells)
        stored.append(float(ds["oxygen_stored"][-1]))
        # Capillary supply at steady state: the inflow over the last output interval.
        inflow = -ds["oxygen_outflow"].values
        supply.append((inflow[-1] - inflow[-2]) / 4.0)
    for values in (np.array(stored), np.array(supply)):
        d = np.abs(np.diff(values))
        orders = np.log2(d[:-1] / d[1:])
        assert np.all((orders > 1.8) & (orders < 2.2)), orders
        richardson = values[-1] + (values[-1] - values[-2]) / 3.0
        assert abs(values[-1] - richardson) <= 3e-4 * abs(richardson)
    # At steady state the capillary supplies what the tissue consumes: π(R² − r_c²)·⟨M⟩.
    assert supply[-1] < M0 * np.pi * (R ** 2 - RC ** 2)


def test_michaelis_menten_profile_lies_above_krogh_erlang() -> None:
    r, p = final(steady(60))
    zero_order = final(steady(60, p50="1e-4 mmHg"))[1]
    assert np.all(p >= zero_order - 1e-9)
    assert p[-1] - zero_order[-1] > 0.1  # and visibly so where the tension is lowest
    assert np.max(np.abs(p - krogh_erlang_profile(r, RC, R, PC, M0, K))) < 2.0
