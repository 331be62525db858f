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
    out = np.full((steps + 3, patients, n), np.nan)
    state = x0.copy()
    propagate.kernel(n)(phi, c, state, out, 2, steps)
    expected = x0.copy()
    for k in range(steps):
        expected = np.einsum("pij,pj->pi", phi, expected) + c
        np.testing.assert_allclose(out[2 + k], expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(state, expected, rtol=1e-12, atol=1e-12)
    # rows outside the run are not touched
    assert np.isnan(out[:2]).all() and np.isnan(out[2 + steps:]).all()


def test_a_stale_kernel_file_is_detected(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    stale = tmp_path / "_propagate_kernels.py"
    stale.write_text(propagate.kernel_source().replace("c0 + f00", "f00"))
    monkeypatch.setattr(propagate, "_GENERATED", stale)
    assert propagate.main([]) == 1
