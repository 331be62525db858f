"""Units a person reads: what tables, plot axes and reports show, while results keep their
canonical units inside.

For a variable of canonical unit ``u`` the displayed unit is, in order:

1. the unit the scenario was written in for that dimension (``amount: 2 mg`` → amounts in mg,
   ``37 degC`` → temperatures in °C): the first quantity of the same dimension found in the
   scenario's ``parameters`` and ``events`` (not ``patient``, nor an entry named for a
   weight such as ``reference_weight``: a 70 kg weight says nothing of how the drug is
   counted);
2. the field's customary unit, declared per variable by the model class::

       class PennesBioheat(Model):
           display_units = {"temperature": "degC", "ablation_volume": "mL"}

   (a key may be a variable name, or a ledger species name for its amounts);
3. ``u`` with an SI prefix that puts the largest magnitude between 1 and 1000 (kg → mg for a
   2 mg dose), when ``u`` is a mass, an amount of substance, a volume or a length;
4. ``u`` itself.

Dimensionless, time and unknown units are left alone (time axes are the plots' own choice).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

__all__ = ["DisplayUnits", "convert", "dimensionality", "duration", "length", "pretty",
           "readable_prefix", "time_unit", "written_units"]

_QUANTITY = re.compile(r"^\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s+(\S.*)$")

#: Units an SI prefix may be put on, by dimensionality text, smallest first.
_LADDERS: dict[str, tuple[str, ...]] = {
    "[mass]": ("ng", "µg", "mg", "g", "kg"),
    "[substance]": ("nmol", "µmol", "mmol", "mol"),
    "[length] ** 3": ("µL", "mL", "L", "m**3"),
    "[length]": ("nm", "µm", "mm", "m"),
    "[mass] / [length] ** 3": ("ng/mL", "µg/mL", "mg/mL", "g/mL"),
    "[substance] / [length] ** 3": ("nM", "µM", "mM", "M"),
}


def _ureg() -> Any:
    from medtransport.units import ureg

    return ureg


def dimensionality(unit: str) -> str | None:
    """``"[mass] / [length] ** 3"`` for ``"mg/L"``; None for what is not a unit."""
    return _dims(unit)


@functools.lru_cache(maxsize=1024)
def _dims(unit: str) -> str | None:
    # cached: the audits of every population chunk word their details in the same few units
    try:
        return str(_ureg().parse_units(unit).dimensionality)
    except Exception:
        return None


def convert(values: Any, from_unit: str, to_unit: str) -> np.ndarray:
    """``values`` in ``from_unit`` expressed in ``to_unit`` (offset units such as degC
    included)."""
    if from_unit == to_unit:
        return np.asarray(values, dtype=float)
    q = _ureg().Quantity(np.asarray(values, dtype=float), from_unit)
    return np.asarray(q.to(to_unit).magnitude, dtype=float)


def _walk(node: Any) -> Iterable[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, Mapping):
        for key, value in node.items():
            if "weight" not in str(key):  # a body weight is not the unit of a dose
                yield from _walk(value)
    elif isinstance(node, list | tuple):
        for value in node:
            yield from _walk(value)


def written_units(scenario: Any) -> dict[str, str]:
    """Dimensionality → the first unit the scenario writes for it (``{"[mass]": "mg"}``),
    from its ``parameters`` and ``events`` as the user wrote them."""
    data = scenario if isinstance(scenario, Mapping) else \
        scenario.model_dump(mode="python", include={"parameters", "events"})
    sections = [data.get(k) for k in ("parameters", "events")]
    out: dict[str, str] = {}
    for text in _walk(sections):
        match = _QUANTITY.match(text)
        if not match:
            continue
        unit = match.group(1).strip()
        dims = _dims(unit)
        if dims and dims != "dimensionless" and dims not in out and dims != "[time]":
            out[dims] = unit
    return out


def readable_prefix(unit: str, values: Any) -> str:
    """``unit`` moved along its SI ladder so that max |values| lies in [1, 1000) — or ``unit``
    when it has no ladder or no finite non-zero value."""
    dims = _dims(unit)
    ladder = _LADDERS.get(dims or "")
    finite = np.abs(np.asarray(values, dtype=float))
    finite = finite[np.isfinite(finite) & (finite > 0)]
    if ladder is None or finite.size == 0:
        return unit
    peak = float(finite.max())
    best = unit
    for candidate in ladder:  # smallest first: the first with a peak under 1000 wins
        if convert(peak, unit, candidate) < 1000.0 * (1.0 - 1e-9):  # 1 µm is not 1000 nm
            best = candidate
            break
    return best


class DisplayUnits:
    """The display units of one model's results (see the module docstring)."""

    def __init__(self, model: Any = None, *, declared: Mapping[str, str] | None = None,
                 written: Mapping[str, str] | None = None) -> None:
        self.declared = dict(declared if declared is not None else
                             getattr(model, "display_units", None) or {})
        if written is None and model is not None and getattr(model, "scenario", None):
            try:
                written = written_units(model.scenario)
            except Exception:  # a scenario that cannot be read only costs the preference
                written = {}
        self.written = dict(written or {})

    def unit(self, name: str, canonical: str, values: Any = None) -> str:
        """The unit to show variable (or species) ``name`` in."""
        dims = _dims(canonical)
        if dims is None or dims in ("dimensionless", "[time]"):
            return canonical
        if dims in self.written:
            return self.written[dims]
        declared = self.declared.get(name)
        if declared and _dims(declared) == dims:
            return declared
        return readable_prefix(canonical, values) if values is not None else canonical

    def column_unit(self, name: str, canonical: str, values: Any = None) -> str:
        """The unit of a table's column (a CSV export): as :meth:`unit`, except that a
        variable the model declares no unit for takes the unit the model declares for
        another variable of the same dimension before a prefix picked by size — so the
        columns of one table agree (``dialysate_removed`` in mmol beside ``urea`` in mmol,
        not in mol because it reached 1000 mmol)."""
        dims = _dims(canonical)
        if dims is None or dims in ("dimensionless", "[time]") or dims in self.written:
            return self.unit(name, canonical, values)
        declared = self.declared.get(name)
        if declared and _dims(declared) == dims:
            return declared
        for unit in self.declared.values():
            if _dims(unit) == dims:
                return unit
        return self.unit(name, canonical, values)

    def difference(self, name: str, value: float, canonical: str,
                   scale: Any = None) -> tuple[float, str]:
        """A difference or a tolerance (not a level): converted like :meth:`show`, except that
        temperatures stay in their unit (a difference of 1 K is not 274.15 °C)."""
        if _dims(canonical) == "[temperature]":
            return value, canonical
        unit = self.unit(name, canonical, value if scale is None else scale)
        try:
            return float(convert(value, canonical, unit)), unit
        except Exception:
            return value, canonical

    def show(self, name: str, values: Any, canonical: str) -> tuple[np.ndarray, str]:
        """``values`` (in ``canonical``) converted for display, and the unit they are in."""
        unit = self.unit(name, canonical, values)
        try:
            return convert(values, canonical, unit), unit
        except Exception:  # an unconvertible declaration: show what the result holds
            return np.asarray(values, dtype=float), canonical


