"""Quantity types of the contrast plugin that accept the notation of the DCE literature.

Perfusion is quoted per 100 mL or per 100 g of tissue (``"25 mL/min/100 mL"``,
``"60 mL/min/100 g"``); pint refuses a number inside a unit, so "/100 mL" is read as "/dL" and
"/100 g" as "/hg" before the quantity is parsed. A per-mass flow becomes a rate with the tissue
density (1.04 g/mL for soft tissue and brain; Herscovitch & Raichle, *J Cereb Blood Flow Metab*
1985;5:65): F[1/min] = F[mL/min/g]·ρ[g/mL]. Mixing these up is the unit slip DCE code is known
for (a flow in mL/min/100 mL coded as mL/min/mL is 100× too large).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, WithJsonSchema

from medtransport.errors import UnitError
from medtransport.units import Qty, to_canonical

__all__ = ["Fraction", "Rate", "per_hundred"]

_HUNDRED = re.compile(r"/\s*\(?\s*100\s*(mL|ml|milliliter|millilitre|g|gram)\s*\)?")


def per_hundred(value: Any) -> Any:
    """``"… /100 mL"`` → ``"… /dL"``, ``"… /100 g"`` → ``"… /hg"``; anything else unchanged."""
    if not isinstance(value, str):
        return value
    return _HUNDRED.sub(lambda m: "/dL" if m.group(1).lower().startswith("m") else "/hg", value)


#: A rate constant or a flow per tissue volume (1/s) or per tissue mass (mL/s/g).
Rate = Annotated[Qty("1/min", "mL/min/g", ge=0), BeforeValidator(per_hundred)]


def _fraction(value: Any) -> Any:
    """A number stays a number; a quantity ("20 mL/100 mL", "20 %") becomes its
    dimensionless value."""
    if isinstance(value, bool) or isinstance(value, int | float):
        return value
    try:
        return float(to_canonical(per_hundred(value), "dimensionless").magnitude)
    except UnitError as exc:
        raise ValueError(str(exc)) from None


#: A volume fraction (a float in [0, 1]): a number, or a ratio such as "20 mL/100 mL".
Fraction = Annotated[float, BeforeValidator(_fraction), Field(ge=0, le=1),
                     WithJsonSchema({"anyOf": [{"type": "number", "minimum": 0, "maximum": 1},
                                               {"type": "string"}],
                                     "description": "a volume fraction in [0, 1], as a "
                                                    "number or a ratio such as "
                                                    "'20 mL/100 mL'"})]
