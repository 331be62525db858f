"""The report's ledger plot draws changes since t0 when the content at t0 dwarfs the flows
(76 kJ of enthalpy above 0 K against 1.8 kJ of laser input), and absolute amounts otherwise."""

from __future__ import annotations

import numpy as np

from medtransport.report.figures import _as_changes


def test_enthalpy_above_zero_kelvin_is_drawn_as_changes() -> None:
    t = np.linspace(0.0, 1.0, 5)
    lines = {"stored": 75818.7 + 1400 * t, "ledger": 75818.7 + 1400 * t,
             "cumulative inflow": 1800 * t, "cumulative outflow": 400 * t}
    shown, base = _as_changes(lines)
    assert base == 75818.7
    (stored, ledger, inflow, outflow) = shown.values()
    np.testing.assert_allclose(stored, 1400 * t, atol=1e-9)
    np.testing.assert_allclose(ledger, inflow - outflow, atol=1e-9)


def test_a_dose_eliminated_over_the_run_is_drawn_as_it_is() -> None:
    t = np.linspace(0.0, 1.0, 5)
    lines = {"stored": 320 * (1 - t), "ledger": 320 * (1 - t), "cumulative outflow": 320 * t}
    shown, base = _as_changes(lines)
    assert base is None and shown is lines
