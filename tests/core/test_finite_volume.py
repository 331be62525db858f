"""The finite-volume diffusion–reaction solver against analytic solutions, and its ledger.

Tolerances are stated per test; where the discretisation error matters they sit a factor 2–4
above the error measured at that resolution, and the test also checks that the error falls like
h² when the grid is refined.
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from scipy.special import erfc, jn_zeros

import medtransport.numerics.finite_volume as fv
from medtransport.boundary import BoundaryCondition
from medtransport.domain import Grid
from medtransport.errors import MedtransportError
from medtransport.numerics.finite_volume import (
    DiffusionProblem,
    UnstableStepError,
    assemble,
    face_flux_operators,
    ftcs_stability,
    solve,
)

METHODS = ("ftcs", "backward_euler", "crank_nicolson")


def bc(face: str, kind: str, **values: float) -> BoundaryCondition:
    return BoundaryCondition(face, kind, **values)


def ledger_residual(sol: fv.DiffusionSolution, problem: DiffusionProblem) -> float:
    """max |Δstored − (source − sink − Σ outflow)| relative to the largest amount seen."""
    stored = sol.stored(problem.grid, problem.cellwise("capacity"))
    claimed = sol.source - sol.sink - sum(sol.outflow.values(), np.zeros_like(stored))
    scale = max(np.max(np.abs(stored)), np.max(np.abs(sol.source)), np.max(np.abs(sol.sink)),
                *(np.max(np.abs(v)) for v in sol.outflow.values()))
    return float(np.max(np.abs(stored - stored[0] - claimed)) / scale)


def slab(n: int, length: float = 1.0, lower: float = 0.0) -> Grid:
    return Grid("cartesian", (lower,), (lower + length,), (n,))


# ----------------------------------------------------------------------- analytic solutions


@pytest.mark.parametrize("method", METHODS)
def test_dirichlet_face_matches_erfc(method: str) -> None:
    # u(x, t) = erfc(x / 2√(Dt)) for u = 1 held at x = 0; at t = 0.01 the far wall (x = 1,
    # 5 diffusion lengths away) is not felt (erfc(5) ≈ 1.5e-12). Measured max errors at 400
    # cells: FTCS 5.8e-6, CN (dt 1e-5) 2.0e-5, BE (dt 1e-6) 3.4e-5.
    grid = slab(400)
    problem = DiffusionProblem(grid, 1.0, {"x-": bc("x-", "dirichlet", value=1.0)})
    t = 0.01
    dt = {"ftcs": 0.3 / 400**2, "backward_euler": 1e-6, "crank_nicolson": 1e-5}[method]
    n = round(t / dt)
    sol = solve(problem, 0.0, t / n, n, output_every=n, method=method)
    exact = erfc(grid.centers(0) / (2.0 * math.sqrt(t)))
    assert np.max(np.abs(sol.states[-1] - exact)) < 1e-4
    assert ledger_residual(sol, problem) < 1e-12


@pytest.mark.parametrize("method", METHODS)
def test_gaussian_variance_grows_as_2dt(method: str) -> None:
    # For cell-centred finite volumes on a uniform grid the second difference of x² is exactly
    # 2Δx², so (far from walls) Var(x) grows by exactly 2Dt for every θ-scheme: round-off only.
    grid = slab(600, 3.0, -1.5)
    x = grid.centers(0)
    u0 = np.exp(-(x**2) / (2 * 0.05**2))
    dt, n = (1e-5, 1000) if method == "ftcs" else (1e-4, 100)
    sol = solve(DiffusionProblem(grid, 1.0), u0, dt, n, output_every=n // 4, method=method)

    def variance(u: np.ndarray) -> float:
        mean = np.sum(x * u) / np.sum(u)
        return float(np.sum((x - mean) ** 2 * u) / np.sum(u))

    for u, t in zip(sol.states[1:], sol.times[1:], strict=True):
        assert (variance(u) - variance(u0)) / (2 * t) == pytest.approx(1.0, rel=1e-10)


def test_gaussian_variance_2d_compiled_anisotropic_spacing() -> None:
    # Walls more than 8σ away at the end: their effect is below e^-32.
    grid = Grid("cartesian", (-1.5, -1.5), (1.5, 1.5), (150, 200))
    x, y = np.meshgrid(grid.centers(0), grid.centers(1), indexing="ij")
    u0 = np.exp(-(x**2 + y**2) / (2 * 0.08**2))
    problem = DiffusionProblem(grid, 0.5)
    dt = 0.9 * ftcs_stability(problem, 1.0).max_stable_dt
    sol = solve(problem, u0, dt, 200, output_every=200, method="ftcs")
    assert sol.compiled
    u, t = sol.states[-1], sol.times[-1]
    for coord in (x, y):
        var = [np.sum(coord**2 * v) / np.sum(v) for v in (u0, u)]
        assert (var[1] - var[0]) / (2 * 0.5 * t) == pytest.approx(1.0, rel=1e-10)


def test_slowest_mode_decays_at_d_pi2_over_l2() -> None:
    # Absorbing ends; u0 = sin(πx/L) is the slowest mode: M(t)/M(0) = exp(−Dπ²t/L²).
    # Measured max error (CN, dt = 1e-3): 9.9e-5 at 50 cells, 2.5e-5 at 100 (second order).
    errors = []
    for n in (50, 100):
        grid = slab(n, 2.0)
        problem = DiffusionProblem(grid, 0.5, {"x-": bc("x-", "absorbing"),
                                               "x+": bc("x+", "absorbing")})
        sol = solve(problem, np.sin(np.pi * grid.centers(0) / 2.0), 1e-3, 400, output_every=100)
        amount = sol.stored(grid)
        exact = np.exp(-0.5 * np.pi**2 * sol.times / 4.0)
        errors.append(np.max(np.abs(amount / amount[0] - exact)))
        assert ledger_residual(sol, problem) < 1e-12
    assert errors[1] < 1e-4
    assert errors[0] / errors[1] > 3.5


def _crank_sphere(dimensionless_time: np.ndarray, terms: int = 4000) -> np.ndarray:
    """Fraction left in a sphere with an absorbing surface, (6/π²) Σ exp(−n²π²Dt/a²)/n²
    (Crank 6.20); 4000 terms leave a tail below 1/4000 only at t = 0, which is not compared."""
    n = np.arange(1, terms + 1)
    return 6 / np.pi**2 * np.sum(np.exp(-np.outer(dimensionless_time, n**2 * np.pi**2)) / n**2,
                                 axis=1)


def _crank_cylinder(dimensionless_time: np.ndarray, terms: int = 2000) -> np.ndarray:
    """Fraction left in a cylinder, Σ 4/j₀ₙ² exp(−j₀ₙ² Dt/a²) (Crank 5.23)."""
    j = jn_zeros(0, terms)
    return np.sum(4 / j**2 * np.exp(-np.outer(dimensionless_time, j**2)), axis=1)


@pytest.mark.parametrize(("geometry", "series"), [("sphere", _crank_sphere),
                                                  ("cylinder", _crank_cylinder)])
def test_radial_release_matches_crank_series(geometry: str, series) -> None:
    # Uniform start, absorbing surface, t up to 0.3 a²/D. Measured max error of the fraction
    # left (CN, 3000 steps): sphere 2.6e-4 at 50 shells and 6.5e-5 at 100; cylinder 2.4e-4 and
    # 5.9e-5 — second order in the shell width.
    a, d = 1e-3, 1e-9
    errors = []
    for n in (50, 100):
        grid = Grid(geometry, (0.0,), (a,), (n,))
        problem = DiffusionProblem(grid, d, {"r+": bc("r+", "absorbing")})
        t_end = 0.3 * a * a / d
        sol = solve(problem, 1.0, t_end / 3000, 3000, output_every=300)
        amount = sol.stored(grid)
        exact = series(d * sol.times[1:] / a**2)
        errors.append(np.max(np.abs(amount[1:] / amount[0] - exact)))
        assert ledger_residual(sol, problem) < 1e-12
    assert errors[0] < 5e-4
    assert errors[1] < 1.5e-4
    assert errors[0] / errors[1] > 3.5


def test_robin_steady_state_is_exact_for_a_linear_profile() -> None:
    # u = 1 held at x = 0, convective loss H·(u − u∞) at x = L. Steady flux
    # q = (1 − u∞)/(L/D + 1/H) and u(x) = 1 − q·x/D; half cells and face resistances add in
    # series exactly, so the finite-volume steady state is exact to round-off.
    d, length, h_coef, ambient = 2.0, 0.5, 3.0, 0.25
    grid = slab(40, length)
    problem = DiffusionProblem(grid, d, {"x-": bc("x-", "dirichlet", value=1.0),
                                         "x+": bc("x+", "robin", coefficient=h_coef,
                                                  value=ambient)})
    q = (1.0 - ambient) / (length / d + 1.0 / h_coef)
    exact = 1.0 - q * grid.centers(0) / d
    a, b = assemble(problem)
    steady = np.linalg.solve(a.toarray(), -b)
    np.testing.assert_allclose(steady, exact, rtol=0, atol=1e-13)
    assert face_flux_operators(problem)["x+"](steady) == pytest.approx(q, rel=1e-12)
    # Backward Euler with a huge step reaches the same state, and its ledger reports q.
    sol = solve(problem, 0.0, 1e6, 6, method="backward_euler")
    np.testing.assert_allclose(sol.states[-1], exact, rtol=0, atol=1e-12)
    rate = np.diff(sol.outflow["x+"])[-1] / 1e6
    assert rate == pytest.approx(q, rel=1e-9)


def test_cylinder_annulus_steady_state_and_flux() -> None:
    # u = 1 at r = a, u = 0 at r = b: u = ln(b/r)/ln(b/a), flux per unit length 2πD/ln(b/a).
    # Measured: profile error 4.9e-4 at 40 shells, 1.2e-4 at 80; flux error 3.2e-4, 7.9e-5.
    a_in, b_out, d = 0.5, 2.0, 1.0
    errors = []
    for n in (40, 80):
        grid = Grid("cylinder", (a_in,), (b_out,), (n,))
        problem = DiffusionProblem(grid, d, {"r-": bc("r-", "dirichlet", value=1.0),
                                             "r+": bc("r+", "absorbing")})
        a, b = assemble(problem)
        u = np.linalg.solve(a.toarray(), -b)
        exact = np.log(b_out / grid.centers(0)) / np.log(b_out / a_in)
        flux = 2 * np.pi * d / np.log(b_out / a_in)
        ops = face_flux_operators(problem)
        assert ops["r+"](u) == pytest.approx(-ops["r-"](u), rel=1e-12)  # steady: in = out
        assert ops["r+"](u) == pytest.approx(flux, rel=1e-3)
        errors.append(np.max(np.abs(u - exact)))
    assert errors[0] < 1e-3
    assert errors[0] / errors[1] > 3.5


def test_periodic_fourier_mode_decays_by_the_discrete_factor() -> None:
    # On a periodic axis cos(2πx/L) is an eigenvector of the FTCS step with factor
    # 1 − 4r·sin²(πΔx/L): exact to round-off.
    grid = Grid("cartesian", (0.0, 0.0), (1.0, 1.0), (64, 8))
    x = grid.centers(0)[:, None] * np.ones(grid.cells)
    problem = DiffusionProblem(grid, 1.0, {f: bc(f, "periodic") for f in ("x-", "x+")})
    h = 1 / 64
    dt = 0.2 * h * h
    sol = solve(problem, np.cos(2 * np.pi * x), dt, 500, output_every=500, method="ftcs")
    assert sol.compiled
    factor = (1 - 4 * 0.2 * np.sin(np.pi * h) ** 2) ** 500
    np.testing.assert_allclose(sol.states[-1], factor * np.cos(2 * np.pi * x), rtol=0,
                               atol=1e-12)


# ----------------------------------------------------------------------- the ledger


def _kind(face: str, kind: str) -> BoundaryCondition:
    return {
        "no_flux": bc(face, "no_flux"),
        "dirichlet": bc(face, "dirichlet", value=2.0),
        "absorbing": bc(face, "absorbing"),
        "neumann": bc(face, "neumann", flux=0.7),
        "robin": bc(face, "robin", coefficient=1.5, value=-0.5),
        "permeable": bc(face, "permeable", coefficient=0.2, value=3.0),
        "periodic": bc(face, "periodic"),
    }[kind]


KINDS = ("no_flux", "dirichlet", "absorbing", "neumann", "robin", "permeable", "periodic")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kind", KINDS)
def test_ledger_closes_with_variable_coefficients(method: str, kind: str) -> None:
    rng = np.random.default_rng(1)
    grid = Grid("cartesian", (0.0, 0.0), (1.0, 2.0), (12, 9))
    bcs = {"x-": _kind("x-", kind), "x+": _kind("x+", kind),
           "y-": bc("y-", "robin", coefficient=0.3, value=1.0)}
    problem = DiffusionProblem(grid, rng.uniform(0.01, 0.1, grid.cells), bcs,
                               decay=rng.uniform(0, 0.5, grid.cells),
                               source=rng.uniform(-0.1, 1.0, grid.cells),
                               capacity=rng.uniform(0.5, 2.0, grid.cells))
    dt = 0.9 * ftcs_stability(problem, 1.0).max_stable_dt
    sol = solve(problem, rng.uniform(0, 1, grid.cells), dt, 150, output_every=20,
                method=method)
    assert not sol.compiled
    assert ledger_residual(sol, problem) < 1e-12
    assert set(sol.outflow) == ({"y-", "y+"} if kind == "periodic" else set(grid.faces))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kind", KINDS)
def test_ledger_closes_on_the_compiled_path(method: str, kind: str) -> None:
    grid = Grid("cartesian", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (10, 11, 12))
    bcs = {f: _kind(f, kind) for f in ("z-", "z+")}
    bcs |= {"x-": bc("x-", "absorbing"), "y+": bc("y+", "neumann", flux=-0.4)}
    problem = DiffusionProblem(grid, 0.02, bcs, capacity=1.7)
    u0 = np.random.default_rng(2).uniform(0, 1, grid.cells)
    dt = ftcs_stability(problem, 1.0).max_stable_dt
    sol = solve(problem, u0, dt, 120, output_every=25, method=method)
    assert sol.compiled == (method == "ftcs")
    assert ledger_residual(sol, problem) < 1e-12


@pytest.mark.parametrize("geometry", ["cylinder", "sphere"])
@pytest.mark.parametrize("inner", [0.0, 0.2])
@pytest.mark.parametrize("method", METHODS)
def test_ledger_closes_on_radial_grids(geometry: str, inner: float, method: str) -> None:
    grid = Grid(geometry, (inner,), (1.0,), (30,))
    bcs = {"r+": bc("r+", "robin", coefficient=2.0, value=0.1)}
    if inner:
        bcs["r-"] = bc("r-", "dirichlet", value=1.0)
    problem = DiffusionProblem(grid, np.linspace(0.5, 1.5, 30), bcs, decay=0.2, source=0.3)
    dt = 0.5 * ftcs_stability(problem, 1.0).max_stable_dt
    sol = solve(problem, 1.0, dt, 200, output_every=50, method=method)
    assert ledger_residual(sol, problem) < 1e-12
    assert set(sol.outflow) == set(grid.faces)


def test_assembled_rates_split_into_the_ledger_terms() -> None:
    rng = np.random.default_rng(3)
    grid = Grid("cartesian", (0.0, 0.0), (1.0, 1.0), (7, 5))
    bcs = {"x-": _kind("x-", "dirichlet"), "y-": _kind("y-", "robin"),
           "y+": _kind("y+", "neumann")}
    decay, source = rng.uniform(0, 1, grid.cells), rng.uniform(0, 1, grid.cells)
    problem = DiffusionProblem(grid, rng.uniform(0.1, 1, grid.cells), bcs, decay=decay,
                               source=source)
    a, b = assemble(problem)
    np.testing.assert_allclose(a.toarray(), a.toarray().T, rtol=0, atol=1e-14)
    u = rng.uniform(0, 1, grid.cells)
    w = grid.weights
    rate = np.sum(a @ u.ravel() + b)
    claimed = (np.sum(w * source) - np.sum(w * decay * u)
               - sum(op(u) for op in face_flux_operators(problem).values()))
    assert rate == pytest.approx(claimed, rel=1e-13, abs=1e-13)


# ----------------------------------------------------------------------- explicit stability


def test_ftcs_refuses_an_unstable_step_and_names_the_largest_stable_one() -> None:
    grid = Grid("cartesian", (0.0, 0.0), (1.0, 1.0), (50, 50))
    problem = DiffusionProblem(grid, 2.0)
    h = 1 / 50
    info = ftcs_stability(problem, 1e-5)
    assert info.form == "textbook"
    assert info.r == pytest.approx(2.0 * 1e-5 / h**2)
    assert info.limit == pytest.approx(0.25)  # 1/(2d)
    assert info.max_stable_dt == pytest.approx(h * h / (4 * 2.0))
    bad = 1.5 * info.max_stable_dt
    with pytest.raises(UnstableStepError) as err:
        solve(problem, 1.0, bad, 10, method="ftcs")
    assert isinstance(err.value, MedtransportError)
    assert err.value.max_stable_dt == pytest.approx(info.max_stable_dt)
    assert f"{fv._safe_sig(info.max_stable_dt):.6g}" in str(err.value)
    assert "5e-05" in str(err.value)  # h²/(4D) = 5e-5 s
    # The printed limit is rounded down, so using it works.
    solve(problem, 1.0, float(f"{fv._safe_sig(info.max_stable_dt):.6g}"), 2, method="ftcs")


def test_stability_limit_is_tightened_by_held_faces_and_decay() -> None:
    grid = Grid("cartesian", (0.0,) * 3, (1.0,) * 3, (8, 8, 8))
    held = DiffusionProblem(grid, 1.0, {"x-": bc("x-", "dirichlet", value=1.0)})
    assert ftcs_stability(held, 1e-4).limit == pytest.approx(1 / 7)  # 2d + 1
    decaying = DiffusionProblem(grid, 1.0, decay=10.0)
    info = ftcs_stability(decaying, 1e-4)
    assert info.form == "general"
    assert info.max_stable_dt == pytest.approx(1 / (6 * 64 + 10))


def test_substeps_split_an_unstable_step_into_the_fewest_stable_ones() -> None:
    grid = Grid("cartesian", (0.0, 0.0), (1.0, 1.0), (20, 20))
    problem = DiffusionProblem(grid, 1.0, {"x+": bc("x+", "absorbing")})
    limit = ftcs_stability(problem, 1.0).max_stable_dt
    u0 = np.random.default_rng(4).uniform(0, 1, grid.cells)
    dt = 2.5 * limit
    sol = solve(problem, u0, dt, 20, output_every=5, method="ftcs", substeps_allowed=True)
    assert sol.substeps == 3
    np.testing.assert_allclose(sol.times, dt * np.arange(0, 21, 5))
    fine = solve(problem, u0, dt / 3, 60, output_every=15, method="ftcs")
    np.testing.assert_allclose(sol.states, fine.states, rtol=0, atol=1e-14)
    np.testing.assert_allclose(sol.outflow["x+"], fine.outflow["x+"], rtol=1e-13)
    assert ledger_residual(sol, problem) < 1e-12
    exact = solve(problem, u0, limit, 3, method="ftcs", substeps_allowed=True)
    assert exact.substeps == 1


# ----------------------------------------------------------------------- compiled kernel


CASES = [
    ((40,), {"x-": "dirichlet", "x+": "robin"}),
    ((40,), {"x-": "periodic", "x+": "periodic"}),
    ((2,), {"x-": "periodic", "x+": "periodic"}),
    ((1,), {"x-": "neumann", "x+": "robin"}),
    ((30, 20), {"x-": "absorbing", "y-": "neumann", "y+": "permeable"}),
    ((30, 20), {"y-": "periodic", "y+": "periodic", "x+": "robin"}),
    ((1, 17), {"x-": "dirichlet", "y+": "absorbing"}),
    ((9, 10, 11), {"x-": "periodic", "x+": "periodic", "z-": "dirichlet", "z+": "robin"}),
    ((9, 10, 11), {"y-": "dirichlet", "y+": "neumann", "z-": "periodic", "z+": "periodic"}),
    ((3, 1, 2), {"x+": "dirichlet", "z-": "robin"}),
    ((48, 48, 48), {"x-": "absorbing", "y+": "robin", "z+": "dirichlet"}),  # threaded size
]


@pytest.mark.parametrize(("cells", "kinds"), CASES)
def test_compiled_and_sparse_ftcs_agree(cells: tuple[int, ...], kinds: dict[str, str]) -> None:
    grid = Grid("cartesian", (0.0,) * len(cells), tuple(0.5 * (i + 1) for i in
                                                       range(len(cells))), cells)
    problem = DiffusionProblem(grid, 0.3, {f: _kind(f, k) for f, k in kinds.items()},
                               capacity=1.3)
    u0 = np.random.default_rng(5).uniform(0, 1, cells)
    dt = ftcs_stability(problem, 1.0).max_stable_dt
    n = 10 if math.prod(cells) > 50_000 else 60
    fast = solve(problem, u0, dt, n, output_every=7, method="ftcs")
    slow = solve(problem, u0, dt, n, output_every=7, method="ftcs", compiled=False)
    assert fast.compiled and not slow.compiled
    np.testing.assert_allclose(fast.states, slow.states, rtol=0, atol=1e-12)
    for face in slow.outflow:
        np.testing.assert_allclose(fast.outflow[face], slow.outflow[face], rtol=1e-12,
                                   atol=1e-12)
    assert ledger_residual(fast, problem) < 1e-12


@pytest.mark.parametrize("shape", [(12, 10, 9), (1, 40, 33)])
@pytest.mark.parametrize("periodic", [(0, 0, 0), (0, 1, 1)])
def test_fused_step_pairs_are_bitwise_identical_to_single_steps(
        shape: tuple[int, int, int], periodic: tuple[int, int, int]) -> None:
    # Temporal blocking (two steps per pass, for grids beyond the caches) runs the same
    # arithmetic per row, so it must agree bit for bit, boundary-layer sums included.
    from medtransport.numerics.ftcs import ftcs_steps

    u0 = np.random.default_rng(7).uniform(0, 1, shape)
    coef = np.array([0.05, 0.1, 0.12])
    ka = np.array([0.03, 0.0, 0.02, 0.01, 0.04, 0.05]) * (1 - np.repeat(periodic, 2))
    kb = np.array([0.01, 0.2, 0.0, 0.03, 0.02, 0.01]) * (1 - np.repeat(periodic, 2))
    out = []
    for fuse in (False, True):
        for threads in (1, 3):
            u, v, sums = u0.copy(), np.empty_like(u0), np.zeros(6)
            in_v = ftcs_steps(u, v, 7, coef, np.array(periodic), ka, kb, sums, fuse, threads)
            out.append(((v if in_v else u).copy(), sums))
    for state, sums in out[1:]:
        np.testing.assert_array_equal(state, out[0][0])
        np.testing.assert_array_equal(sums, out[0][1])


def test_compiled_ftcs_conserves_mass_with_closed_walls() -> None:
    grid = Grid("cartesian", (0.0,) * 3, (1.0,) * 3, (40, 40, 40))
    problem = DiffusionProblem(grid, 1.0)
    u0 = np.random.default_rng(6).uniform(0, 1, grid.cells)
    sol = solve(problem, u0, ftcs_stability(problem, 1.0).max_stable_dt, 1000,
                output_every=250, method="ftcs")
    assert sol.compiled
    totals = sol.states.reshape(len(sol.times), -1).sum(axis=1)
    assert np.max(np.abs(totals - totals[0])) / totals[0] < 1e-13
    assert np.ptp(sol.states[-1]) < np.ptp(u0)  # it did diffuse


def test_ledger_closes_on_a_grid_large_enough_for_fused_steps() -> None:
    cells = (104, 104, 100)
    assert math.prod(cells) >= fv._FUSE_CELLS
    grid = Grid("cartesian", (0.0,) * 3, (1.0,) * 3, cells)
    problem = DiffusionProblem(grid, 1e-3, {"x-": bc("x-", "dirichlet", value=1.0),
                                            "y+": bc("y+", "robin", coefficient=0.5),
                                            "z-": bc("z-", "neumann", flux=0.2)})
    u0 = np.random.default_rng(8).uniform(0, 1, cells)
    sol = solve(problem, u0, ftcs_stability(problem, 1.0).max_stable_dt, 9, output_every=4,
                method="ftcs")
    assert sol.compiled
    assert ledger_residual(sol, problem) < 1e-12


def test_compiled_path_needs_uniform_coefficients() -> None:
    grid = slab(10)
    problem = DiffusionProblem(grid, np.linspace(1, 2, 10))
    with pytest.raises(ValueError, match="constant coefficients"):
        solve(problem, 1.0, 1e-4, 2, method="ftcs", compiled=True)
    assert not solve(problem, 1.0, 1e-4, 2, method="ftcs").compiled


def test_numba_is_imported_only_when_ftcs_runs() -> None:
    code = ("import sys, medtransport, medtransport.numerics.finite_volume as fv;"
            "from medtransport.domain import Grid;"
            "p = fv.DiffusionProblem(Grid('cartesian', (0.0,), (1.0,), (8,)), 1.0);"
            "fv.solve(p, 1.0, 1e-3, 3);"
            "assert 'numba' not in sys.modules, 'numba imported too early';"
            "fv.solve(p, 1.0, 1e-3, 3, method='ftcs');"
            "assert 'numba' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------- implicit methods


@pytest.mark.parametrize("method", ["backward_euler", "crank_nicolson"])
def test_one_factorization_per_implicit_run(method: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import medtransport.numerics.linear as linear

    calls = []
    real = linear.splu

    def counting(matrix, *args, **kwargs):
        calls.append(matrix.shape)
        return real(matrix, *args, **kwargs)

    monkeypatch.setattr(linear, "splu", counting)
    grid = Grid("cartesian", (0.0, 0.0), (1.0, 1.0), (16, 16))
    problem = DiffusionProblem(grid, 1.0, {"x-": bc("x-", "absorbing")})
    sol = solve(problem, 1.0, 1e-3, 100, output_every=10, method=method)
    assert len(calls) == 1
    assert sol.factorizations == 1
    assert len(sol.times) == 11


def test_outputs_progress_and_final_state() -> None:
    seen: list[float] = []
    problem = DiffusionProblem(slab(10), 1.0)
    sol = solve(problem, np.arange(10.0), 1e-3, 10, output_every=4, progress=seen.append)
    np.testing.assert_allclose(sol.times, [0, 4e-3, 8e-3, 1e-2])
    assert sol.states.shape == (4, 10)
    np.testing.assert_array_equal(sol.states[0], np.arange(10.0))
    assert seen == pytest.approx([0.4, 0.8, 1.0])
    assert sol.sink.shape == sol.source.shape == (4,)


def test_problem_validation() -> None:
    grid = slab(5)
    with pytest.raises(ValueError, match="no face"):
        DiffusionProblem(grid, 1.0, {"y-": bc("y-", "no_flux")})
    with pytest.raises(ValueError, match="periodic"):
        DiffusionProblem(grid, 1.0, {"x-": bc("x-", "periodic")})
    with pytest.raises(ValueError, match="shape"):
        DiffusionProblem(grid, np.ones(4))
    with pytest.raises(ValueError, match="capacity"):
        DiffusionProblem(grid, 1.0, capacity=0.0)
    with pytest.raises(ValueError, match="method"):
        solve(DiffusionProblem(grid, 1.0), 0.0, 1e-3, 1, method="rk4")  # type: ignore[arg-type]
    ball = Grid("sphere", (0.0,), (1.0,), (5,))
    with pytest.raises(ValueError, match="no face r-"):
        DiffusionProblem(ball, 1.0, {"r-": bc("r-", "no_flux")})


@pytest.mark.parametrize("method", ["backward_euler", "crank_nicolson"])
def test_large_3d_grids_use_conjugate_gradients_with_the_same_answer_and_ledger(
        method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Above the LU limit a 3-D system goes to Jacobi-preconditioned CG; the states agree with
    the LU solution and the ledger still closes."""
    import medtransport.numerics.linear as linear

    grid = Grid("cartesian", (0.0,) * 3, (1.0,) * 3, (20, 20, 20))
    problem = DiffusionProblem(grid, 1.0, {"x-": bc("x-", "absorbing"),
                                           "z+": bc("z+", "robin", coefficient=2.0, value=0.5)},
                               decay=0.3)
    u0 = np.random.default_rng(4).random(grid.cells)
    monkeypatch.setattr(linear, "LU_LIMIT_3D", 10**9)
    direct = solve(problem, u0, 2e-3, 20, output_every=5, method=method)
    monkeypatch.setattr(linear, "LU_LIMIT_3D", 1000)
    iterative = solve(problem, u0, 2e-3, 20, output_every=5, method=method)
    assert direct.factorizations == 1 and iterative.factorizations == 0
    np.testing.assert_allclose(iterative.states, direct.states, rtol=0, atol=1e-11)
    stored = iterative.stored(grid)
    expected = stored[0] + iterative.source - iterative.sink - sum(iterative.outflow.values())
    np.testing.assert_allclose(stored, expected, rtol=1e-11)


