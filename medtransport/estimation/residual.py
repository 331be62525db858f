"""Residual error: how an observation scatters about the model's prediction.

With f the prediction at a record and ε ~ N(0, 1) (NONMEM's $SIGMA terms written as SDs):

- additive:      y = f + a·ε                       Var(y) = a²
- proportional:  y = f·(1 + b·ε)                   Var(y) = b²·f²
- combined:      y = f + √(a² + b²f²)·ε             Var(y) = a² + b²·f²   (both given)
- exponential:   ln y = ln f + c·ε                 Var(ln y) = c²

The −2 log-likelihood of one record, without the constant log 2π (NONMEM's OFV convention), is

    −2 ln L = ln Var + (y − f)² / Var                           (on the transformed scale)

where the transformed scale is y itself, or ln y for the exponential model. As NONMEM does when
DV is log-transformed, the exponential model's likelihood is that of ln y; the density of y
itself adds 2·ln y per record, which does not depend on any parameter.

A record below the lower limit of quantification (LLOQ) contributes Beal's M3 likelihood
(Beal 2001, J Pharmacokinet Pharmacodyn 28:481), the probability of being below it:

    −2 ln L = −2 ln Φ((T(LLOQ) − T(f)) / SD)

The additive SD carries a unit, checked against the unit of DV; proportional and exponential
SDs are fractions. The scenario section reads::

    residual_error: {additive: 0.5 mg/L, proportional: 0.1}      # combined
    residual_error: {exponential: 0.15}                          # on request

This module is statistics only: it knows nothing of what is predicted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Annotated, Any

import numpy as np
import pint
from numpy.typing import ArrayLike, NDArray
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from medtransport.errors import ScenarioError, UnitError
from medtransport.units import Qty, format_quantity, ureg

__all__ = ["ResidualError", "ResidualErrorSpec"]

FloatArray = NDArray[np.float64]

_Fraction = Annotated[float, Field(ge=0, le=10, allow_inf_nan=False)]


class ResidualErrorSpec(BaseModel):
    """The scenario's ``residual_error`` section (SDs; combined when both given)."""

    model_config = ConfigDict(extra="forbid")

    additive: Qty(gt=0) | None = None
    proportional: _Fraction | None = None
    exponential: _Fraction | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> ResidualErrorSpec:
        if self.exponential is not None and (self.additive is not None
                                             or self.proportional is not None):
            raise ValueError("'exponential' cannot be combined with 'additive' or "
                             "'proportional'; give either exponential, or additive and/or "
                             "proportional")
        if self.additive is None and self.proportional is None and self.exponential is None:
            raise ValueError("give at least one of 'additive' (an SD with the unit of DV), "
                             "'proportional' (a fraction) or 'exponential' (SD of ln DV)")
        for name in ("proportional", "exponential"):
            if getattr(self, name) == 0:
                raise ValueError(f"'{name}' must be > 0 (leave it out for none)")
        return self


