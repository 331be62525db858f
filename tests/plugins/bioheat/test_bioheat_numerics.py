"""The core's finite-volume extensions the bioheat plugin uses: the exchange term
−a(x)·(u − u_ref) with its own ledger term, and :class:`ThetaStepper` (one step at a time, with
a per-step source and coefficient updates)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from medtransport.boundary import BoundaryCondition
from medtransport.domain import Grid
from medtransport.numerics.finite_volume import (
    DiffusionProblem,
    ThetaStepper,
    UnstableStepError,
    solve,
)
from medtransport.numerics.linear import SpectralSystem


def problem(grid: Grid, **extra: object) -> DiffusionProblem:
    rng = np.random.default_rng(3)
    shape = grid.cells
    return DiffusionProblem(
        grid, 0.3 + 0.4 * rng.random(shape),
        {grid.faces[0]: BoundaryCondition(grid.faces[0], "robin", coefficient=20.0, value=290.0),
         grid.faces[-1]: BoundaryCondition(grid.faces[-1], "dirichlet", value=310.0)},
        capacity=3e6 + 1e6 * rng.random(shape), source=1e3,
        exchange=2e3 * rng.random(shape), exchange_reference=310.0, **extra)


GRIDS = [Grid("cartesian", (0.0,), (0.02,), (30,)),
         Grid("sphere", (0.0,), (0.01,), (25,)),
         Grid("cartesian", (0.0,) * 3, (0.02,) * 3, (17, 17, 17))]  # 4913 cells: CG


@pytest.mark.parametrize("grid", GRIDS, ids=["slab", "sphere", "box-cg"])
@pytest.mark.parametrize("method", ["crank_nicolson", "backward_euler"])
def test_stepper_matches_solve_and_closes_the_books(grid: Grid, method: str) -> None:
    p = problem(grid)
    u0 = np.full(grid.cells, 305.0)
    sol = solve(p, u0, 2.0, 10, method=method)
    stepper = ThetaStepper(p, 2.0, method)
    u = u0.ravel()
    gained = 0.0
    out = 0.0
    for _ in range(10):
        u, flows = stepper.step(u)
        gained += flows.exchange + flows.source - flows.sink
        out += sum(flows.outflow.values())
    np.testing.assert_allclose(u.reshape(grid.cells), sol.states[-1], rtol=1e-12)
    assert sol.exchange is not None
    np.testing.assert_allclose(gained, sol.exchange[-1] + sol.source[-1], rtol=1e-9)
    mass = np.broadcast_to(grid.weights, grid.cells) * p.cellwise("capacity")
    change = float(np.sum(mass * (u.reshape(grid.cells) - u0)))
    scale = float(np.sum(mass * u0))
    assert abs(change - (gained - out)) < 1e-10 * scale


def test_exchange_equals_decay_plus_held_source() -> None:
    """−a(u − u_ref) is −a·u + a·u_ref: the same states as decay a and source a·u_ref, and the
    exchange ledger term is that source minus that sink."""
    grid = GRIDS[0]
    a = np.linspace(0.0, 3e3, 30)
    common = dict(grid=grid, diffusivity=0.5, capacity=4e6,
                  boundaries={"x-": BoundaryCondition("x-", "dirichlet", value=300.0)})
    with_exchange = solve(DiffusionProblem(**common, exchange=a, exchange_reference=310.0),
                          320.0, 5.0, 20)
    split = solve(DiffusionProblem(**common, decay=a, source=a * 310.0), 320.0, 5.0, 20)
    np.testing.assert_allclose(with_exchange.states, split.states, rtol=1e-13)
    assert with_exchange.exchange is not None and split.exchange is None
    np.testing.assert_allclose(with_exchange.exchange, split.source - split.sink, rtol=1e-9,
                               atol=1e-9 * float(np.max(split.source)))


def test_extra_source_enters_exactly_and_update_refactorizes() -> None:
    grid = GRIDS[0]
    p = problem(grid)
    stepper = ThetaStepper(p, 1.0)
    extra = np.zeros(30)
    extra[5] = 1e4  # J/m³ over the step
    u, flows = stepper.step(np.full(30, 305.0), extra)
    assert flows.extra == pytest.approx(1e4 * grid.weights[5], rel=1e-15)
    assert stepper.factorizations == 1
    stepper.update(exchange=np.zeros(30))
    assert stepper.factorizations == 2
    _, flows = stepper.step(u)
    assert flows.exchange == 0.0


def test_stepper_refuses_an_unstable_explicit_step() -> None:
    p = problem(GRIDS[0])
    with pytest.raises(UnstableStepError) as info:
        ThetaStepper(p, 100.0, "ftcs")
    stable = info.value.max_stable_dt
    ThetaStepper(p, stable, "ftcs")  # the step it names is accepted


def test_compiled_ftcs_refuses_exchange() -> None:
    grid = Grid("cartesian", (0.0,), (0.01,), (10,))
    p = DiffusionProblem(grid, 0.5, capacity=4e6, exchange=1e3, exchange_reference=310.0)
    with pytest.raises(ValueError, match="compiled"):
        solve(p, 300.0, 0.01, 2, method="ftcs", compiled=True)
    sol = solve(p, 300.0, 0.01, 2, method="ftcs")
    assert not sol.compiled and sol.exchange is not None


def _laplacian(n: int, lo: str, hi: str) -> sp.spmatrix:
    """The cell-centred second difference with its ends held at zero or closed (ghost cells
    −u_0 or +u_0), written out independently of the solver."""
    d = np.full(n, -2.0)
    d[0] += -1.0 if lo == "dirichlet" else 1.0
    d[-1] += -1.0 if hi == "dirichlet" else 1.0
    return sp.diags([np.ones(n - 1), d, np.ones(n - 1)], [-1, 0, 1])


@pytest.mark.parametrize("ends", [[("dirichlet", "dirichlet")] * 3,
                                  [("neumann", "neumann"), ("dirichlet", "neumann"),
                                   ("neumann", "dirichlet")]])
def test_spectral_system_inverts_the_kronecker_sum(ends: list[tuple[str, str]]) -> None:
    shape, coupling, diagonal = (5, 6, 7), [0.7, 1.3, 2.1], 1.5
    eye = [sp.identity(n) for n in shape]
    matrix = diagonal * sp.identity(int(np.prod(shape)))
    for axis, (end, n) in enumerate(zip(ends, shape, strict=True)):
        factors = list(eye)
        factors[axis] = _laplacian(n, *end)
        matrix = matrix - coupling[axis] * sp.kron(sp.kron(factors[0], factors[1]), factors[2])
    x = np.random.default_rng(1).random(int(np.prod(shape)))
    solved = SpectralSystem(shape, ends, diagonal, coupling).solve(matrix @ x)
    np.testing.assert_allclose(solved, x, rtol=0, atol=1e-13)


def test_spectral_and_iterative_steps_agree() -> None:
    grid = Grid("cartesian", (0.0,) * 3, (0.02, 0.02, 0.03), (17, 17, 18))
    bcs = {"x-": BoundaryCondition("x-", "dirichlet", value=300.0),
           "y+": BoundaryCondition("y+", "neumann", flux=50.0)}  # the others closed
    p = DiffusionProblem(grid, 0.5, bcs, capacity=4e6, exchange=2e3, exchange_reference=310.0)
    fast = ThetaStepper(p, 5.0, linear_solver="spectral")
    slow = ThetaStepper(p, 5.0, linear_solver="standard")
    assert fast.solver_name.startswith("fast") and slow.solver_name.startswith("conjugate")
    u = v = np.full(grid.cells, 305.0).ravel()
    for _ in range(4):
        u, fu = fast.step(u)
        v, fv = slow.step(v)
    np.testing.assert_allclose(u, v, rtol=1e-11)
    assert fu.outflow["x-"] == pytest.approx(fv.outflow["x-"], rel=1e-8)


def test_spectral_solver_refuses_a_convective_face() -> None:
    grid = Grid("cartesian", (0.0,) * 3, (0.01,) * 3, (4, 4, 4))
    p = DiffusionProblem(grid, 0.5, {"z+": BoundaryCondition("z+", "robin", coefficient=10.0,
                                                             value=293.0)}, capacity=4e6)
    with pytest.raises(ValueError, match="robin"):
        ThetaStepper(p, 1.0, linear_solver="spectral")
