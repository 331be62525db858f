"""The compiled FTCS kernel against a plain numpy stencil, across thread counts, and LLVM's
vectorisation of its row loop."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from medtransport.numerics.ftcs import _steps, ftcs_steps


def numpy_ftcs(u0: np.ndarray, n_steps: int, coef: np.ndarray, periodic: tuple[int, ...],
               ka: np.ndarray, kb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reference: u ← u + Σ_a r_a·[(u₊ − u) + (u₋ − u)] − Σ_faces (k_α·u − k_β) on the
    boundary layer of each face, whole arrays at a time. A closed face's outside neighbour
    is the cell itself, a periodic axis wraps. Also Σ over steps of each face's layer sum
    (for faces with k_α ≠ 0), as the kernel reports it."""
    u = u0.astype(float).copy()
    sums = np.zeros(6)
    for _ in range(n_steps):
        new = u.copy()
        for axis in range(3):
            if periodic[axis]:
                up, um = np.roll(u, -1, axis), np.roll(u, 1, axis)
            else:
                idx = np.arange(u.shape[axis])
                up = np.take(u, np.minimum(idx + 1, u.shape[axis] - 1), axis)
                um = np.take(u, np.maximum(idx - 1, 0), axis)
            new += coef[axis] * ((up - u) + (um - u))
        for face in range(6):
            axis, last = divmod(face, 2)
            layer = [slice(None)] * 3
            layer[axis] = slice(-1, None) if last else slice(0, 1)
            layer_t = tuple(layer)
            if ka[face] != 0.0:
                sums[face] += u[layer_t].sum()
            new[layer_t] -= ka[face] * u[layer_t] - kb[face]
        u = new
    return u, sums


