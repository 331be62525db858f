"""The default plot draws its profiles where the stored amount changes (issue 21: an implant
that releases its drug in the first day was drawn at 0, 60, 120, 180 and 240 h: four flat
lines), and evenly over the run when the amount is conserved."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from medtransport.plotting import RELEASE_FRACTIONS, profile_times


def _ledger(stored: np.ndarray, t: np.ndarray) -> xr.Dataset:
    return xr.Dataset({"drug_stored": ("time", stored, {"units": "mg"})},
                      coords={"time": ("time", t, {"units": "s"})})


def test_a_release_is_drawn_at_fractions_of_its_change() -> None:
    # first-order release, τ = 10 h, outputs every 0.1 h over 10 days: the fraction f is
    # released at t_f = −τ·ln(1 − f), so the profiles fall at 0, 2.88, 6.93, 13.9 and 30.0 h
    t = np.arange(0.0, 240.0 + 1e-9, 0.1)
    ds = _ledger(2.0 * np.exp(-t / 10.0), t * 3600.0)
    picked = t[profile_times(ds, "drug")]
    expected = [-10.0 * np.log(1.0 - f) for f in RELEASE_FRACTIONS]
    # each is the first output at or after the exact time: within one output step
    assert picked == pytest.approx(expected, abs=0.1 + 1e-9)
    assert all(p >= e - 1e-9 for p, e in zip(picked, expected, strict=True))
    assert picked[-1] < 31.0  # not the ten days of flat lines the even spacing drew


def test_a_conserved_amount_is_drawn_evenly_over_the_run() -> None:
    t = np.linspace(0.0, 1800.0, 61)
    ds = _ledger(np.full(t.size, 1.0) - 1e-3 * t / 1800.0, t)  # 0.1 % lost: a spreading
    assert list(profile_times(ds, "drug")) == [0, 15, 30, 45, 60]
    assert list(profile_times(ds.drop_vars("drug_stored"), "drug")) == [0, 15, 30, 45, 60]