def time_unit(seconds: Any) -> str:
    """The unit a time axis or column of these times (in s) is shown in: h when they span
    at least 3 h, min when at least 3 min, else s — a 72-h run reads in hours."""
    t = np.asarray(seconds, dtype=float)
    t = t[np.isfinite(t)]
    span = float(t.max() - t.min()) if t.size else 0.0
    for unit, size in (("h", 3600.0), ("min", 60.0)):
        if span >= 3 * size:
            return unit
    return "s"


def duration(seconds: float) -> str:
    """A time in the unit a person would say it in: ``864000`` → ``10 day``, ``600`` →
    ``10 min``, ``0.5`` → ``500 ms``."""
    value = float(seconds)
    for unit, size in (("day", 86400.0), ("h", 3600.0), ("min", 60.0), ("s", 1.0),
                       ("ms", 1e-3)):
        if abs(value) >= size or unit == "ms":
            return f"{value / size:.4g} {unit}" if value else "0 s"
    return f"{value:g} s"  # pragma: no cover - the loop always returns


def length(metres: float) -> str:
    """A length with a readable prefix: ``0.0015`` → ``1.5 mm``."""
    unit = readable_prefix("m", [metres]) if metres else "m"
    return f"{float(convert(metres, 'm', unit)):.4g} {pretty(unit)}"


def pretty(unit: str) -> str:
    """A unit as a label: ``kg/m**3`` → ``kg/m³``, ``degC`` → ``°C``, ``um`` → ``µm``,
    ``mg/l`` → ``mg/L``, ``mg/L*h`` → ``mg·h/L``."""
    if str(unit) in ("dimensionless", "1"):
        return ""
    text = str(unit).replace("**3", "³").replace("**2", "²").replace("^3", "³")
    text = text.replace("^2", "²").replace("degC", "°C").replace("delta_°C", "°C")
    text = re.sub(r"\bu(m|L|g|mol|M|s)\b", r"µ\1", text)
    # a product after a quotient (an AUC's mg/L*h) reads mg·h/L, not as mg/(L·h)
    text = re.sub(r"^([^/*()]+)/([^/*()]+)\*([^/*()]+)$", r"\1·\3/\2", text)
    text = re.sub(r"\*\*(-?\d+)", r"^\1", text).replace("*", "·")
    # pint's short spelling of the litre is "l"; medicine writes L (mg/L, not mg/l)
    return re.sub(r"(?<![A-Za-z])([mµnd]?)l(?![A-Za-z])", r"\1L", text)
