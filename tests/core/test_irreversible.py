"""The one-way-flow audit: a cumulative term that goes down is caught, named and located."""

from __future__ import annotations

import numpy as np

from medtransport.audit.irreversible import audit_irreversible

TIMES = np.array([0.0, 10.0, 20.0, 30.0])


def test_growing_and_flat_cumulative_terms_pass() -> None:
    r = audit_irreversible(TIMES, {"wall": np.array([0.0, 0.1, 0.1, 0.3]),
                                   "batch": np.array([[0.0, 0.0], [1.0, 0.5], [2.0, 0.5],
                                                      [2.0, 0.7]])}, "mg")
    assert r.passed and r.measured == 0.0


def test_a_current_amount_booked_as_a_flow_is_caught_at_its_first_fall() -> None:
    # the mutant: a fraction *now* beyond a grid, which rises then falls
    r = audit_irreversible(TIMES, {"wall": np.array([0.0, 0.1, 0.2, 0.3]),
                                   "beyond": np.array([0.0, 0.04, 0.01, 0.02])}, "")
    assert not r.passed
    assert np.isclose(r.measured, 0.03)
    assert r.where == {"time_s": 20.0, "route": "beyond"}
    assert "'beyond'" in r.detail and "10 s" in r.detail


def test_a_fall_within_the_tolerance_passes_and_nan_fails() -> None:
    assert audit_irreversible(TIMES, {"x": np.array([0.0, 1.0, 1.0 - 1e-15, 2.0])}, "mg",
                              tol=1e-12).passed
    assert not audit_irreversible(TIMES, {"x": np.array([0.0, np.nan, 1.0, 2.0])}, "mg").passed
