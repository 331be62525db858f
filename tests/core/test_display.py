"""Units a person reads: the scenario's own units first, then the model's customary ones,
then a readable SI prefix; conversions checked against hand-computed values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medtransport.audit.report import AuditResult
from medtransport.audit.wording import amount, check_in_words
from medtransport.display import DisplayUnits, convert, pretty, readable_prefix, written_units
from medtransport.scenario import load_scenario

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "scenarios"


def test_a_milligram_dose_is_never_shown_in_kilograms() -> None:
    assert readable_prefix("kg", [2e-6]) == "mg"
    assert amount(2e-6, "kg") == "2 mg"
    assert readable_prefix("kg/m**3", [0.0153]) == "µg/mL"  # 15.3 µg/mL
    assert readable_prefix("m", [1.5e-3]) == "mm"
    assert readable_prefix("J", [75818.7]) == "J"  # no ladder: as it is


def test_the_scenario_units_come_first_then_the_model_declaration() -> None:
    sc = load_scenario(EXAMPLES / "implant_sphere_release.yaml")  # amount: 2 mg
    assert written_units(sc)["[mass]"] == "mg"
    display = DisplayUnits(declared={"temperature": "degC"}, written=written_units(sc))
    assert display.unit("solute", "kg") == "mg"
    assert display.unit("temperature", "K") == "degC"
    assert display.unit("time", "s") == "s"  # time axes are the plots' own choice
    values, unit = display.show("temperature", np.array([310.15, 373.15]), "K")
    assert unit == "degC" and values == pytest.approx([37.0, 100.0])
    # a difference of temperatures is not converted as a level
    assert display.difference("temperature", 1.0, "K") == (1.0, "K")


def test_a_patients_weight_is_not_taken_for_the_drugs_unit() -> None:
    sc = load_scenario(EXAMPLES / "theophylline_oral.yaml")  # weight 70 kg, dose 320 mg
    assert written_units(sc)["[mass]"] == "mg"


def test_the_audit_table_shows_the_check_in_the_scenarios_unit() -> None:
    display = DisplayUnits(written={"[mass]": "mg"})
    result = AuditResult("mass_balance[solute]", True, 4.24e-22, 2e-14, "kg")
    assert check_in_words(result, display) == \
        "max |stored − ledger| 4.24e−16 mg ≤ 2e−08 mg (tolerance)"


def test_labels() -> None:
    assert pretty("kg/m**3") == "kg/m³" and pretty("degC") == "°C" and pretty("um") == "µm"
    # pint writes the litre "l"; the label writes L, and leaves words with an l alone
    assert pretty("mg/l") == "mg/L" and pretty("l/mg") == "L/mg" and pretty("1/(ml)") == "1/(mL)"
    assert pretty("cell") == "cell" and pretty("mmol/l") == "mmol/L"
    # an AUC's unit as pharmacokinetics writes it, not pint's mg/L*h (which reads as mg/(L·h))
    assert pretty("mg/L*h") == "mg·h/L" and pretty("mg*h/L") == "mg·h/L"
    assert pretty("mol/m**3*s") == "mol·s/m³" and pretty("m**4") == "m^4"
    assert convert(1.0, "um^2/ms", "m^2/s") == pytest.approx(1e-9)


def test_explain_speaks_in_readable_units() -> None:
    from medtransport.display import duration, length
    from medtransport.explain import explain
    from medtransport.runner import prepare

    assert duration(864000) == "10 day" and duration(0.25) == "250 ms" and duration(0) == "0 s"
    assert length(0.0015) == "1.5 mm" and length(1e-6) == "1 µm"
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(explain(prepare(str(EXAMPLES / "implant_sphere_release.yaml"))))
    text = console.export_text()
    assert "radius 1.5 mm, 60 shells of 25 µm" in text
    assert "0 s to 10 day, 240 steps of 1 h" in text


def test_a_reference_weight_is_not_taken_for_the_drugs_unit() -> None:
    import yaml

    # theoph.yaml: allometric reference_weight 70 kg in parameters, doses in mg/kg, DV mg/L
    data = yaml.safe_load((EXAMPLES.parent / "data" / "theoph.yaml").read_text())
    written = written_units(data)
    assert "[mass]" not in written and written["[length] ** 3"] == "L"
