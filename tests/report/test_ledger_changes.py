"""The report's ledger plot draws changes since t0 when the content at t0 dwarfs the flows
(76 kJ of enthalpy above 0 K against 1.8 kJ of laser input), and absolute amounts otherwise."""

from __future__ import annotations

from typing import Any

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


def test_a_dimensionless_species_is_labelled_without_empty_brackets(monkeypatch: Any) -> None:
    # the SDE models' books are of probability: "residual []" and "content at t0 1 )" read as
    # a unit that was lost
    import xarray as xr

    from medtransport.audit.report import AuditReport
    from medtransport.report import figures

    drawn: list[Any] = []
    monkeypatch.setattr(figures, "_png", lambda fig: drawn.append(fig) or "")
    t = np.linspace(0.0, 3600.0, 7)
    attrs = {"units": "dimensionless"}
    ds = xr.Dataset({"probability_stored": ("time", 1.0 - 1e-4 * t / 3600, attrs),
                     "probability_expected": ("time", 1.0 - 1e-4 * t / 3600, attrs),
                     "probability_outflow": ("time", 1e-4 * t / 3600, attrs),
                     "probability_residual": ("time", np.zeros_like(t), attrs)},
                    coords={"time": ("time", t, {"units": "s"})})
    from medtransport.display import DisplayUnits

    plot = figures.ledger_plot(ds, "probability", AuditReport([]),
                               display=DisplayUnits(declared={}, written={}))
    (fig,) = drawn
    texts = [plot.alt] + [text for ax in fig.get_axes()
                          for text in (ax.get_ylabel(), ax.get_title())]
    assert all("[]" not in text and " )" not in text and " in :" not in text
               and "dimensionless" not in text for text in texts), texts
    assert any("change in probability since t0" in text for text in texts) or \
        any(text == "probability" for text in texts)
