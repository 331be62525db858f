"""Units: the one pint registry of the process, and pydantic quantity types.

Every number that crosses an API of medtransport carries its unit. Quantities are parsed at the
edges (scenario files, parameters) and converted once to the model's canonical unit; kernels then
work on plain float64 magnitudes, because pint costs ~20x on small arrays and ~900x on scalars in
a hot loop (REFERENCES §6).

Offset temperatures are never converted silently: the registry is built with
``autoconvert_offset_to_baseunit=False``, so ``37 degC * 2`` raises instead of giving 74 degC.

A field of a pydantic model declares its quantity type with :func:`Qty`::

    class Params(BaseModel):
        diffusivity: Qty("m^2/s", gt=0)
        dose: Qty("mol", "g")          # amount of substance or mass: first unit that fits wins

It accepts ``"5 mg/L"``, ``{"magnitude": 5, "units": "mg/L"}`` or a ``pint.Quantity``, checks the
dimension, converts to the canonical unit and emits a JSON Schema for both input forms.
"""

from __future__ import annotations

import math
import re
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import pint
from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from medtransport.errors import UnitError

__all__ = [
    "Q_",
    "Qty",
    "QuantitySpec",
    "dimension_of",
    "format_quantity",
    "parse_quantity",
    "to_canonical",
    "ureg",
]



def _registry() -> pint.UnitRegistry:
    """The registry, its parsed definitions cached on disk by pint (``:auto:``: the user's cache
    directory), which saves about a tenth of a second per process; a cache that cannot be read
    or written (read-only home, a file being written by a concurrent process) falls back to
    parsing the definitions."""
    # force_ndarray_like: pint-xarray needs it to quantify datasets with this registry.
    options = {"autoconvert_offset_to_baseunit": False, "force_ndarray_like": True}
    try:
        return pint.UnitRegistry(cache_folder=":auto:", **options)
    except Exception:  # any cache failure: build without it
        return pint.UnitRegistry(cache_folder=None, **options)


ureg = _registry()
# Units the medical literature uses that pint does not define by default.
ureg.define("hounsfield_unit = [] = HU")
ureg.define("cells = [] = cell")
pint.set_application_registry(ureg)
Q_ = ureg.Quantity
_TEMPERATURE = ureg.parse_units("K").dimensionality

#: The longest quantity string accepted ("5 mg/L" is 6; a long compound unit is under 60).
MAX_QUANTITY_CHARS = 200
# The number at the start of a quantity string. Each part can match in one way only (no
# nested or adjacent quantifiers over the same characters), so matching is linear in the
# length; the unit is the rest of the string, taken by slicing rather than by a pattern.
_NUMBER = re.compile(r"[-+]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
                     r"|(?:infinity|inf|nan)(?![A-Za-z]))", re.IGNORECASE)
# A power of a power (m**2**2**2…): pint evaluates the exponent tower exactly, which for a
# few dozen characters takes longer than the age of the universe.
_POWER_TOWER = re.compile(r"(?:\*\*|\^)[\s(+-]*[\d.]+[\s)]*(?:\*\*|\^)")


def parse_quantity(value: Any, *, field: str = "") -> pint.Quantity:
    """Turn ``"5 mg/L"``, ``{"magnitude": 5, "units": "mg/L"}``, a number or a Quantity into a
    Quantity of the shared registry.

    Strings are split into magnitude and unit before the unit is parsed, so that offset units
    (``"37 degC"``) are not multiplied (which pint refuses, rightly, for offset units).
    """
    where = f"{field}: " if field else ""
    if isinstance(value, pint.Quantity):
        if value._REGISTRY is not ureg:  # a Quantity of another registry: rebuild it in ours
            return Q_(value.magnitude, str(value.units))
        return value
    if isinstance(value, bool):
        raise UnitError(f"{where}expected a quantity with units, got the boolean {value!r}")
    if isinstance(value, int | float | np.integer | np.floating):
        return Q_(_as_float(value, where), "dimensionless")
    if isinstance(value, Mapping):
        keys = set(value)
        if not {"magnitude", "units"} <= keys or keys - {"magnitude", "units"}:
            raise UnitError(f"{where}expected a mapping with exactly the keys 'magnitude' and "
                            f"'units', got keys {sorted(map(str, keys))}")
        magnitude = value["magnitude"]
        if isinstance(magnitude, bool) or not isinstance(magnitude, int | float):
            raise UnitError(f"{where}expected a number for 'magnitude', got {_short(magnitude)}")
        return Q_(_as_float(magnitude, where), _parse_units(value["units"], where))
    if isinstance(value, str):
        if len(value) > MAX_QUANTITY_CHARS:
            raise UnitError(f"{where}a quantity is at most {MAX_QUANTITY_CHARS} characters "
                            f"long, got {len(value)} ({_short(value)})")
        text = value.strip()
        match = _NUMBER.match(text)
        if not match:
            raise UnitError(f"{where}expected a number followed by a unit, such as '5 mg/L', "
                            f"got {_short(value)}")
        unit_text = text[match.end():].strip()
        return Q_(float(match.group()), _parse_units(unit_text or "dimensionless", where))
    raise UnitError(f"{where}expected a quantity such as '5 mg/L', got {type(value).__name__} "
                    f"{_short(value)}")


