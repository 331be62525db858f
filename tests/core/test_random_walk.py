"""Random walks against exact results, each within a stated number of standard errors.

Every comparison is statistical with a fixed seed: a count from n independent walkers with
probability p has standard error √(n·p(1 − p)); a sample variance of n Gaussian values has
standard error σ²·√(2/(n − 1)). We require |z| < 5 throughout (a false alarm once in ~10⁶).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import jn_zeros, ndtr

from medtransport.domain import Grid
from medtransport.errors import AuditFailure
from medtransport.numerics import random_walk as rw
from medtransport.numerics.series import slab_release, sphere_release

D = 1e-9  # m²/s, a small molecule in water
Z_MAX = 5.0


def ftcs_reference(u0: np.ndarray, probs: tuple[float, ...], absorbing: tuple[bool, ...],
                   outputs: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The cell-centred finite-volume FTCS, written out here: u ← u + Σ_k r_k(u₊ − 2u + u₋)
    with a zero flux through a reflecting face and the density held at 0 on an absorbing face
    (half a cell from the edge cell's centre: outward flux 2·r_k·u_edge per step); also the
    cumulative amount lost through each face."""
    u = u0.astype(float)
    lost = np.zeros(2 * u.ndim)
    us, losts = [], []
    for step in range(max(outputs) + 1):
        if step in outputs:
            us.append(u.copy())
            losts.append(lost.copy())
        new = u.copy()
        for k, r in enumerate(probs):
            n = u.shape[k]
            inner = np.diff(u, axis=k)  # u_{i+1} − u_i across each interior face
            flux = np.zeros(tuple(n + 1 if a == k else m for a, m in enumerate(u.shape)))
            body = [slice(None)] * u.ndim
            body[k] = slice(1, n)
            flux[tuple(body)] = r * inner  # into cell i from the + side, per step
            for s, end in ((0, 0), (1, n - 1)):
                if absorbing[2 * k + s]:
                    edge = u.take(end, axis=k)
                    face = [slice(None)] * u.ndim
                    face[k] = 0 if s == 0 else n  # the face's index among the n + 1 faces
                    flux[tuple(face)] = (1 if s == 0 else -1) * 2.0 * r * edge
                    lost[2 * k + s] += 2.0 * r * edge.sum()
            lo = [slice(None)] * u.ndim
            hi = [slice(None)] * u.ndim
            lo[k], hi[k] = slice(0, n), slice(1, n + 1)
            new += flux[tuple(hi)] - flux[tuple(lo)]
        u = new
    return np.array(us), np.array(losts)


def assert_counts_match(counts: np.ndarray, expected: np.ndarray, n: int) -> None:
    """Binomial z-scores per cell where the expectation is ≥ 20; cells below are pooled;
    cells the FTCS cannot reach (or certainly holds, p = 1) must match exactly."""
    counts, expected = counts.ravel(), expected.ravel()
    p = expected / n
    var = n * p * (1 - p)
    certain = var == 0
    np.testing.assert_array_equal(counts[certain], expected[certain])
    big = ~certain & (expected >= 20)
    z = (counts[big] - expected[big]) / np.sqrt(var[big])
    assert np.max(np.abs(z), initial=0.0) < Z_MAX, np.max(np.abs(z))
    rest = ~certain & ~big
    sd = math.sqrt(max(var[rest].sum(), 1.0))
    assert abs(counts[rest].sum() - expected[rest].sum()) < Z_MAX * sd


# --------------------------------------------------------------------------- lattice walk

def test_lattice_mean_equals_ftcs_with_reflecting_walls() -> None:
    grid = Grid("cartesian", (0.0,), (4e-4,), (40,))
    dt = 0.9 * rw.largest_lattice_step(grid, D)
    n = 100_000
    start = np.zeros(40, dtype=np.int64)
    start[10], start[11] = 60_000, 40_000
    outputs = [0, 1, 10, 100, 400]
    res = rw.lattice_walk(grid, start, D, dt, outputs, seed=11)
    expected, _ = ftcs_reference(start, res.jump_probability, (False, False), outputs)
    assert res.jump_probability[0] == pytest.approx(0.45)
    for i in range(len(outputs)):
        assert res.counts[i].sum() == n
        assert_counts_match(res.counts[i], expected[i], n)


