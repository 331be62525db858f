"""Deliberately broken versions of oxygen.krogh that the audits must refuse — the pattern a
plugin author follows to show the books can fail (the fixtures come from medtransport's pytest
plugin)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.mark.medtransport_model("oxygen.krogh")
def test_forgetting_the_consumption_in_the_ledger_is_caught(
        model_class: Any, example_scenario: dict[str, Any], audit_failures: Any) -> None:
    class ForgetsConsumption(model_class):  # type: ignore[misc, valid-type]
        def simulate(self, progress: Any = None) -> Any:
            trajectory = super().simulate(progress)
            trajectory.ledgers["oxygen"].sink.clear()
            return trajectory

    assert audit_failures(ForgetsConsumption, example_scenario) == ["mass_balance[oxygen]"]


@pytest.mark.medtransport_model("oxygen.krogh")
def test_a_solubility_labelled_in_the_wrong_unit_is_caught(
        model_class: Any, example_scenario: dict[str, Any], audit_failures: Any) -> None:
    # Values per mmHg labelled per kPa: the framework's recount of the dissolved oxygen is
    # 7.5 times the declared amount.
    class KilopascalSlip(model_class):  # type: ignore[misc, valid-type]
        def simulate(self, progress: Any = None) -> Any:
            trajectory = super().simulate(progress)
            trajectory.states["solubility"].attrs["units"] = "mol/m^3/kPa"
            return trajectory

    failed = audit_failures(KilopascalSlip, example_scenario)
    assert "normalization[oxygen]" in failed and "mass_balance[oxygen]" in failed
