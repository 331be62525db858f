"""The compiled propagation loop: the generated kernels are in sync with their generator and
do what x ← Φ·x + c does, for every state count."""

from __future__ import annotations

import numpy as np
import pytest

from medtransport.numerics import propagate


def test_generated_kernels_are_in_sync() -> None:
    assert propagate.main([]) == 0, "run `python -m medtransport.numerics.propagate --write`"


@pytest.mark.parametrize("n", [1, 2, 3, 5, propagate.MAX_UNROLLED, propagate.MAX_UNROLLED + 2])
def test_kernel_matches_repeated_matrix_products(n: int) -> None:
    rng = np.random.default_rng(n)
    patients, steps = 7, 40
    phi = rng.uniform(-0.4, 0.4, (patients, n, n)) / n + 0.5 * np.eye(n)
    c = rng.normal(size=(patients, n))
    x0 = rng.normal(size=(patients, n))
    out = np.full((patients, steps + 3, n), np.nan)
    state = x0.copy()
    propagate.kernel(n)(phi, c, state, out, 2, steps)
    expected = x0.copy()
    for k in range(steps):
        expected = np.einsum("pij,pj->pi", phi, expected) + c
        np.testing.assert_allclose(out[:, 2 + k], expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(state, expected, rtol=1e-12, atol=1e-12)
    # times outside the run are not touched
    assert np.isnan(out[:, :2]).all() and np.isnan(out[:, 2 + steps:]).all()


@pytest.mark.parametrize("n", [2, 4])
def test_threaded_kernel_gives_the_same_bits(n: int) -> None:
    rng = np.random.default_rng(10 + n)
    patients, steps = 37, 25
    phi = rng.uniform(0.0, 1.0 / n, (patients, n, n))
    c = rng.normal(size=(patients, n))
    x0 = rng.normal(size=(patients, n))
    serial, threaded = np.zeros((patients, steps, n)), np.zeros((patients, steps, n))
    propagate.kernel(n)(phi, c, x0.copy(), serial, 0, steps)
    propagate.kernel(n, True)(phi, c, x0.copy(), threaded, 0, steps)
    np.testing.assert_array_equal(serial, threaded)


def test_threads_only_for_enough_work_and_from_the_main_thread() -> None:
    import threading

    import numba

    from medtransport.numerics import threads

    big = propagate.PARALLEL_WORK
    assert not propagate.use_threads(big - 1)
    with threads.requested_for(2):  # not backed off by whatever else runs on the machine
        assert propagate.use_threads(big) == (numba.get_num_threads() > 1)
    with threads.requested_for(1):
        assert not propagate.use_threads(10 * big)
    seen: list[bool] = []
    worker = threading.Thread(target=lambda: seen.append(propagate.use_threads(10 * big)))
    worker.start()
    worker.join()
    assert seen == [False]


def test_a_stale_kernel_file_is_detected(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    stale = tmp_path / "_propagate_kernels.py"
    stale.write_text(propagate.kernel_source().replace("c0 + f00", "f00"))
    monkeypatch.setattr(propagate, "_GENERATED", stale)
    assert propagate.main([]) == 1


@pytest.mark.parametrize("n", [1, 3, propagate.MAX_UNROLLED, propagate.MAX_UNROLLED + 2])
def test_interpreted_loop_gives_the_compiled_kernels_bits(n: int) -> None:
    # the small-run path must not change a single result relative to the compiled one
    rng = np.random.default_rng(20 + n)
    patients, steps = 3, 30
    phi = rng.uniform(-0.4, 0.4, (patients, n, n)) / n + 0.5 * np.eye(n)
    c = rng.normal(size=(patients, n))
    x0 = rng.normal(size=(patients, n))
    compiled, python = np.full((2, patients, steps + 2, n), np.nan)
    s1, s2 = x0.copy(), x0.copy()
    propagate.kernel(n)(phi, c, s1, compiled, 1, steps)
    propagate.interpreted(phi, c, s2, python, 1, steps)
    np.testing.assert_array_equal(compiled, python)
    np.testing.assert_array_equal(s1, s2)


def test_small_runs_are_interpreted_and_large_ones_compiled() -> None:
    assert propagate.kernel_for(3, propagate.INTERPRETED_WORK) is propagate.interpreted
    assert propagate.kernel_for(3, propagate.INTERPRETED_WORK + 1) is propagate.kernel(3)