def test_lattice_mean_equals_ftcs_in_2d_with_absorbing_faces() -> None:
    # Unequal spacing: r_x = 4·r_y; x- and y+ absorb, the others reflect.
    grid = Grid("cartesian", (0.0, 0.0), (1.5e-4, 2.4e-4), (15, 12))
    walls = {"x-": "absorbing", "x+": "reflecting", "y-": "reflecting", "y+": "absorbing"}
    dt = 0.95 * rw.largest_lattice_step(grid, D, walls)
    n = 50_000
    start = np.zeros(grid.cells, dtype=np.int64)
    start[4, 6] = n
    outputs = [0, 5, 50, 300]
    res = rw.lattice_walk(grid, start, D, dt, outputs, boundaries=walls, seed=3)
    expected, lost = ftcs_reference(start, res.jump_probability, (True, False, False, True),
                                    outputs)
    for i in range(len(outputs)):
        assert_counts_match(res.counts[i], expected[i], n)
        absorbed = np.array([res.absorbed[f][i] for f in grid.faces])
        assert absorbed[1] == absorbed[2] == 0
        for j in (0, 3):
            p = lost[i, j] / n
            if p > 0:
                assert abs(absorbed[j] - lost[i, j]) < Z_MAX * math.sqrt(n * p * (1 - p))
        assert res.counts[i].sum() + absorbed.sum() == n


def test_lattice_engines_agree_bit_for_bit_and_seeds_matter() -> None:
    grid = Grid("cartesian", (0.0, 0.0, 0.0), (1e-4, 1e-4, 1e-4), (6, 5, 4))
    walls = dict.fromkeys(grid.faces, "reflecting") | {"z+": "absorbing", "x-": "absorbing"}
    dt = rw.largest_lattice_step(grid, D, walls)  # exactly at the bound is allowed
    start = np.zeros(grid.cells, dtype=np.int64)
    start[2, 2, 1] = 3000
    runs = {eng: rw.lattice_walk(grid, start, D, dt, [0, 7, 60], boundaries=walls, seed=5,
                                 engine=eng) for eng in ("numba", "numpy")}
    again = rw.lattice_walk(grid, start, D, dt, [0, 7, 60], boundaries=walls, seed=5)
    other = rw.lattice_walk(grid, start, D, dt, [0, 7, 60], boundaries=walls, seed=6)
    for res in (runs["numpy"], again):
        np.testing.assert_array_equal(res.counts, runs["numba"].counts)
        for f in grid.faces:
            np.testing.assert_array_equal(res.absorbed[f], runs["numba"].absorbed[f])
    assert not np.array_equal(other.counts, runs["numba"].counts)
    assert runs["numba"].absorbed["z+"][-1] > 0


def test_lattice_refuses_an_unstable_step_naming_the_largest() -> None:
    grid = Grid("cartesian", (0.0,) * 3, (1e-4,) * 3, (10, 10, 10))
    dt_max = (1e-5) ** 2 / (6 * D)
    assert rw.largest_lattice_step(grid, D) == pytest.approx(dt_max)
    start = np.ones(grid.cells, dtype=np.int64)
    with pytest.raises(ValueError, match=f"largest allowed dt is {dt_max:.6g} s"):
        rw.lattice_walk(grid, start, D, 1.01 * dt_max, [0, 1], seed=0)
    with pytest.raises(ValueError, match="Cartesian"):
        rw.lattice_walk(Grid("sphere", (0.0,), (1e-4,), (10,)), np.ones(10, dtype=np.int64),
                        D, 1e-3, [1], seed=0)


def test_lattice_concentration_uses_cell_measures() -> None:
    grid = Grid("cartesian", (0.0, 0.0), (2e-4, 1e-4), (4, 2))
    start = np.full(grid.cells, 10, dtype=np.int64)
    res = rw.lattice_walk(grid, start, D, 0.1 * rw.largest_lattice_step(grid, D), [0, 3],
                          seed=1)
    c = res.concentration(2e-12)  # mol per walker → mol/m² on a 2-D grid
    np.testing.assert_allclose(np.sum(c * grid.weights, axis=(1, 2)), 80 * 2e-12, rtol=1e-14)


def test_books_check_raises_when_a_walker_goes_missing() -> None:
    rw._check_books(7, {"x-": 2, "x+": 1}, 10, 4)
    with pytest.raises(AuditFailure, match="not conserved at step 4"):
        rw._check_books(6, {"x-": 2, "x+": 1}, 10, 4)


# --------------------------------------------------------------------------- off-lattice walk

