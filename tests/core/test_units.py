"""The shared registry and the pydantic quantity type."""

from __future__ import annotations

import math

import pint
import pytest
from pydantic import BaseModel, ValidationError

from medtransport.errors import UnitError
from medtransport.units import Q_, Qty, format_quantity, parse_quantity, to_canonical, ureg


class Dose(BaseModel):
    amount: Qty("mol", "g", gt=0)
    concentration: Qty("mg/L") | None = None
    temperature: Qty("K") | None = None


@pytest.mark.parametrize("value", ["5 mg/L", {"magnitude": 5, "units": "mg/L"},
                                   Q_(5, "mg/L"), Q_(5e-3, "g/L"), "5e0 microgram/mL"])
def test_quantity_accepts_every_input_form_and_converts(value: object) -> None:
    d = Dose(amount="1 mmol", concentration=value)
    assert d.concentration is not None
    assert str(d.concentration.units) == "milligram / liter"
    assert d.concentration.magnitude == pytest.approx(5.0, rel=1e-12)


def test_first_matching_dimension_wins() -> None:
    assert Dose(amount="2 mg").amount.units == ureg.gram
    assert Dose(amount="2 umol").amount.m_as("mol") == pytest.approx(2e-6)


@pytest.mark.parametrize(("value", "fragment"), [
    ("5 mL", "[substance]"),
    (5, "bare number"),
    ("5", "dimensionless"),
    ("-1 mg", "> 0"),
    ("nan mg", "finite"),
    ("five mg", "number followed by a unit"),
    ("5 blorbs", "unknown or malformed unit"),
    ({"magnitude": 1}, "exactly the keys"),
    (True, "boolean"),
])
def test_bad_quantities_name_the_field_and_what_was_expected(value: object,
                                                              fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        Dose(amount=value)
    err = info.value.errors()[0]
    assert err["loc"] == ("amount",)
    assert fragment in err["msg"]


def test_offset_temperature_is_parsed_but_never_multiplied() -> None:
    d = Dose(amount="1 mol", temperature="37 degC")
    assert d.temperature is not None
    assert d.temperature.m_as("K") == pytest.approx(310.15)
    body = parse_quantity("37 degC")
    with pytest.raises(pint.OffsetUnitCalculusError):
        _ = body * 2


def test_format_round_trips() -> None:
    for q in (Q_(4.5e-10, "m^2/s"), Q_(37.0, "degC"), Q_(1.0, "umol/cm^2"), Q_(3.0, "")):
        back = parse_quantity(format_quantity(q))
        assert back.units == q.units and back.magnitude == q.magnitude


def test_json_schema_describes_both_input_forms() -> None:
    schema = Dose.model_json_schema()["properties"]["amount"]
    kinds = {alt["type"] for alt in schema["anyOf"]}
    assert kinds == {"string", "object"}
    assert schema["x-units"] == ["mol", "g"]


def test_to_canonical_reports_expected_dimension() -> None:
    with pytest.raises(UnitError, match=r"diffusivity: expected \[length\] \*\* 2 / \[time\]"):
        to_canonical("5 mL", "m^2/s", field="diffusivity")
    assert math.isclose(to_canonical("1 cm^2/s", "m^2/s").magnitude, 1e-4)