_REPR = reprlib.Repr()  # keyword arguments only from Python 3.12
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, 80, 80


def _short(value: Any) -> str:
    """``repr`` cut to a readable length (a scenario value may be huge or deeply nested)."""
    return _REPR.repr(value)


def _as_float(number: Any, where: str) -> float:
    try:
        return float(number)
    except OverflowError:  # an int beyond float range (YAML reads 1000…0 as an int)
        raise UnitError(f"{where}expected a number within ±1.8e308, got an integer too "
                        "large for a float") from None


def _parse_units(text: Any, where: str) -> pint.Unit:
    if not isinstance(text, str):
        raise UnitError(f"{where}expected a unit string, got {_short(text)}")
    if len(text) > MAX_QUANTITY_CHARS:
        raise UnitError(f"{where}a unit is at most {MAX_QUANTITY_CHARS} characters long, got "
                        f"{len(text)} ({_short(text)})")
    if _POWER_TOWER.search(text):
        raise UnitError(f"{where}unknown or malformed unit {_short(text)} (a power of a power; "
                        "write the exponent out, e.g. m**4)")
    try:
        unit = ureg.parse_units(text.strip() or "dimensionless")
    except (pint.UndefinedUnitError, pint.DefinitionSyntaxError, ValueError, AttributeError,
            TypeError, AssertionError) as exc:
        raise UnitError(f"{where}unknown or malformed unit {text!r} ({exc})") from None
    except Exception as exc:  # pint's tokenizer raises assorted errors on garbage
        raise UnitError(f"{where}unknown or malformed unit {text!r} "
                        f"({type(exc).__name__})") from None
    # 'm**1e400' parses to m**inf, which no dimension matches and which cannot be written back.
    if not all(math.isfinite(float(e)) for e in unit._units.values()):
        raise UnitError(f"{where}unknown or malformed unit {text!r} (non-finite exponent)")
    return unit


def dimension_of(unit: str | pint.Unit | pint.Quantity) -> str:
    """The dimensionality of a unit as pint writes it, e.g. ``[length] ** 2 / [time]``."""
    if isinstance(unit, pint.Quantity):
        return str(unit.dimensionality)
    return str(ureg.parse_units(unit).dimensionality if isinstance(unit, str)
               else unit.dimensionality)


def to_canonical(value: Any, units: tuple[str, ...] | str, *, field: str = "") -> pint.Quantity:
    """Parse ``value`` and convert it to the first of ``units`` whose dimension it has.

    Raises :class:`UnitError` naming ``field`` and the expected dimensions otherwise.
    """
    if isinstance(units, str):
        units = (units,)
    q = parse_quantity(value, field=field)
    for unit in units:
        target = ureg.parse_units(unit)
        if q.dimensionality == target.dimensionality:
            try:
                return q.to(target)
            except pint.OffsetUnitCalculusError as exc:  # pragma: no cover - defensive
                raise UnitError(f"{field}: {exc}") from None
    expected = " or ".join(f"{dimension_of(u)} (e.g. {u})" for u in units)
    # Echo a string as the user wrote it ('5 mL', not pint's '5 ml').
    shown = _short(value.strip()) if isinstance(value, str) else repr(format_quantity(q))
    got = "a bare number" if q.dimensionless and not isinstance(value, pint.Quantity | str) \
        else f"{shown} of dimension {q.dimensionality}"
    where = f"{field}: " if field else ""
    raise UnitError(f"{where}expected {expected}, got {got}")