def test_free_walkers_have_variance_2Dt() -> None:
    n, dt = 100_000, 0.01
    res = rw.brownian_walk(rw.place_at_point(n, [0.0]), D, dt, [1, 10, 100], seed=2)
    for i, t in enumerate(res.times):
        x = res.positions[i, :, 0]
        var = 2 * D * t
        assert abs(x.mean()) < Z_MAX * math.sqrt(var / n)
        assert abs(x.var(ddof=1) - var) < Z_MAX * var * math.sqrt(2 / (n - 1))
    res3 = rw.brownian_walk(rw.place_at_point(n, [1e-3, 0.0, -1e-3]), D, 0.5, [40], seed=9,
                            keep_positions=True)
    x = res3.positions[0] - [1e-3, 0.0, -1e-3]
    var = 2 * D * 20.0
    cov = np.cov(x.T)
    for k in range(3):
        assert abs(cov[k, k] - var) < Z_MAX * var * math.sqrt(2 / (n - 1))
    off = cov[~np.eye(3, dtype=bool)]
    assert np.max(np.abs(off)) < Z_MAX * var / math.sqrt(n)  # independent axes


def test_mirror_reflection_between_planes_is_exact_for_one_huge_step() -> None:
    # One step with σ = 2L folds onto [0, L]: density Σ_m φ(x ∓ x0 − 2mL) (method of images).
    length, x0, n = 1e-4, 0.3e-4, 100_000
    sigma = 2 * length
    box = Grid("cartesian", (0.0,), (length,), (10,))
    res = rw.brownian_walk(rw.place_at_point(n, [x0]), D, sigma ** 2 / (2 * D), [1],
                           domain=box, seed=4, bin_grid=box)
    assert res.inside[0] == n
    e = box.edges(0)
    m = np.arange(-20, 21)[:, None]
    cdf = (ndtr((e - x0 - 2 * m * length) / sigma) + ndtr((e + x0 - 2 * m * length) / sigma))
    p = np.diff(cdf.sum(axis=0))
    assert p.sum() == pytest.approx(1.0, abs=1e-12)
    z = (res.counts[0] - n * p) / np.sqrt(n * p * (1 - p))
    assert np.max(np.abs(z)) < Z_MAX


def test_reflecting_box_keeps_every_walker_inside() -> None:
    box = Grid("cartesian", (0.0, -1e-4), (1e-4, 1e-4), (5, 5))
    start = rw.place_uniform(20_000, box, seed=1)
    res = rw.brownian_walk(start, D, 2.0, [0, 10, 50], domain=box, seed=8)
    assert np.all(res.inside == 20_000)
    pos = res.positions
    assert np.all((pos >= [0.0, -1e-4]) & (pos <= [1e-4, 1e-4]))


@pytest.mark.parametrize("geometry", ["sphere", "cylinder"])
@pytest.mark.parametrize("sigma_over_a", [0.3, 3.0])
def test_specular_reflection_keeps_walkers_inside_and_uniform(geometry: str,
                                                              sigma_over_a: float) -> None:
    # Reflection preserves phase-space volume, so the uniform density is stationary: from the
    # centre, walkers fill the body uniformly — even with steps three times its radius.
    a, n = 1e-4, 20_000
    dim = 3 if geometry == "sphere" else 2
    body = Grid(geometry, (0.0,), (a,), (5,))
    dt = (sigma_over_a * a) ** 2 / (2 * D)
    res = rw.brownian_walk(rw.place_at_point(n, [0.0] * dim), D, dt, [60], domain=body,
                           seed=12, bin_grid=body)
    assert res.inside[0] == n
    assert np.all(np.linalg.norm(res.positions[0], axis=1) <= a)
    e = body.edges(0)
    p = np.diff((e / a) ** dim)
    z = (res.counts[0] - n * p) / np.sqrt(n * p * (1 - p))
    assert np.max(np.abs(z)) < Z_MAX


def test_absorbing_walls_count_every_walker() -> None:
    box = Grid("cartesian", (0.0, 0.0), (1e-4, 1e-4), (4, 4))
    walls = {"x-": "absorbing", "x+": "reflecting", "y-": "reflecting", "y+": "absorbing"}
    n = 10_000
    res = rw.brownian_walk(rw.place_uniform(n, box, seed=3), D, 0.05, [0, 20, 100, 400],
                           domain=box, boundaries=walls, seed=21)
    absorbed = sum(res.absorbed.values())
    np.testing.assert_array_equal(res.inside + absorbed, n)
    assert res.absorbed["x+"][-1] == res.absorbed["y-"][-1] == 0
    assert res.absorbed["x-"][-1] > 1000 and res.absorbed["y+"][-1] > 1000
    gone = np.isnan(res.positions[..., 0])
    np.testing.assert_array_equal(gone.sum(axis=1), absorbed)
    assert np.all(np.diff(absorbed) >= 0)


