"""Monte Carlo walkers: Einstein's MSD, restricted MSD plateaus, reflection, reproducibility
whatever the thread count, permeable membranes, and signals against exact theory within a few
standard errors."""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np
import pytest

from medtransport.errors import ModelError
from medtransport.numerics import reflecting_walk as rw
from medtransport.numerics.reflecting_walk import PoreWalk, walk_in_pore
from medtransport_dwi import matrix_formalism
from medtransport_dwi.compartments import Cylinder, Free, Planes, Sphere
from medtransport_dwi.montecarlo import allocate, simulate_compartment
from medtransport_dwi.sequence import Protocol, build_measurements, pgse_b_value

D = 2e-9


def _msd(res: rw.WalkResult) -> tuple[np.ndarray, np.ndarray]:
    sq = (res.end - res.start) ** 2
    return sq.mean(axis=0), sq.std(axis=0, ddof=1) / math.sqrt(sq.shape[0])


def test_free_msd_is_2dt_per_axis() -> None:
    n_steps, dt = 50, 0.2e-3
    res = walk_in_pore(PoreWalk("free", D, dt, n_steps), 20000, 11, np.zeros((1, n_steps + 1)))
    msd, se = _msd(res)
    expected = 2 * D * n_steps * dt
    assert np.all(np.abs(msd - expected) < 4 * se)


def test_planes_msd_reaches_l_squared_over_6_and_stays_inside() -> None:
    half = 2e-6
    n_steps, dt = 400, 0.1e-3  # 40 ms ≫ L²/D = 8 ms
    res = walk_in_pore(PoreWalk("planes", D, dt, n_steps, size=half), 20000, 5,
                       np.zeros((1, n_steps + 1)))
    assert np.all(np.abs(res.end[:, 0]) <= half)
    msd, se = _msd(res)
    length = 2 * half
    # the plateau L²/6, approached as Σ_odd exp(−m²π²Dt/L²) — negligible here
    assert abs(msd[0] - length ** 2 / 6) < 4 * se[0]
    assert abs(msd[1] - 2 * D * n_steps * dt) < 4 * se[1]  # free along the planes


def test_sphere_walkers_stay_inside_and_msd_plateaus() -> None:
    r = 3e-6
    n_steps, dt = 300, 0.2e-3  # 60 ms ≫ R²/D = 4.5 ms
    res = walk_in_pore(PoreWalk("sphere", D, dt, n_steps, size=r), 20000, 9,
                       np.zeros((1, n_steps + 1)))
    assert np.linalg.norm(res.end, axis=1).max() <= r * (1 + 1e-12)
    sq = ((res.end - res.start) ** 2).sum(axis=1)
    # two independent uniform points in a ball: E|x − y|² = 2·(3R²/5)
    assert abs(sq.mean() - 6 * r * r / 5) < 4 * sq.std() / math.sqrt(sq.size)


def test_cylinder_reflection_is_exact_in_the_cross_section() -> None:
    r = 1e-6
    res = walk_in_pore(PoreWalk("cylinder", D, 0.5e-3, 100, size=r), 5000, 2,
                       np.zeros((1, 101)))
    assert np.hypot(res.end[:, 0], res.end[:, 1]).max() <= r * (1 + 1e-12)


def test_same_seed_same_bits_whatever_the_thread_count() -> None:
    spec = PoreWalk("sphere", D, 0.1e-3, 200, size=4e-6)
    w = np.ones((2, 201))
    w[1] = np.linspace(-1, 1, 201)
    from medtransport.numerics import threads

    with threads.requested_for(1):
        one = walk_in_pore(spec, 3001, 77, w)
    with threads.requested_for(numba.config.NUMBA_NUM_THREADS):  # all it may use
        many = walk_in_pore(spec, 3001, 77, w)
    assert np.array_equal(one.integrals, many.integrals)
    assert np.array_equal(one.end, many.end)
    other = walk_in_pore(spec, 3001, 78, w)
    assert not np.array_equal(one.end, other.end)
    # a walker's stream does not depend on how many walkers there are
    fewer = walk_in_pore(spec, 10, 77, w)
    assert np.array_equal(fewer.end, one.end[:10])


def test_unresolvable_walker_is_an_error_not_a_loss(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rw, "MAX_REFLECTIONS", 0)
    with pytest.raises(ModelError, match="no walker is dropped"):
        walk_in_pore(PoreWalk("sphere", D, 1e-3, 50, size=1e-6), 100, 1, np.zeros((1, 51)))


def test_impermeable_lattice_keeps_every_walker_on_its_side() -> None:
    spec = PoreWalk("sphere_lattice", D, 0.1e-3, 200, size=4e-6, cell=10e-6,
                    diffusivity_out=D, permeability=0.0)
    res = walk_in_pore(spec, 4000, 3, np.zeros((1, 201)), output_steps=[0, 100, 200])
    assert res.crossings.sum() == 0
    assert np.array_equal(res.compartment[0], res.compartment[-1])


def test_permeable_lattice_keeps_the_equilibrium_volume_fraction() -> None:
    # equal diffusivities: the uniform distribution is stationary (detailed balance)
    spec = PoreWalk("sphere_lattice", D, 0.1e-3, 300, size=4e-6, cell=10e-6,
                    diffusivity_out=D, permeability=5e-5)
    res = walk_in_pore(spec, 20000, 4, np.zeros((1, 301)), output_steps=[0, 300])
    assert res.crossings.sum() > 1000  # exchange happened
    inside = (res.compartment == 0).mean(axis=1)
    frac = 4 / 3 * math.pi * 4 ** 3 / 10 ** 3
    se = math.sqrt(frac * (1 - frac) / 20000)
    assert abs(inside[0] - frac) < 4 * se
    # the end is not independent of the start, so allow the sum of both errors
    assert abs(inside[1] - frac) < 6 * se