@dataclass(frozen=True)
class ResidualError:
    """A residual error model with its SDs as plain floats; ``additive`` is in ``unit``.

    Build one with :meth:`from_spec` (or :meth:`parse` from a mapping); :meth:`in_unit` checks
    the additive SD's unit against DV's and converts it.
    """

    additive: float = 0.0
    proportional: float = 0.0
    exponential: float = 0.0
    #: unit of the additive SD (and of every ``dv``/``pred`` given to the methods)
    unit: str | None = None

    def __post_init__(self) -> None:
        for name in ("additive", "proportional", "exponential"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"residual_error.{name}: expected a finite SD ≥ 0, got {value}")
        if self.exponential > 0 and (self.additive > 0 or self.proportional > 0):
            raise ValueError("residual_error: 'exponential' cannot be combined with "
                             "'additive' or 'proportional'")
        if self.additive == 0 and self.proportional == 0 and self.exponential == 0:
            raise ValueError("residual_error: every SD is zero; a likelihood needs some error")

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_spec(cls, spec: ResidualErrorSpec, dv_unit: str | None = None) -> ResidualError:
        """From the scenario section; with ``dv_unit`` the additive SD is converted to it."""
        additive, unit = 0.0, None
        if spec.additive is not None:
            additive, unit = float(spec.additive.magnitude), str(spec.additive.units)
        out = cls(additive=additive, proportional=spec.proportional or 0.0,
                  exponential=spec.exponential or 0.0, unit=unit)
        return out.in_unit(dv_unit) if dv_unit is not None else out

    @classmethod
    def parse(cls, section: Any, dv_unit: str | None = None, *,
              field: str = "residual_error") -> ResidualError:
        """From a mapping as written in a scenario; errors name ``field.<key>``."""
        if isinstance(section, ResidualErrorSpec):
            spec = section
        else:
            try:
                spec = ResidualErrorSpec.model_validate(section)
            except ValidationError as exc:
                from medtransport.scenario import format_validation_error

                raise ScenarioError(format_validation_error(exc, field, data=section)) from None
        try:
            return cls.from_spec(spec, dv_unit)
        except UnitError as exc:
            raise ScenarioError([(f"{field}.additive", str(exc))]) from None

    def in_unit(self, dv_unit: str) -> ResidualError:
        """This model with the additive SD converted to ``dv_unit`` (the unit of DV).

        Raises :class:`UnitError` when the additive SD's dimension is not DV's."""
        if self.additive == 0 or self.unit is None:
            return replace(self, unit=dv_unit)
        q = ureg.Quantity(self.additive, self.unit)
        target = ureg.parse_units(dv_unit)
        if q.dimensionality != target.dimensionality:
            raise UnitError(f"expected the unit of DV ({dv_unit}, dimension "
                            f"{target.dimensionality}), got {format_quantity(q)} of dimension "
                            f"{q.dimensionality}")
        return replace(self, additive=float(q.to(target).magnitude), unit=dv_unit)

    def to_spec(self) -> dict[str, Any]:
        """The scenario section that gives this model back."""
        out: dict[str, Any] = {}
        if self.additive > 0:
            out["additive"] = format_quantity(ureg.Quantity(self.additive,
                                                            self.unit or "dimensionless"))
        if self.proportional > 0:
            out["proportional"] = self.proportional
        if self.exponential > 0:
            out["exponential"] = self.exponential
        return out

    # ------------------------------------------------------------------ the SDs as parameters

    @property
    def kind(self) -> str:
        """``additive``, ``proportional``, ``combined`` or ``exponential``."""
        if self.exponential > 0:
            return "exponential"
        if self.additive > 0 and self.proportional > 0:
            return "combined"
        return "additive" if self.additive > 0 else "proportional"

    @property
    def names(self) -> tuple[str, ...]:
        """The SDs in use, in a fixed order (the estimated σ parameters)."""
        return tuple(n for n in ("additive", "proportional", "exponential")
                     if getattr(self, n) > 0)

    @property
    def values(self) -> FloatArray:
        return np.array([getattr(self, n) for n in self.names])

    def with_values(self, values: ArrayLike) -> ResidualError:
        """The same model with new SDs for :attr:`names` (in order)."""
        return replace(self, **{n: float(abs(v)) for n, v in
                                zip(self.names, np.atleast_1d(values), strict=True)})

    @property
    def log_scale(self) -> bool:
        """Whether the likelihood is formed on ln y (the exponential model)."""
        return self.exponential > 0

    # ------------------------------------------------------------------ the distribution

    def transform(self, x: ArrayLike) -> FloatArray:
        """The scale the likelihood is Gaussian on: y itself, or ln y (exponential)."""
        x = np.asarray(x, dtype=np.float64)
        if not self.log_scale:
            return x
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(np.where(x > 0, x, np.nan))

    def variance(self, pred: ArrayLike) -> FloatArray:
        """Var of the transformed observation at prediction ``pred``."""
        pred = np.asarray(pred, dtype=np.float64)
        if self.log_scale:
            return np.full(pred.shape, self.exponential ** 2)
        return self.additive ** 2 + (self.proportional * pred) ** 2

    def dvariance_dpred(self, pred: ArrayLike) -> FloatArray:
        """∂Var/∂f on the transformed scale (∂/∂ ln f for the exponential model: 0)."""
        pred = np.asarray(pred, dtype=np.float64)
        if self.log_scale:
            return np.zeros(pred.shape)
        return 2.0 * self.proportional ** 2 * pred

    def sd(self, pred: ArrayLike) -> FloatArray:
        """SD of the observation at ``pred``; for the exponential model the SD of ln y."""
        return np.sqrt(self.variance(pred))

    def simulate(self, pred: ArrayLike, rng: np.random.Generator | int | None) -> FloatArray:
        """Observations drawn about ``pred``; ``rng`` a Generator or a seed (reproducible)."""
        gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        pred = np.asarray(pred, dtype=np.float64)
        eps = gen.standard_normal(pred.shape)
        if self.log_scale:
            return pred * np.exp(self.exponential * eps)
        return pred + self.sd(pred) * eps

    def check_observations(self, dv: ArrayLike, where: Any = None) -> None:
        """Refuse a non-positive DV under a proportional or exponential model (its likelihood
        is undefined, or forces the prediction through zero). ``where(i)`` names record i."""
        if self.additive > 0:
            return
        dv = np.asarray(dv, dtype=np.float64)
        bad = np.flatnonzero(np.isfinite(dv) & (dv <= 0))
        if bad.size:
            i = int(bad[0])
            place = where(i) if where is not None else f"observation {i}"
            raise ScenarioError(
                f"{place}: DV = {dv[i]:g} is not positive, which a {self.kind} residual error "
                f"model cannot explain ({bad.size} such record(s)); use an additive or "
                "combined error model, or mark them below the LLOQ")

    def neg2_log_likelihood(self, dv: ArrayLike, pred: ArrayLike, *,
                            lloq: ArrayLike | None = None,
                            blq: ArrayLike | None = None) -> FloatArray:
        """−2 ln L per record (without log 2π); NaN DVs contribute 0.

        With ``blq`` (True where the record is below the limit) and ``lloq``, those records
        contribute the M3 term −2 ln Φ((T(LLOQ) − T(f))/SD) instead.
        """
        dv = np.asarray(dv, dtype=np.float64)
        pred = np.asarray(pred, dtype=np.float64)
        var = self.variance(pred)
        ty, tf = self.transform(dv), self.transform(pred)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.log(var) + (ty - tf) ** 2 / var
        if blq is not None:
            blq_mask = np.broadcast_to(np.asarray(blq, dtype=bool), out.shape)
            if lloq is None:
                raise ValueError("blq records need an lloq")
            limit = self.transform(np.broadcast_to(np.asarray(lloq, dtype=np.float64),
                                                   out.shape))
            from scipy.special import log_ndtr  # only for BLQ records; slow to import

            m3 = -2.0 * log_ndtr((limit - tf) / np.sqrt(var))
            out = np.where(blq_mask, m3, out)
            observed = blq_mask | np.isfinite(dv)
        else:
            observed = np.isfinite(dv)
        return np.where(observed, out, 0.0)

    def log_density(self, dv: ArrayLike, pred: ArrayLike) -> FloatArray:
        """ln p(y | f), the density of DV itself (with log 2π and, for the exponential model,
        the Jacobian −ln y of the log-normal transform); integrates to 1 over y."""
        dv = np.asarray(dv, dtype=np.float64)
        out = -0.5 * (self.neg2_log_likelihood(dv, pred) + math.log(2.0 * math.pi))
        if self.log_scale:
            with np.errstate(divide="ignore", invalid="ignore"):
                out = out - np.log(dv)
        return out

    def weighted_residual(self, dv: ArrayLike, pred: ArrayLike) -> FloatArray:
        """(T(y) − T(f))/SD: IWRES when ``pred`` is the individual prediction."""
        return (self.transform(dv) - self.transform(pred)) / self.sd(pred)

    def describe(self) -> str:
        parts = []
        if self.additive > 0:
            parts.append(f"additive SD {self.additive:.4g} {self.unit or ''}".rstrip())
        if self.proportional > 0:
            parts.append(f"proportional SD {self.proportional:.4g}")
        if self.exponential > 0:
            parts.append(f"exponential SD {self.exponential:.4g} (of ln DV)")
        return f"{self.kind} residual error: " + ", ".join(parts)


def quantity_sd(error: ResidualError) -> pint.Quantity | None:
    """The additive SD as a quantity (None without one)."""
    if error.additive == 0:
        return None
    return ureg.Quantity(error.additive, error.unit or "dimensionless")