def test_same_seed_is_bit_identical_and_another_seed_differs() -> None:
    ball = Grid("sphere", (0.0,), (1e-4,), (4,))
    start = rw.place_uniform(2000, ball, seed=7)
    np.testing.assert_array_equal(start, rw.place_uniform(2000, ball, seed=7))

    def run(seed: int) -> rw.BrownianWalkResult:
        return rw.brownian_walk(start, D, 0.05, [5, 30], domain=ball, boundaries="absorbing",
                                seed=seed)

    first, second, other = run(1), run(1), run(2)
    np.testing.assert_array_equal(first.positions, second.positions)  # NaN rows equal too
    np.testing.assert_array_equal(first.absorbed["r+"], second.absorbed["r+"])
    assert not np.array_equal(first.positions, other.positions, equal_nan=True)


def test_slab_with_absorbing_faces_releases_as_crank() -> None:
    length, n = 1e-4, 100_000
    slab = Grid("cartesian", (0.0,), (length,), (10,))
    tau_step = 1e-3  # D·dt/l²; the bridge test makes the plane exact, so this can be coarse
    taus = np.array([0.005, 0.02, 0.05, 0.1])
    res = rw.brownian_walk(rw.place_uniform(n, slab, seed=5), D, tau_step * length ** 2 / D,
                           np.round(taus / tau_step).astype(int), domain=slab,
                           boundaries="absorbing", seed=7, keep_positions=False)
    released = (res.absorbed["x-"] + res.absorbed["x+"]) / n
    m = slab_release(res.times, D, length)
    assert np.all(np.abs(released - m) < Z_MAX * np.sqrt(m * (1 - m) / n))


def test_sphere_with_absorbing_surface_releases_as_crank() -> None:
    a, n = 1e-4, 40_000
    ball = Grid("sphere", (0.0,), (a,), (10,))
    tau_step = 1e-3
    taus = np.array([0.002, 0.01, 0.05, 0.1])
    steps = np.round(taus / tau_step).astype(int)
    start = rw.place_uniform(n, ball, seed=5)
    res = rw.brownian_walk(start, D, tau_step * a ** 2 / D, steps, domain=ball,
                           boundaries="absorbing", seed=7, keep_positions=False)
    m = sphere_release(res.times, D, a)
    se = np.sqrt(m * (1 - m) / n)
    assert np.all(np.abs(res.absorbed["r+"] / n - m) < Z_MAX * se)
    # Without the bridge test, the end-point rule misses walkers that left and came back
    # within a step: at this dt it lags Crank far beyond sampling error (documented bias).
    lagging = rw.brownian_walk(start, D, tau_step * a ** 2 / D, steps, domain=ball,
                               boundaries="absorbing", bridge=False, seed=7,
                               keep_positions=False)
    assert np.all((lagging.absorbed["r+"] / n - m) < -Z_MAX * se)


def test_cylinder_with_absorbing_surface_releases_as_crank() -> None:
    # Crank eq. 5.23: M_t/M∞ = 1 − Σ 4/j_n² exp(−D j_n² t/a²), J0(j_n) = 0.
    a, n = 1e-4, 40_000
    disk = Grid("cylinder", (0.0,), (a,), (10,))
    tau_step = 1e-3
    taus = np.array([0.005, 0.02, 0.1])
    res = rw.brownian_walk(rw.place_uniform(n, disk, seed=2), D, tau_step * a ** 2 / D,
                           np.round(taus / tau_step).astype(int), domain=disk,
                           boundaries="absorbing", seed=3, keep_positions=False)
    j = jn_zeros(0, 2000)
    m = 1 - np.sum(4 / j[:, None] ** 2 * np.exp(-j[:, None] ** 2 * taus), axis=0)
    released = res.absorbed["r+"] / n
    assert np.all(np.abs(released - m) < Z_MAX * np.sqrt(m * (1 - m) / n))


# --------------------------------------------------------------------------- helpers