@pytest.mark.parametrize(("method", "compiled"), [("crank_nicolson", None),
                                                  ("backward_euler", None),
                                                  ("ftcs", True), ("ftcs", False)])
def test_additions_superpose_and_are_booked_as_inflow(method: str, compiled: bool | None
                                                      ) -> None:
    """An injection at the end of step s is linear superposition: the run with it equals the
    run without plus a run that starts from the injected field at step s — and the amount it
    adds is the ledger's inflow, so stored = initial + inflow − outflow at every output."""
    grid = Grid("cartesian", (0.0,), (1e-3,), (50,))
    bcs = {"x-": bc("x-", "absorbing"), "x+": bc("x+", "no_flux")}
    problem = fv.DiffusionProblem(grid, 1e-9, bcs)
    x = grid.centers(0)
    u0 = np.exp(-((x - 3e-4) / 5e-5) ** 2)
    shot = np.where(np.abs(x - 7e-4) < 1e-4, 2.0, 0.0)
    dt, n, every = 0.1, 300, 20  # r = 0.25: FTCS stable beside the absorbing face
    kw = {"method": method, "compiled": compiled} if method == "ftcs" else {"method": method}
    injected = fv.solve(problem, u0, dt, n, output_every=every, additions={50: shot, 120: shot},
                        **kw)
    plain = fv.solve(problem, u0, dt, n, output_every=every, **kw)
    expected = plain.states.copy()
    for s in (50, 120):
        later = fv.solve(problem, shot, dt, n - s, output_every=1, **kw)
        for i, t_step in enumerate(range(0, n + 1, every)):
            if t_step >= s:
                expected[i] += later.states[t_step - s]
    np.testing.assert_allclose(injected.states, expected, rtol=1e-9, atol=1e-12)
    amount = float(np.sum(grid.weights * shot))
    steps = np.arange(0, n + 1, every)
    assert injected.inflow is not None and plain.inflow is None
    np.testing.assert_allclose(injected.inflow, amount * ((steps >= 50).astype(float)
                                                          + (steps >= 120)), rtol=1e-14)
    stored = injected.stored(grid)
    books = stored[0] + injected.inflow - injected.outflow["x-"] - injected.outflow["x+"]
    np.testing.assert_allclose(stored, books, rtol=1e-11, atol=1e-15)
    with pytest.raises(ValueError, match="steps run from 1"):
        fv.solve(problem, u0, dt, n, additions={0: shot}, **kw)
