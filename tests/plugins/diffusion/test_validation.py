"""diffusion.fick against analytic solutions and against itself (REFERENCES §0), run through
the audited path (`run`) as a user would."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from medtransport.runner import run

D = 1e-9  # m²/s


def scenario(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "validation",
        "model": "diffusion.fick",
        "domain": {"shape": "box", "size": ["2 mm"], "cells": [100]},
        "parameters": {"diffusivity": f"{D} m^2/s",
                       "initial": {"kind": "gaussian", "amount": "1 umol/cm^2",
                                   "width": "0.1 mm"}},
        "time": {"stop": "10 s", "step": "0.1 s", "output_every": "2 s"},
        "seed": 11,
    }
    base.update(changes)
    return base


def variance(ds: Any) -> np.ndarray:
    c = ds["concentration"].values
    x = ds["x"].values
    m0 = c.sum(axis=1)
    mean = (c * x).sum(axis=1) / m0
    return (c * (x - mean[:, None]) ** 2).sum(axis=1) / m0


@pytest.mark.parametrize("method", ["ftcs", "crank_nicolson"])
def test_variance_grows_as_2Dt_on_the_grid(method: str) -> None:
    """The discrete second moment grows by exactly 2DΔt per step for FTCS and for CN, as long
    as the walls are far (here more than 5.7 standard deviations away at the end)."""
    ds = run(scenario(solver={"method": method}))
    t = ds["time"].values
    var = variance(ds)
    np.testing.assert_allclose(var - var[0], 2 * D * t, rtol=1e-6, atol=1e-18)


def test_brownian_walkers_spread_with_variance_2Dt() -> None:
    """Var(x_t) = σ0² + 2Dt within 5 standard errors (SE of a sample variance: σ²√(2/(n−1)));
    binning adds Δx²/12 to the measured variance, removed here."""
    n = 200_000
    ds = run(scenario(solver={"method": "brownian", "walkers": n}, domain={
        "shape": "box", "size": ["2 mm"], "cells": [400]}))
    t = ds["time"].values
    dx = 2e-3 / 400
    sigma0 = 1e-4
    var = variance(ds) - dx ** 2 / 12
    expected = sigma0 ** 2 + 2 * D * t
    se = expected * math.sqrt(2 / (n - 1))
    assert np.all(np.abs(var - expected) < 5 * se), (var, expected)


WALKERS = 400_000
CELL = 1e-3 / 40  # m
AMOUNT = 1e-9 / 1e-4  # mol/m²: 1 nmol/cm²


def lattice_setup(x_minus: dict[str, Any], center: str) -> dict[str, Any]:
    """A 1 mm slab of 40 cells, a point release at ``center``, x+ closed."""
    return {"domain": {"shape": "box", "size": ["1 mm"], "cells": [40]},
            "time": {"stop": "60 s", "step": "0.1 s", "output_every": "20 s"},
            "boundaries": {"x-": x_minus, "x+": {"kind": "no_flux"}},
            "parameters": {"diffusivity": f"{D} m^2/s",
                           "initial": {"kind": "point", "amount": "1 nmol/cm^2",
                                       "center": [center]}}}


def walk_and_ftcs(common: dict[str, Any]) -> tuple[Any, Any, np.ndarray, np.ndarray]:
    """The lattice walk and the FTCS of one set-up; per cell and output after the first, the
    FTCS share p of the amount and the walkers counted there."""
    walk = run(scenario(**common, solver={"method": "lattice_walk", "walkers": WALKERS}))
    ftcs = run(scenario(**common, solver={"method": "ftcs"}))
    p = ftcs["concentration"].values[1:] * CELL / AMOUNT
    counts = walk["concentration"].values[1:] * CELL / AMOUNT * WALKERS
    return walk, ftcs, p, counts


def test_lattice_walk_mean_equals_ftcs_within_sampling_error() -> None:
    """REFERENCES §0: the lattice walk's expected occupancy obeys FTCS exactly (reflecting
    walls: a jump into the wall stays put, as a mirrored ghost cell). Per cell the count is
    binomial: SE = √(N·p(1−p)) with p the FTCS share of the cell."""
    n = WALKERS
    common = lattice_setup({"kind": "no_flux"}, "0.4 mm")
    _, _, p, counts = walk_and_ftcs(common)
    se = np.sqrt(n * p * (1 - p)) + 1.0
    z = (counts - n * p) / se
    assert np.max(np.abs(z)) < 5.0
    # The test can fail: a walk with twice the jump rate is far outside the same bound.
    faster = run(scenario(**{**common, "parameters": {**common["parameters"],
                                                      "diffusivity": f"{2 * D} m^2/s"}},
                          solver={"method": "lattice_walk", "walkers": n}))
    counts_fast = faster["concentration"].values[1:] * CELL / AMOUNT * n
    assert np.max(np.abs((counts_fast - n * p) / se)) > 10.0


def test_lattice_walk_with_an_absorbing_wall_matches_the_finite_volume_ftcs() -> None:
    """An absorbing face holds the density at 0 on the face itself, for the walkers as for the
    finite volumes: per cell and in the amount absorbed, the walk's counts are the FTCS
    expectation within sampling error (binomial SEs). A wall placed half a cell further out
    (walkers leaving with probability r instead of 2r) is far outside the same bound."""
    n = WALKERS
    common = lattice_setup({"kind": "absorbing"}, "0.1 mm")
    walk, ftcs, p, counts = walk_and_ftcs(common)
    z = (counts - n * p) / (np.sqrt(n * p * (1 - p)) + 1.0)
    assert np.max(np.abs(z)) < 5.0
    gone = ftcs["solute_outflow"].values[1:] / AMOUNT
    absorbed = walk["solute_outflow"].values[1:] / AMOUNT * n
    assert np.all(gone > 0.2)  # the wall takes a good share: the comparison has teeth
    z_out = (absorbed - n * gone) / np.sqrt(n * gone * (1 - gone))
    assert np.max(np.abs(z_out)) < 5.0
    # The test can fail: leaving with probability r only (a zero ghost cell, the rule before
    # the wall was put on the face) has the expectation of a transfer face with
    # 1/(Δx/2D + 1/H) = D/Δx, i.e. H = 2D/Δx; its FTCS is far from these counts.
    old_rule = run(scenario(**lattice_setup(
        {"kind": "robin", "transfer_coefficient": f"{2 * D / CELL} m/s",
         "ambient": "0 mol/m^3"}, "0.1 mm"), solver={"method": "ftcs"}))
    gone_old = old_rule["solute_outflow"].values[1:] / AMOUNT
    assert np.all(gone_old < gone)
    assert np.max(np.abs((absorbed - n * gone_old) / np.sqrt(n * gone * (1 - gone)))) > 10.0


def sphere_release_short_time(t: np.ndarray, radius: float) -> np.ndarray:
    """Crank eq. 6.21: M_t/M∞ = 6√(Dt/a²)(π^{-1/2} + 2Σ ierfc(na/√(Dt))) − 3Dt/a²; the ierfc
    terms are below 1e-30 for Dt/a² ≤ 0.02, so drop them."""
    tau = D * t / radius ** 2
    return 6 * np.sqrt(tau / math.pi) - 3 * tau


def slab_release_short_time(t: np.ndarray, thickness: float) -> np.ndarray:
    """Crank eq. 4.20 (both faces, half-thickness l/2): M_t/M∞ = 4√(Dt/(πl²)) for Dt/l² ≤ 0.01
    up to ierfc terms below 1e-20."""
    return 4 * np.sqrt(D * t / (math.pi * thickness ** 2))


def test_sphere_series_release_matches_crank_short_time_form() -> None:
    radius = 1e-3
    ds = run({"name": "sphere", "model": "diffusion.fick",
              "domain": {"shape": "sphere", "radius": "1 mm", "cells": [20]},
              "parameters": {"diffusivity": f"{D} m^2/s",
                             "initial": {"kind": "uniform", "amount": "1 nmol"}},
              "boundaries": {"r+": {"kind": "absorbing"}}, "solver": {"method": "series"},
              "time": {"stop": "20 s", "step": "1 s"}, "audit": {"rtol": 1e-10}})
    t = ds["time"].values
    released = ds["solute_outflow"].values / 1e-9
    np.testing.assert_allclose(released[1:], sphere_release_short_time(t[1:], radius),
                               rtol=1e-6)


def test_slab_series_release_matches_crank_short_time_form() -> None:
    ds = run({"name": "slab", "model": "diffusion.fick",
              "domain": {"shape": "box", "size": ["1 mm"], "cells": [20]},
              "parameters": {"diffusivity": f"{D} m^2/s",
                             "initial": {"kind": "uniform", "amount": "1 nmol/cm^2"}},
              "boundaries": {"x-": {"kind": "absorbing"}, "x+": {"kind": "absorbing"}},
              "solver": {"method": "series"},
              "time": {"stop": "10 s", "step": "1 s"}, "audit": {"rtol": 1e-10}})
    t = ds["time"].values
    released = ds["solute_outflow"].values / 1e-5
    np.testing.assert_allclose(released[1:], slab_release_short_time(t[1:], 1e-3), rtol=1e-6)


def test_finite_volumes_converge_to_the_sphere_series() -> None:
    """CN on a fine radial grid reproduces Crank's released fraction to the discretisation
    error; halving Δr shrinks the error (second order in space)."""
    common = {"name": "sphere", "model": "diffusion.fick",
              "parameters": {"diffusivity": f"{D} m^2/s",
                             "initial": {"kind": "uniform", "amount": "1 nmol"}},
              "boundaries": {"r+": {"kind": "absorbing"}},
              "time": {"stop": "300 s", "step": "0.5 s", "output_every": "60 s"}}
    exact = run({**common, "domain": {"shape": "sphere", "radius": "1 mm", "cells": [10]},
                 "solver": {"method": "series"}})["solute_outflow"].values
    errors = []
    for cells in (50, 100):
        fv = run({**common, "domain": {"shape": "sphere", "radius": "1 mm", "cells": [cells]},
                  "solver": {"method": "crank_nicolson"}})["solute_outflow"].values
        errors.append(np.max(np.abs(fv - exact)) / 1e-9)
    assert errors[0] < 5e-3
    assert errors[1] < errors[0] / 3


def test_decay_and_source_enter_the_ledger() -> None:
    """A closed slab with first-order decay k and a uniform source s: the amount obeys
    dM/dt = s·L − k·M, so M(t) = sL/k + (M0 − sL/k)e^{−kt} (exact for the spatial operator;
    CN's time error at kΔt = 0.01 is < 1e-5)."""
    k, s, length, m0 = 1e-2, 1e-3, 1e-3, 1e-5  # 1/s, mol/m³/s, m, mol/m²
    ds = run(scenario(parameters={"diffusivity": f"{D} m^2/s", "decay_rate": f"{k} 1/s",
                                  "initial": {"kind": "uniform", "amount": "1 nmol/cm^2"},
                                  "source": {"rate": f"{s} mol/m^3/s"}},
                      domain={"shape": "box", "size": ["1 mm"], "cells": [20]},
                      time={"stop": "200 s", "step": "1 s", "output_every": "50 s"}))
    t = ds["time"].values
    expected = s * length / k + (m0 - s * length / k) * np.exp(-k * t)
    np.testing.assert_allclose(ds["solute_stored"].values, expected, rtol=1e-5)
    assert ds["solute_sink"].values[-1] > 0 and ds["solute_source"].values[-1] > 0
