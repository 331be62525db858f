"""Audits in words, for tables a person reads.

An :class:`~medtransport.audit.report.AuditResult` stores ``measured`` and ``tolerance``; what
relation between them passes depends on the audit (a residual must stay *below* its tolerance,
a minimum must stay *above* a small negative allowance). :func:`check_in_words` states the
check with its numbers — ``min 0 mg ≥ −4.2e-07 mg (round-off allowance)`` — so an auditor never
has to guess what a negative tolerance means. :func:`difference_in_words` states how far two
nearly equal numbers are apart, instead of printing both to nine digits that look the same.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["check_in_words", "difference_in_words", "number"]

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


def check_in_words(result: Any) -> str:
    """The check an audit result made, with its numbers and units: ``max |stored − ledger|
    1.1e-12 mg ≤ 1.7e-06 mg (tolerance)``."""
    family = str(result.name).split("[", 1)[0]
    what, relation, held = _CHECKS.get(family, ("measured", "≤", "tolerance"))
    if result.units in _COUNTS and result.tolerance == 0:
        counted = what if family in _CHECKS else result.units
        return f"{number(result.measured)} {counted}, none allowed"
    units = f" {result.units}" if result.units else ""
    text = f"{what} {number(result.measured)}{units} {relation} {number(result.tolerance)}{units}"
    return f"{text} ({held})" if held else text


def difference_in_words(value: float, reference: float, units: str, allowed: float) -> str:
    """How far ``value`` is from ``reference``: the difference, relative to the reference,
    and as a multiple of what was allowed — numbers a person can compare at a glance."""
    diff = value - reference
    rel = abs(diff) / abs(reference) if reference else math.inf
    text = f"differs by {number(diff)} {units} ({number(rel, 2)} relative)"
    if allowed > 0 and math.isfinite(diff):
        text += f", {number(abs(diff) / allowed, 3)}× the {number(allowed)} {units} allowed"
    return text
