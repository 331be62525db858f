"""Audit messages a person can read: the check in words, a residual instead of two
equal-looking numbers, "a unit conversion slip?" only for a factor that smells of units, and an
rtol float64 cannot meet refused."""

from __future__ import annotations

from typing import Any

import pytest

from medtransport.audit.report import AuditResult
from medtransport.audit.wording import check_in_words, difference_in_words, number
from medtransport.errors import AuditFailure, ScenarioError
from medtransport.runner import run
from medtransport.scenario import load_scenario
from medtransport.testing import build_model
from medtransport_diffusion.model import FickDiffusion

SLAB: dict[str, Any] = {
    "name": "wording slab",
    "model": "diffusion.fick",
    "domain": {"shape": "box", "size": ["1 mm"], "cells": [20]},
    "parameters": {"diffusivity": "1e-9 m^2/s",
                   "initial": {"kind": "uniform", "amount": "1 umol/cm^2"}},
    "time": {"stop": "10 s", "step": "1 s"},
}


def _slipped(factor: float) -> type:
    class Slipped(FickDiffusion):
        """Places the initial amount ``factor`` times too large."""

        def _finite_volume(self, progress: Any) -> Any:
            import medtransport_diffusion.model as m

            original = m.place

            def place(*args: Any, **kwargs: Any) -> Any:
                return original(*args, **kwargs) * factor

            m.place = place
            try:
                return super()._finite_volume(progress)
            finally:
                m.place = original

    return Slipped


def _normalization_detail(factor: float) -> str:
    with pytest.raises(AuditFailure) as info:
        run(build_model(_slipped(factor), SLAB))
    failed = {r.name: r.detail for r in info.value.report.failures}
    return failed["normalization[solute]"]


def test_a_tiny_slip_is_stated_as_a_residual_not_as_a_unit_slip() -> None:
    detail = _normalization_detail(1.0 + 1e-6)
    assert "unit conversion" not in detail
    assert "differs by" in detail and "1e−06 relative" in detail
    assert "× the" in detail  # how many times the allowance


def test_a_factor_of_a_thousand_is_flagged_as_a_unit_slip() -> None:
    detail = _normalization_detail(1000.0)
    assert "ratio 1000: a unit conversion slip?" in detail


def test_checks_in_words_never_show_a_bare_negative_tolerance_nor_minus_zero() -> None:
    low = AuditResult("nonnegativity[amount]", True, -0.0, -4.21e-07, "mg")
    assert check_in_words(low) == "minimum 0 mg ≥ −4.21e−07 mg (round-off allowance)"
    mb = AuditResult("mass_balance[drug]", False, 2e-6, 1.7e-6, "mg")
    assert check_in_words(mb) == "max |stored − ledger| 2e−06 mg ≤ 1.7e−06 mg (tolerance)"
    count = AuditResult("finiteness", True, 0.0, 0.0, "values")
    assert check_in_words(count) == "0 non-finite values, none allowed"
    plugin = AuditResult("b_value", True, 1e-12, 1e-9, "")
    assert check_in_words(plugin) == "measured 1e−12 ≤ 1e−09 (tolerance)"
    assert number(-0.0) == "0" and number(-1.5) == "−1.5"


def test_difference_in_words() -> None:
    text = difference_in_words(1739.1600017, 1739.16, "mg", 1e-6)
    assert text.startswith("differs by 1.7e−06 mg") and "1.7× the 1e−06 mg allowed" in text


def test_an_rtol_below_float64_resolution_is_refused_with_the_smallest_meaningful_one() -> None:
    with pytest.raises(ScenarioError, match=r"audit\.rtol: 1e-17 is below .* 2\.22e-16"):
        load_scenario({**SLAB, "audit": {"rtol": 1e-17}})
    assert load_scenario({**SLAB, "audit": {"rtol": 2.3e-16}}).audit.rtol == 2.3e-16


def test_a_check_on_a_quantity_the_scenario_is_silent_on_reads_in_a_readable_unit() -> None:
    """The implant's concentration is never written in its scenario and the model declares no
    unit for it: the nonnegativity check reads 1.21 µg/mL, not 0.00121 kg/m³; a dimension the
    model declares elsewhere takes that unit (a mass in mg)."""
    from medtransport.display import DisplayUnits

    floor = AuditResult("nonnegativity[concentration]", True, 0.00121, -1.41e-6, "kg/m**3",
                        "")
    text = check_in_words(floor, DisplayUnits(declared={}, written={}))
    assert text == "minimum 1.21 µg/mL ≥ −0.00141 µg/mL (round-off allowance)"
    books = AuditResult("record_books[drug]", True, 0.0, 3.2e-13, "kg", "")
    assert check_in_words(books, DisplayUnits(declared={"amount": "mg"}, written={})) == \
        "measured 0 mg ≤ 3.2e−07 mg (tolerance)"
