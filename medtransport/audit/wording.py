"""Audits in words, for tables a person reads.

An :class:`~medtransport.audit.report.AuditResult` stores ``measured`` and ``tolerance``; what
relation between them passes depends on the audit (a residual must stay *below* its tolerance,
a minimum must stay *above* a small negative allowance). :func:`check_in_words` states the
check with its numbers — ``min 0 mg ≥ −4.2e-07 mg (round-off allowance)`` — so an auditor never
has to guess what a negative tolerance means. :func:`difference_in_words` states how far two
nearly equal numbers are apart, instead of printing both to nine digits that look the same.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

__all__ = ["amount", "check_in_words", "difference_in_words", "number"]

#: Audit family (the name before ``[``) → (what is measured, relation, what it is held to).
_CHECKS: dict[str, tuple[str, str, str]] = {
    "mass_balance": ("max |stored − ledger|", "≤", "tolerance"),
    "normalization": ("|represented − declared| at t0", "≤", "tolerance"),
    "nonnegativity": ("minimum", "≥", "round-off allowance"),
    "finiteness": ("non-finite values", "≤", ""),
    "units": ("variables without units or a long name", "≤", ""),
    "stability": ("value", "≤", "limit"),
    "truncation": ("neglected tail", "≤", "tolerance"),
    "variance_budget": ("worst excess", "≤", "tolerance"),
}

#: Units of audits that count things; their check reads "0 non-finite values, none allowed".
_COUNTS = {"problems", "values", "walkers", "patients"}


def number(value: float, digits: int = 3) -> str:
    """A number for a table: ``digits`` significant figures, never ``-0``, signs as ``−``."""
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if value == 0:
        return "0"  # also −0.0
    text = f"{value:.{digits}g}"
    return text.replace("-", "−") if not text.startswith("-inf") else "−inf"


def amount(value: float, unit: str, shown: str | None = None) -> str:
    """``2e-06 kg`` as ``2 mg``: a quantity in the unit ``shown`` (the model's display unit)
    if given, else with the SI prefix that makes it readable."""
    from medtransport.display import convert, pretty, readable_prefix

    if not shown:
        shown = readable_prefix(unit, [value]) if value else unit
    try:
        value = float(convert(value, unit, shown))
    except Exception:
        shown = unit
    return f"{value:.6g} {pretty(shown)}"


def check_in_words(result: Any, display: Any = None) -> str:
    """The check an audit result made, with its numbers and units: ``max |stored − ledger|
    1.1e-12 mg ≤ 1.7e-06 mg (tolerance)`` — in the unit ``display`` (a
    :class:`medtransport.display.DisplayUnits`) shows that quantity in, if given."""
    if display is not None and result.units:
        result = _displayed(result, display)
    family = str(result.name).split("[", 1)[0]
    what, relation, held = _CHECKS.get(family, ("measured", "≤", "tolerance"))
    if result.units in ("dimensionless", "1"):
        result = dataclasses.replace(result, units="")
    if result.units in _COUNTS and result.tolerance == 0:
        counted = what if family in _CHECKS else result.units
        return f"{number(result.measured)} {counted}, none allowed"
    units = f" {result.units}" if result.units else ""
    text = f"{what} {number(result.measured)}{units} {relation} {number(result.tolerance)}{units}"
    return f"{text} ({held})" if held else text


def difference_in_words(value: float, reference: float, units: str, allowed: float,
                        shown: str | None = None) -> str:
    """How far ``value`` is from ``reference``: the difference, relative to the reference,
    and as a multiple of what was allowed — numbers a person can compare at a glance; in the
    unit ``shown`` if given (amounts: no offset units)."""
    from medtransport.display import convert, pretty

    if shown and shown != units:
        try:
            factor = float(convert(1.0, units, shown))
            value, reference, allowed, units = (value * factor, reference * factor,
                                                allowed * factor, shown)
        except Exception:
            pass
    units = pretty(units)
    diff = value - reference
    rel = abs(diff) / abs(reference) if reference else math.inf
    text = f"differs by {number(diff)} {units} ({number(rel, 2)} relative)"
    if allowed > 0 and math.isfinite(diff):
        text += f", {number(abs(diff) / allowed, 3)}× the {number(allowed)} {units} allowed"
    return text


def _displayed(result: Any, display: Any) -> Any:
    """``result`` with measured and tolerance in the display unit of what it checks."""
    from medtransport.display import convert, dimensionality, pretty

    name = str(result.name)
    subject = name[name.index("[") + 1:-1] if "[" in name and name.endswith("]") else name
    # the model's unit for that dimension, else a readable prefix for the numbers the check
    # states (a minimum of 0.00121 kg/m³ reads 1.21 µg/mL)
    scale = [abs(v) for v in (result.measured, result.tolerance)
             if isinstance(v, int | float) and math.isfinite(v)]
    unit = display.column_unit(subject, result.units, scale or None)
    # a temperature check (minimum 310.15 K ≥ −5e-07 K) mixes a level and an allowance: as is
    if unit == result.units or dimensionality(result.units) == "[temperature]":
        return dataclasses.replace(result, units=pretty(result.units))
    try:
        factor = float(convert(1.0, result.units, unit))
    except Exception:
        return result
    return dataclasses.replace(result, measured=result.measured * factor,
                               tolerance=result.tolerance * factor, units=pretty(unit))
