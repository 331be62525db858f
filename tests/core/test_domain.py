"""Domains know their integration weights, so the framework can add up any state itself."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medtransport.domain import Compartments, DomainSpec, Grid, Particles
from medtransport.errors import ScenarioError


@pytest.mark.parametrize(("grid", "measure"), [
    (Grid("cartesian", (0.0,), (2e-3,), (17,)), 2e-3),                        # per unit area
    (Grid("cartesian", (0.0, -1.0), (2.0, 1.0), (5, 7)), 4.0),                 # per unit depth
    (Grid("cartesian", (0.0,) * 3, (1.0, 2.0, 3.0), (3, 4, 5)), 6.0),
    (Grid("cylinder", (0.0,), (2.0,), (9,)), math.pi * 4.0),                   # per unit length
    (Grid("cylinder", (1.0,), (2.0,), (9,)), math.pi * 3.0),
    (Grid("sphere", (0.0,), (3.0,), (11,)), 4.0 / 3.0 * math.pi * 27.0),
    (Grid("sphere", (1.0,), (3.0,), (11,)), 4.0 / 3.0 * math.pi * 26.0),
], ids=["slab", "box2d", "box3d", "cylinder", "annulus", "sphere", "shell"])
def test_weights_add_up_to_the_geometric_measure(grid: Grid, measure: float) -> None:
    assert grid.weights.sum() == pytest.approx(measure, rel=1e-13)
    assert grid.weights.shape == grid.cells


def test_integrate_keeps_leading_dims_and_carries_units() -> None:
    grid = Grid("cartesian", (0.0,), (1e-3,), (10,))
    c = np.ones((4, 10)) * np.arange(1, 5)[:, None]  # four times, mol/m³
    total = grid.integrate(c, "mol/m**3")
    assert total.units == total._REGISTRY.parse_units("mol/m**2")
    np.testing.assert_allclose(total.magnitude, [1e-3, 2e-3, 3e-3, 4e-3])
    with pytest.raises(ValueError, match="does not end in the domain's shape"):
        grid.integrate(np.ones((4, 9)), "mol/m**3")
    assert np.isnan(grid.integrate(np.full(10, np.nan), "mol/m**3").magnitude)


def test_radial_face_areas_and_faces() -> None:
    shell = Grid("sphere", (1.0,), (2.0,), (4,))
    assert shell.faces == ("r-", "r+")
    assert shell.face_total_area("r+") == pytest.approx(4 * math.pi * 4.0)
    assert Grid("cylinder", (0.0,), (2.0,), (4,)).faces == ("r+",)
    box = Grid("cartesian", (0.0, 0.0), (2.0, 3.0), (4, 6))
    assert box.faces == ("x-", "x+", "y-", "y+")
    assert box.face_total_area("x+") == pytest.approx(3.0)


def test_compartments_and_particles() -> None:
    comp = Compartments(("central", "peripheral"), (30.0, 40.0))
    assert comp.integrate(np.array([2.0, 1.0]), "mg/L").to("mg").magnitude == pytest.approx(100)
    amounts = Compartments(("gut", "central"))
    assert amounts.integrate(np.array([3.0, 4.0]), "mg").to("mg").magnitude == pytest.approx(7)
    walkers = Particles(count=1000, ndim=3, amount_per_walker=2e-9, amount_units="mol")
    alive = np.r_[np.ones(900), np.zeros(100)]
    assert walkers.integrate(alive, "dimensionless").to("nmol").magnitude == pytest.approx(1800)


@pytest.mark.parametrize(("spec", "fragment"), [
    ({"shape": "box", "size": ["1 mm"], "cells": [10, 10]}, "'size' has 1 axes"),
    ({"shape": "sphere", "radius": "1 mm", "cells": [10], "inner_radius": "2 mm"},
     "smaller than 'radius'"),
    ({"shape": "box", "size": ["1 mm"] * 3, "cells": [1000, 1000, 1000]}, "more than"),
    ({"shape": "compartments"}, "list of names"),
])
def test_inconsistent_domains_are_refused(spec: dict[str, object], fragment: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=fragment):
        DomainSpec.model_validate(spec)


def test_compartments_cannot_host_a_grid_model() -> None:
    from medtransport.runner import prepare

    with pytest.raises(ScenarioError, match=r"domain.shape: diffusion.fick needs a box"):
        prepare({"name": "x", "model": "diffusion.fick",
                 "domain": {"shape": "compartments", "compartments": ["a"]},
                 "parameters": {"diffusivity": "1e-9 m^2/s",
                                "initial": {"kind": "uniform", "amount": "1 mol"}},
                 "time": {"stop": "1 s", "step": "1 s"}})


def test_compartment_integral_of_a_batch_matches_the_weighted_sum_and_keeps_layout() -> None:
    """Σ V·c over compartments for (patient, time, compartment) states, also when the states
    are a strided slice of a time-major array: the same numbers as the explicit weighted sum,
    laid out like the states, with NaN propagated."""
    comp = Compartments(names=("central", "peripheral", "depot"), volumes=(30.0, 40.0, 2.0))
    rng = np.random.default_rng(3)
    time_major = rng.uniform(0.0, 5.0, (11, 7, 4))  # (time, patient, state + a sink)
    states = np.moveaxis(time_major, 0, 1)[..., :3]  # (patient, time, compartment) view
    total = comp.integrate(states, "mg/L").to("mg").magnitude
    expected = 30.0 * states[..., 0] + 40.0 * states[..., 1] + 2.0 * states[..., 2]
    np.testing.assert_allclose(total, expected, rtol=1e-15)
    assert total.shape == (7, 11)
    assert abs(total.strides[0]) < abs(total.strides[1])  # time-major like the states
    states = states.copy()
    states[2, 5, 1] = np.nan
    total = comp.integrate(states, "mg/L").magnitude
    assert np.isnan(total[2, 5]) and np.isfinite(np.delete(total.ravel(), 2 * 11 + 5)).all()