def test_placement_and_binning() -> None:
    shell = Grid("cylinder", (2e-5,), (1e-4,), (8,))
    pts = rw.place_uniform(5000, shell, seed=1)
    r = np.linalg.norm(pts, axis=1)
    assert pts.shape == (5000, 2) and r.min() >= 2e-5 and r.max() <= 1e-4
    counts = rw.bin_counts(pts, shell)
    assert counts.sum() == 5000
    p = shell.weights / shell.weights.sum()
    assert np.max(np.abs(counts - 5000 * p) / np.sqrt(5000 * p * (1 - p))) < Z_MAX

    g = rw.place_gaussian(50_000, [1.0, -2.0], [0.5, 2.0], seed=4)
    np.testing.assert_allclose(g.mean(axis=0), [1.0, -2.0], atol=Z_MAX * 2.0 / math.sqrt(5e4))
    np.testing.assert_allclose(g.std(axis=0), [0.5, 2.0], rtol=Z_MAX / math.sqrt(1e5))
    assert rw.place_at_point(3, [1.0, 2.0, 3.0]).shape == (3, 3)

    box = Grid("cartesian", (0.0, 0.0), (1.0, 2.0), (2, 4))
    pos = np.array([[0.1, 0.1], [1.0, 2.0], [np.nan, np.nan], [0.6, 1.9]])
    counts = rw.bin_counts(pos, box)
    assert counts.sum() == 3 and counts[0, 0] == 1 and counts[1, 3] == 2  # upper edge: last cell
    c = rw.concentration(counts, box, 0.25)
    assert np.sum(c * box.weights) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="outside the grid"):
        rw.bin_counts(np.array([[1.5, 0.1]]), box)
    assert rw.bin_counts(np.array([[1.5, 0.1]]), box, allow_outside=True).sum() == 0


def test_bad_inputs_are_refused() -> None:
    ball = Grid("sphere", (0.0,), (1e-4,), (4,))
    with pytest.raises(ValueError, match="3-D positions"):
        rw.brownian_walk(np.zeros((3, 2)), D, 1.0, [1], domain=ball, seed=0)
    with pytest.raises(ValueError, match="inside"):
        rw.brownian_walk(np.full((3, 3), 1e-4), D, 1.0, [1], domain=ball, seed=0)
    with pytest.raises(ValueError, match="inner radius"):
        rw.brownian_walk(np.zeros((3, 3)) + 5e-5, D, 1.0, [1],
                         domain=Grid("sphere", (1e-5,), (1e-4,), (4,)), seed=0)
    with pytest.raises(ValueError, match="each face"):
        rw.brownian_walk(np.zeros((3, 3)), D, 1.0, [1], domain=ball,
                         boundaries={"x-": "absorbing"}, seed=0)
    with pytest.raises(ValueError, match="increasing"):
        rw.brownian_walk(np.zeros((3, 3)), D, 1.0, [3, 1], domain=ball, seed=0)
    with pytest.raises(ValueError, match="seed"):
        rw.brownian_walk(np.zeros((3, 3)), D, 1.0, [1], seed=-1)


def test_the_step_bound_counts_the_absorbing_faces_a_cell_touches() -> None:
    """Move probabilities of the worst cell: 2·Σ r_k, plus r_k for each absorbing face it
    touches (one per axis, or both faces of a one-cell axis)."""
    h = 1e-5
    line = Grid("cartesian", (0.0,), (10 * h,), (10,))
    assert rw.largest_lattice_step(line, D) == pytest.approx(h * h / (2 * D))
    assert rw.largest_lattice_step(line, D, "absorbing") == pytest.approx(h * h / (3 * D))
    assert rw.largest_lattice_step(line, D, {"x-": "absorbing", "x+": "reflecting"}) == \
        pytest.approx(h * h / (3 * D))
    cell = Grid("cartesian", (0.0,), (h,), (1,))
    assert rw.largest_lattice_step(cell, D, "absorbing") == pytest.approx(h * h / (4 * D))
    plane = Grid("cartesian", (0.0, 0.0), (10 * h, 20 * h), (10, 10))  # Δy = 2Δx
    walls = {"x-": "absorbing", "x+": "absorbing", "y-": "reflecting", "y+": "reflecting"}
    assert rw.largest_lattice_step(plane, D, walls) == \
        pytest.approx(1.0 / (D * (3 / h ** 2 + 2 / (2 * h) ** 2)))
    start = np.zeros(10, dtype=np.int64)
    start[0] = 1000
    dt = rw.largest_lattice_step(line, D, "absorbing")
    with pytest.raises(ValueError, match="largest allowed dt"):
        rw.lattice_walk(line, start, D, 1.01 * dt, [0, 5], boundaries="absorbing", seed=1)
    res = rw.lattice_walk(line, start, D, dt, [0, 1], boundaries="absorbing", seed=1)
    # at the bound a walker in the edge cell leaves (2r = 2/3), or jumps inward (1/3)
    assert res.counts[1][0] == 0 and res.absorbed["x-"][1] + res.counts[1][1] == 1000