def format_quantity(q: pint.Quantity) -> str:
    """A compact string that :func:`parse_quantity` reads back to the same quantity."""
    mag = q.magnitude
    if isinstance(mag, np.ndarray):
        mag = mag.tolist()
    unit = format(q.units, "~C") if not q.dimensionless else ""
    unit = unit.replace("°C", "degC").replace("°F", "degF")
    if isinstance(mag, float | int):
        text = f"{mag:.15g}"
        if float(text) != mag:  # 15 digits read well but do not always load back exactly
            text = repr(float(mag))
        return f"{text} {unit}".strip()
    return f"{mag} {unit}".strip()


#: The hottest temperature a scenario may give (the surface of the Sun is ~5.8e3 K; laser
#: ablation and plasma stay well below this).
MAX_TEMPERATURE_K = 1e5


def _implausible_temperature(q: pint.Quantity) -> str | None:
    """A temperature (not a difference: ``delta_degC`` is left alone) below absolute zero or
    above :data:`MAX_TEMPERATURE_K`, described; None if it is plausible."""
    if q.dimensionality != _TEMPERATURE or "delta_" in str(q.units):
        return None
    kelvin = float(q.to("K").magnitude)
    if math.isfinite(kelvin) and 0.0 <= kelvin <= MAX_TEMPERATURE_K:
        return None
    shown = format_quantity(q)
    if kelvin < 0:
        return f"{shown} is below absolute zero (0 K = -273.15 degC)"
    return (f"{shown} is not a plausible temperature; expected 0 K to "
            f"{MAX_TEMPERATURE_K:g} K")


@dataclass(frozen=True)
class QuantitySpec:
    """Pydantic metadata for a quantity field: canonical units and value constraints."""

    units: tuple[str, ...]
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    allow_nonfinite: bool = False

    def validate(self, value: Any) -> pint.Quantity:
        try:
            q = to_canonical(value, self.units) if self.units else parse_quantity(value)
        except UnitError as exc:
            raise PydanticCustomError("quantity", "{msg}", {"msg": str(exc)}) from None
        mag = float(q.magnitude)
        if not self.allow_nonfinite and not math.isfinite(mag):
            raise PydanticCustomError("quantity", "expected a finite value, got {mag}",
                                      {"mag": mag})
        problem = _implausible_temperature(q)
        if problem:
            raise PydanticCustomError("quantity", "{msg}", {"msg": problem})
        for bound, op, text in ((self.gt, float.__gt__, ">"), (self.ge, float.__ge__, ">="),
                                (self.lt, float.__lt__, "<"), (self.le, float.__le__, "<=")):
            if bound is not None and not op(mag, float(bound)):
                raise PydanticCustomError(
                    "quantity", "expected a value {op} {bound} {unit}, got {got}",
                    {"op": text, "bound": bound, "unit": format(q.units, "~C"),
                     "got": format_quantity(q)})
        return q

    def __get_pydantic_core_schema__(self, source: Any,
                                     handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            self.validate,
            serialization=core_schema.plain_serializer_function_ser_schema(
                format_quantity, when_used="always"),
        )

    def __get_pydantic_json_schema__(self, schema: core_schema.CoreSchema,
                                     handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        dims = " or ".join(dimension_of(u) for u in self.units) or "any"
        example = f"1 {self.units[0]}" if self.units else "1 mol/m^3"
        canonical = f"; canonical unit {self.units[0]}" if self.units else ""
        out: dict[str, Any] = {
            "description": f"A quantity of dimension {dims}{canonical}.",
            "anyOf": [
                {"type": "string", "pattern": r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*.*$",
                 "examples": [example]},
                {"type": "object", "required": ["magnitude", "units"],
                 "additionalProperties": False,
                 "properties": {"magnitude": {"type": "number"}, "units": {"type": "string"}}},
            ],
            "x-units": list(self.units),
            "x-dimension": dims,
        }
        for key in ("gt", "ge", "lt", "le"):
            bound = getattr(self, key)
            if bound is not None:
                out[f"x-{key}"] = bound
        return out


def Qty(*units: str, gt: float | None = None, ge: float | None = None,
        lt: float | None = None, le: float | None = None,
        allow_nonfinite: bool = False) -> Any:
    """The annotated type of a quantity field whose canonical unit is the first of ``units``
    with the value's dimension (give several units for alternative dimensions; none: any
    dimension, left as given, for fields whose dimension depends on the model)."""
    for unit in units:
        ureg.parse_units(unit)  # fail at class definition, not at first use
    return Annotated[pint.Quantity, QuantitySpec(tuple(units), gt, ge, lt, le, allow_nonfinite)]