SHAPES = [(9, 10, 11), (12, 10, 9), (1, 40, 33), (1, 1, 50), (3, 1, 2), (24, 20, 17)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("periodic", [(0, 0, 0), (0, 1, 1), (1, 0, 1)])
@pytest.mark.parametrize("fuse", [False, True])
@pytest.mark.parametrize("terms", ["every face", "not z", "none"])
def test_kernel_equals_a_numpy_stencil_on_random_fields(shape: tuple[int, int, int],
                                                        periodic: tuple[int, int, int],
                                                        fuse: bool, terms: str) -> None:
    rng = np.random.default_rng(sum(shape) + 7 * sum(periodic) + fuse)
    u0 = rng.uniform(-1, 1, shape)
    coef = np.array([0.05, 0.1, 0.12]) * np.array([s > 1 for s in shape])
    closed = 1 - np.repeat(np.array(periodic), 2)
    ka = rng.uniform(0, 0.05, 6) * closed  # boundary terms on every face that is not periodic
    kb = rng.uniform(-0.05, 0.05, 6) * closed
    # closed walls without flux: on z (and on y) the plane path has loops of its own
    ka[{"every face": 6, "not z": 4, "none": 0}[terms]:] = 0.0
    kb[{"every face": 6, "not z": 4, "none": 0}[terms]:] = 0.0
    n = 7
    ref, ref_sums = numpy_ftcs(u0, n, coef, periodic, ka, kb)
    for blocks in (1, 2, 3):
        u, v, sums = u0.copy(), np.empty_like(u0), np.zeros(6)
        in_v = ftcs_steps(u, v, n, coef, np.array(periodic), ka, kb, sums, fuse, blocks)
        out = v if in_v else u
        np.testing.assert_allclose(out, ref, rtol=0, atol=1e-14)
        np.testing.assert_allclose(sums, ref_sums, rtol=1e-14, atol=1e-14)


def test_a_wrong_boundary_term_is_caught_by_the_reference() -> None:
    # The comparison above can fail: a kernel given the x- term twice differs from it.
    shape = (9, 10, 11)
    rng = np.random.default_rng(3)
    u0 = rng.uniform(0, 1, shape)
    coef = np.array([0.05, 0.1, 0.12])
    ka = np.array([0.03, 0.0, 0.02, 0.01, 0.04, 0.05])
    kb = np.array([0.01, 0.2, 0.0, 0.03, 0.02, 0.01])
    ref, _ = numpy_ftcs(u0, 3, coef, (0, 0, 0), ka, kb)
    wrong = ka.copy()
    wrong[0] *= 2
    u, v, sums = u0.copy(), np.empty_like(u0), np.zeros(6)
    in_v = ftcs_steps(u, v, 3, coef, np.zeros(3, dtype=np.int64), wrong, kb, sums, True, 1)
    assert np.max(np.abs((v if in_v else u) - ref)) > 1e-4


@pytest.mark.parametrize("fuse", [False, True])
def test_result_is_bitwise_independent_of_the_thread_count(fuse: bool) -> None:
    import numba

    shape = (40, 36, 33)
    rng = np.random.default_rng(11)
    u0 = rng.uniform(0, 1, shape)
    coef = np.array([0.06, 0.08, 0.1])
    ka = np.array([0.03, 0.0, 0.02, 0.01, 0.04, 0.05])
    kb = np.array([0.01, 0.2, 0.0, 0.03, 0.02, 0.01])
    results = []
    before = numba.get_num_threads()
    try:
        for threads in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            numba.set_num_threads(threads)
            for blocks in (1, threads, 5):
                u, v, sums = u0.copy(), np.empty_like(u0), np.zeros(6)
                in_v = ftcs_steps(u, v, 9, coef, np.zeros(3, dtype=np.int64), ka, kb, sums,
                                  fuse, blocks)
                results.append(((v if in_v else u).copy(), sums))
    finally:
        numba.set_num_threads(before)
    for state, sums in results[1:]:
        assert state.tobytes() == results[0][0].tobytes()
        assert sums.tobytes() == results[0][1].tobytes()


@pytest.mark.parametrize("shape", [(9, 10, 11), (24, 20, 17), (6, 3, 3), (5, 1, 4), (4, 7, 1)])
@pytest.mark.parametrize("periodic", [(0, 0, 0), (0, 1, 1), (1, 1, 0)])
@pytest.mark.parametrize("terms", ["every face", "not z", "none"])
def test_plane_path_gives_the_bits_of_the_row_path(shape: tuple[int, int, int],
                                                   periodic: tuple[int, int, int],
                                                   terms: str) -> None:
    # Whole planes several steps per pass (flat interior loop, end cells written again or,
    # between closed z walls without terms, chosen in the loop, and then the rows on closed y
    # walls without terms in loops of their own; rings of planes, y tiles) do
    # every cell's arithmetic in the row kernel's order: the same bits, for any depth, tile
    # and block count, boundary sums included.
    rng = np.random.default_rng(sum(shape) + sum(periodic))
    u0 = rng.uniform(-1, 1, shape)
    coef = np.array([0.05, 0.1, 0.12]) * np.array([s > 1 for s in shape])
    closed = 1 - np.repeat(np.array(periodic), 2)
    ka = rng.uniform(0, 0.05, 6) * closed
    kb = rng.uniform(-0.05, 0.05, 6) * closed
    ka[{"every face": 6, "not z": 4, "none": 0}[terms]:] = 0.0
    kb[{"every face": 6, "not z": 4, "none": 0}[terms]:] = 0.0
    per = np.array(periodic)

    def run(planes: bool, fuse: bool, blocks: int, depth: int,
            tile: int = 1 << 30) -> tuple[bytes, bytes]:
        u, v, sums = u0.copy(), np.empty_like(u0), np.zeros(6)
        in_v = _steps(u, v, 11, coef, per, ka, kb, sums, fuse, blocks, planes, depth, tile)
        return (v if in_v else u).tobytes(), sums.tobytes()

    rows = run(False, False, 1, 1)
    assert run(False, True, 2, 1) == rows
    for depth in (1, 2, 3, 5):
        for blocks in (1, 2, 3):
            for tile in (1, 3, 1 << 30):  # rows per y tile (all rows: one tile)
                assert run(True, True, blocks, depth, tile) == rows, (depth, blocks, tile)



def _weights_form_step(u: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """A mutant of the stencil, algebraically the same: u·(1 − 2Σr) + Σ r_a·(u₊ + u₋), closed
    walls (a wall's neighbour is the cell itself)."""
    new = u * (1.0 - 2.0 * coef.sum())
    for axis in range(3):
        idx = np.arange(u.shape[axis])
        up = np.take(u, np.minimum(idx + 1, u.shape[axis] - 1), axis)
        um = np.take(u, np.maximum(idx - 1, 0), axis)
        new = new + coef[axis] * (up + um)
    return new


@pytest.mark.parametrize("shape", [(9, 10, 11), (24, 20, 17), (1, 40, 33), (1, 1, 50)])
@pytest.mark.parametrize("periodic", [(0, 0, 0), (0, 1, 1), (1, 0, 1)])
def test_a_uniform_field_stays_exactly_uniform_on_every_path(
        shape: tuple[int, int, int], periodic: tuple[int, int, int]) -> None:
    # Each axis adds r·((u₊ + u₋) − (u + u)): for a uniform field u₊ + u₋ and u + u are the
    # same sum, so the update is exactly 0 whatever the path (rows, planes, depth, tile,
    # blocks, SIMD or scalar cells, FMA or not). Closed walls without flux and periodic axes
    # keep it so for any number of steps.
    value = 1.0 / 3.0  # not a short binary fraction: round-off would show
    u0 = np.full(shape, value)
    coef = np.array([0.05, 0.1, 0.12]) * np.array([s > 1 for s in shape])
    zeros = np.zeros(6)
    per = np.array(periodic)

    def run(planes: bool, fuse: bool, blocks: int, depth: int, tile: int) -> np.ndarray:
        u, v, sums = u0.copy(), np.empty_like(u0), np.zeros(6)
        in_v = _steps(u, v, 60, coef, per, zeros, zeros, sums, fuse, blocks, planes, depth,
                      tile)
        return v if in_v else u

    states = [run(False, fuse, blocks, 1, 1 << 30) for fuse in (False, True)
              for blocks in (1, 2)]
    if shape[0] >= 3:
        states += [run(True, True, blocks, depth, tile) for depth in (1, 2, 4)
                   for blocks in (1, 2) for tile in (3, 1 << 30)]
    for state in states:
        assert state.tobytes() == u0.tobytes()


def test_the_uniform_field_check_catches_a_form_that_rounds() -> None:
    # The same stencil written with the weights summed first does not keep 1/3 exactly.
    u = np.full((9, 10, 11), 1.0 / 3.0)
    coef = np.array([0.05, 0.1, 0.12])
    for _ in range(60):
        u = _weights_form_step(u, coef)
    assert u.tobytes() != np.full_like(u, 1.0 / 3.0).tobytes()


_REMARKS = """
import llvmlite.binding as llvm
llvm.set_option("", "--pass-remarks=loop-vectorize")
import numba, numpy as np
from medtransport.numerics import ftcs
# a fresh (uncached) compile of the row sweep, so that LLVM runs and reports
sweep = numba.njit(boundscheck=False, fastmath=ftcs._JIT["fastmath"])(ftcs._sweep.py_func)
a = np.zeros((16, 8))
sweep(a.copy(), a, np.zeros((16, 3)), 0, 16, 0, 16, 4, 4, False, False, False, np.zeros(3),
      np.zeros(6), np.zeros(6))
"""


@pytest.mark.slow
def test_llvm_vectorises_both_row_loops() -> None:
    # The interior of a row (with and without a boundary face's terms) must be a SIMD loop;
    # a change that makes it scalar again halves the kernel's speed without failing any
    # numerical test.
    out = subprocess.run([sys.executable, "-c", _REMARKS], capture_output=True, text=True,
                         check=True)
    vectorised = [ln for ln in out.stderr.splitlines() if "vectorized loop" in ln]
    assert len(vectorised) >= 2, out.stderr[-2000:]


_PLANE_REMARKS = """
import llvmlite.binding as llvm
llvm.set_option("", "--pass-remarks=loop-vectorize")
import numba, numpy as np
from medtransport.numerics import ftcs
plane = numba.njit(boundscheck=False, fastmath=ftcs._JIT["fastmath"])(ftcs._plane.py_func)
a = np.zeros((3, 72))
plane(a.copy(), 0, a, 0, 1, 2, np.zeros((24, 3)), 1, 0, 8, 0, 8, 3, 8, 8, False, False,
      np.zeros(3), np.zeros(6), np.zeros(6), np.zeros(72, dtype=np.uint8))
asm = "\\n".join(plane.inspect_asm().values())
print("gathers:", asm.count("gather"), "scatters:", asm.count("scatter"))
"""


@pytest.mark.slow
def test_llvm_vectorises_the_plane_loops_without_gathers() -> None:
    # The plane path's two flat loops (end cells of the rows chosen in the loop or not), its
    # loops for the rows on closed y walls and its two row loops must be SIMD loops of plain (not
    # gathered) loads: an index LLVM cannot prove non-negative keeps numba's wrap-around test
    # and turns the loads into gathers (measured: half the speed), which no numerical test
    # would notice.
    out = subprocess.run([sys.executable, "-c", _PLANE_REMARKS], capture_output=True,
                         text=True, check=True)
    vectorised = [ln for ln in out.stderr.splitlines() if "vectorized loop" in ln]
    assert len(vectorised) >= 6, out.stderr[-2000:]
    assert "gathers: 0 scatters: 0" in out.stdout, out.stdout
