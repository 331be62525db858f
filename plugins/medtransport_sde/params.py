"""Declarative parameters of the named processes: quantities with units, no expressions.

Each process's state has the unit of its ``initial`` value (a concentration, a pressure, a
fraction, a position); every other parameter must have the dimension that unit implies (a
set point like the state, a volatility of state/√time for additive noise …) and is refused,
naming the field, otherwise.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pint
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from medtransport.model import Params
from medtransport.units import Q_, Qty

__all__ = ["CIRParams", "DriftedBMParams", "GBMParams", "HistogramSpec", "JacobiParams",
           "OUParams", "WallSpec", "Walls"]


class HistogramSpec(BaseModel):
    """Cells of the histogram density: [lower, upper] in the state's unit, ``cells`` cells.
    Left out, the range covers the exact mean ± 6 SD over the run (clipped to the state
    space)."""

    model_config = ConfigDict(extra="forbid")

    lower: Qty()
    upper: Qty()
    cells: Annotated[int, Field(ge=1, le=10_000)] = 60


def _like(value: pint.Quantity, info: ValidationInfo, unit_of: Any, what: str) -> pint.Quantity:
    """Refuse ``value`` unless it has the dimension ``unit_of(state unit)``."""
    initial = info.data.get("initial")
    if initial is None or value is None:
        return value
    expected = unit_of(Q_(1.0, initial.units))
    if value.dimensionality != expected.dimensionality:
        raise ValueError(f"expected {what} (dimension {expected.dimensionality}, e.g. "
                         f"{expected.units:~P}), got {value:~P}")
    return value


def _state(q: pint.Quantity) -> pint.Quantity:
    return q


def _per_sqrt_time(q: pint.Quantity) -> pint.Quantity:
    return q / Q_(1.0, "s") ** 0.5


def _sqrt_per_time(q: pint.Quantity) -> pint.Quantity:
    return (q / Q_(1.0, "s")) ** 0.5


class _WithHistogram(Params):
    """Each process declares ``histogram`` last, so that it is checked against ``initial``."""

    @field_validator("histogram", check_fields=False)
    @classmethod
    def _hist_units(cls, v: HistogramSpec | None, info: ValidationInfo) -> HistogramSpec | None:
        if v is None:
            return v
        for q in (v.lower, v.upper):
            _like(q, info, _state, "a value of the state")
        if v.lower.dimensionality == v.upper.dimensionality and \
                v.lower.to(v.upper.units).magnitude >= v.upper.magnitude:
            raise ValueError("histogram.lower must lie below histogram.upper")
        return v


class OUParams(_WithHistogram):
    """dX = θ(m − X)dt + σ dW: ``initial`` X₀, ``set_point`` m, ``reversion_rate`` θ,
    ``volatility`` σ (state/√time)."""

    initial: Qty()
    set_point: Qty()
    reversion_rate: Qty("1/s", gt=0)
    volatility: Qty(ge=0)
    histogram: HistogramSpec | None = None

    @field_validator("set_point")
    @classmethod
    def _sp(cls, v: pint.Quantity, info: ValidationInfo) -> pint.Quantity:
        return _like(v, info, _state, "a value of the state")

    @field_validator("volatility")
    @classmethod
    def _vol(cls, v: pint.Quantity, info: ValidationInfo) -> pint.Quantity:
        return _like(v, info, _per_sqrt_time, "state per √time")


class GBMParams(_WithHistogram):
    """dX = λX dt + μX dW: ``initial`` X₀ > 0, ``growth_rate`` λ (negative: decay),
    ``volatility`` μ (1/√time)."""

    initial: Qty(gt=0)
    growth_rate: Qty("1/s")
    volatility: Qty("1/s**0.5", ge=0)
    histogram: HistogramSpec | None = None


class CIRParams(_WithHistogram):
    """dX = κ(θ − X)dt + σ√X dW: ``initial`` X₀ ≥ 0, ``reversion_rate`` κ, ``long_term_mean``
    θ, ``volatility`` σ (√(state/time)). Feller's condition 2κθ ≥ σ² keeps X off zero."""

    initial: Qty(ge=0)
    reversion_rate: Qty("1/s", gt=0)
    long_term_mean: Qty(gt=0)
    volatility: Qty(gt=0)
    histogram: HistogramSpec | None = None

    @field_validator("long_term_mean")
    @classmethod
    def _mean(cls, v: pint.Quantity, info: ValidationInfo) -> pint.Quantity:
        return _like(v, info, _state, "a value of the state")

    @field_validator("volatility")
    @classmethod
    def _vol(cls, v: pint.Quantity, info: ValidationInfo) -> pint.Quantity:
        return _like(v, info, _sqrt_per_time, "√(state/time)")


class JacobiParams(_WithHistogram):
    """dX = −ω(X − μ)dt + √(2ωκX(1 − X)) dW on [0, 1]: ``initial`` X₀, ``mean`` μ,
    ``mixing_rate`` ω, ``mixing_intensity`` κ (the stationary law is Beta(μ/κ, (1 − μ)/κ))."""

    initial: Qty("dimensionless", ge=0, le=1)
    mean: Qty("dimensionless", gt=0, lt=1)
    mixing_rate: Qty("1/s", gt=0)
    mixing_intensity: Qty("dimensionless", gt=0)
    histogram: HistogramSpec | None = None


class WallSpec(BaseModel):
    """A wall for the paths: ``kind`` reflecting or absorbing, at ``position``."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["reflecting", "absorbing"]
    position: Qty("m")


class Walls(BaseModel):
    """Walls below and above the particle (either may be left out: no wall)."""

    model_config = ConfigDict(extra="forbid")

    lower: WallSpec | None = None
    upper: WallSpec | None = None


class DriftedBMParams(_WithHistogram):
    """dX = v dt + √(2D) dW: a particle at ``initial`` (a position) moving with ``velocity`` v
    and ``diffusivity`` D, between optional ``walls``."""

    initial: Qty("m")
    velocity: Qty("m/s")
    diffusivity: Qty("m^2/s", gt=0)
    walls: Walls | None = None
    histogram: HistogramSpec | None = None

    @field_validator("walls")
    @classmethod
    def _walls(cls, v: Walls | None, info: ValidationInfo) -> Walls | None:
        x0 = info.data.get("initial")
        if v is None or x0 is None:
            return v
        lo = v.lower.position.m_as("m") if v.lower else -float("inf")
        hi = v.upper.position.m_as("m") if v.upper else float("inf")
        if not lo < x0.m_as("m") < hi:
            raise ValueError("the particle must start strictly between the walls")
        return v