def test_membrane_crossing_rate_is_the_permeability() -> None:
    # At equilibrium (uniform density ρ, equal D) a membrane of permeability κ and area S is
    # crossed κρS times per unit time in each direction (the definition of κ): per walker,
    # 2κSt/V_cell crossings in time t. Independent of the time step.
    r, cell, kappa, t = 4e-6, 10e-6, 5e-5, 0.03
    expected = 2 * kappa * 4 * math.pi * r ** 2 * t / cell ** 3
    for dt in (1e-4, 3e-5):
        n = round(t / dt)
        spec = PoreWalk("sphere_lattice", D, dt, n, size=r, cell=cell, diffusivity_out=D,
                        permeability=kappa)
        res = walk_in_pore(spec, 10000, 6, np.zeros((1, n + 1)))
        assert res.crossings.mean() == pytest.approx(expected, rel=0.04)


def test_allocation_adds_up() -> None:
    assert sum(allocate([0.6, 0.3, 0.1], 1001)) == 1001
    assert allocate([0.5, 0.5], 3) in ([2, 1], [1, 2])


def _protocol(b_values: list[float], directions: int = 3) -> Protocol:
    return Protocol.model_validate({
        "pulse_duration": "10 ms", "pulse_separation": "30 ms",
        "shells": [{"b_value": f"{b} s/mm^2", "directions": directions} for b in b_values]})


def test_free_signal_is_exp_minus_bd_within_standard_errors() -> None:
    meas = build_measurements(_protocol([500, 1500]))
    c = Free(diffusivity="2 um^2/ms")
    cw = simulate_compartment(c, meas, 20000, 8, 0.2e-3, 200, np.array([0]))
    expected = np.exp(-meas.b_value * D)
    assert np.all(np.abs(cw.signal.real - expected) < 4 * cw.se_real)


@pytest.mark.parametrize(("pore", "compartment", "size"), [
    ("sphere", Sphere(radius="5 um", diffusivity="2 um^2/ms"), 5e-6),
    ("cylinder", Cylinder(radius="4 um", diffusivity="2 um^2/ms", orientation=[0, 0, 1]), 4e-6),
    ("planes", Planes(separation="8 um", diffusivity="2 um^2/ms", orientation=[1, 0, 0]),
     8e-6)])
def test_signal_matches_the_matrix_formalism_at_high_b(pore: str, compartment: Any,
                                                       size: float) -> None:
    protocol = Protocol.model_validate({
        "pulse_duration": "10 ms", "pulse_separation": "30 ms",
        "shells": [{"b_value": f"{b} s/mm^2", "directions": [[1, 0, 0]]} for b in (3000, 6000)]})
    meas = build_measurements(protocol)
    cw = simulate_compartment(compartment, meas, 20000, 21, 0.1e-3, 400, np.array([0]))
    exact = matrix_formalism.restricted(pore, size, D, meas.shapes[0], meas.strength).real
    z = (cw.signal.real - exact) / cw.se_real
    assert np.all(np.abs(z) < 3), z
    # Im E ≈ 0 for a symmetric pore
    assert np.all(np.abs(cw.signal.imag) < 4 * cw.se_imag)


def test_pgse_b_value_used_by_the_walk() -> None:
    meas = build_measurements(_protocol([1000]))
    assert meas.b_value == pytest.approx(1e9)
    assert pgse_b_value(meas.strength[0], 10e-3, 30e-3) == pytest.approx(1e9, rel=1e-12)


def test_zeppelin_walk_matches_its_tensor_signal() -> None:
    from medtransport_dwi.compartments import Tensor, exact_attenuation

    meas = build_measurements(_protocol([1000, 2500], directions=4))
    c = Tensor(diffusivity_parallel="2 um^2/ms", diffusivity_perpendicular="0.5 um^2/ms",
               orientation=[1, 2, 2])
    cw = simulate_compartment(c, meas, 20000, 13, 0.5e-3, 80, np.array([0]))
    exact = exact_attenuation(c, meas, "matrix").real
    assert np.all(np.abs(cw.signal.real - exact) < 4 * cw.se_real)


def test_bounds_check_allows_per_element_slack_and_fails_nan() -> None:
    from medtransport.audit.bounds import check_bounds

    assert check_bounds("b", np.array([0.0, 1.0]), 0.0, 1.0).passed
    assert not check_bounds("b", np.array([0.5, 1.01]), 0.0, 1.0).passed
    assert check_bounds("b", np.array([0.5, 1.01]), 0.0, 1.0, np.array([0.0, 0.02])).passed
    assert not check_bounds("b", np.array([0.5, np.nan]), 0.0, 1.0).passed
    assert not check_bounds("b", np.array([-0.1]), 0.0, 1.0, 0.05).passed


def test_steps_are_standard_normal() -> None:
    # one step of 300 000 free walkers: 900 000 ziggurat draws scaled by √(2DΔt)
    from scipy import stats

    dt = 1e-3
    res = walk_in_pore(PoreWalk("free", D, dt, 1), 300_000, 99, np.zeros((1, 2)))
    z = ((res.end - res.start) / math.sqrt(2 * D * dt)).ravel()
    assert stats.kstest(z, "norm").pvalue > 1e-3
    assert abs(np.mean(z ** 4) - 3.0) < 0.03  # kurtosis of N(0, 1), SE ≈ 0.01
    # the ziggurat's tail beyond R = 3.4426 has the normal's mass 2·Φ(−R) = 5.8e-4
    tail = np.mean(np.abs(z) > 3.442619855899)
    assert abs(tail - 2 * stats.norm.sf(3.442619855899)) < 5 * math.sqrt(5.8e-4 / z.size)
