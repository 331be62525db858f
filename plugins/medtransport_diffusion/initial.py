"""Initial conditions: a declared amount placed on a grid so that Σ w·c equals it exactly.

- ``uniform``: concentration c0 = amount / |region| on the part of each cell inside the region
  (cell overlap computed exactly, so Σ w_i·c_i = c0·|region| = amount);
- ``point``: the whole amount in the cell holding the point, c = amount / w_cell;
- ``gaussian``: c_i ∝ exp(−|x_i − x0|²/(2σ²)) at cell centres, scaled so that Σ w_i·c_i = amount.

The amount's dimension follows the grid: [substance] (or [mass]) in a 3-D box or a sphere, per
unit length in a 2-D box or a cylinder, per unit area in a 1-D slab.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import pint
from pydantic import BaseModel, ConfigDict, Field, model_validator

from medtransport.domain import Grid
from medtransport.errors import ScenarioError
from medtransport.units import Qty, format_quantity, ureg

Position = Qty("m")


class InitialCondition(BaseModel):
    """The ``parameters.initial`` section."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["uniform", "point", "gaussian"]
    amount: Qty(ge=0)
    region: dict[str, list[Position]] | None = None
    center: list[Position] | None = None
    width: Qty("m", gt=0) | None = None

    @model_validator(mode="after")
    def _fields(self) -> InitialCondition:
        if self.kind == "gaussian" and self.width is None:
            raise ValueError("a gaussian initial condition needs 'width' (its standard "
                             "deviation)")
        if self.region is not None:
            for axis, bounds in self.region.items():
                if len(bounds) != 2 or not bounds[0] < bounds[1]:
                    raise ValueError(f"region.{axis} needs [lower, upper] with lower < upper")
        return self


def amount_units(grid: Grid, base: str) -> pint.Unit:
    """The unit of an amount on ``grid`` for a base amount unit (mol or kg)."""
    return ureg.parse_units(base) * ureg.parse_units("m**3") ** -1 * \
        ureg.parse_units(grid.weights_units)


def amount_base(amount: pint.Quantity, grid: Grid, path: str) -> str:
    """``"mol"`` or ``"kg"``: which kind of amount was declared; an error names the expected
    dimension for this grid otherwise."""
    for base in ("mol", "kg"):
        if amount.dimensionality == amount_units(grid, base).dimensionality:
            return base
    per = {"m": "per unit face area (a 1-D slab)", "m**2": "per unit length (a 2-D box or a "
           "cylinder)", "m**3": "in the whole body"}[grid.weights_units]
    expected = amount_units(grid, "mol").dimensionality
    raise ScenarioError([(path, f"expected an amount {per}, of dimension {expected} (e.g. "
                                f"{1 * amount_units(grid, 'mol'):~C}) or the same with mass, "
                                f"got {format_quantity(amount)!r}")])


def _overlap(edges: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Length of each cell [e_i, e_{i+1}] inside [lo, hi]."""
    return np.clip(np.minimum(edges[1:], hi) - np.maximum(edges[:-1], lo), 0.0, None)


def _radial_overlap(grid: Grid, lo: float, hi: float) -> np.ndarray:
    """Measure (same measure as the grid weights) of each shell inside [lo, hi]."""
    e = grid.edges(0)
    a, b = np.maximum(e[:-1], lo), np.minimum(e[1:], hi)
    b = np.maximum(a, b)
    if grid.geometry == "cylinder":
        return math.pi * (b ** 2 - a ** 2)
    return 4.0 * math.pi / 3.0 * (b ** 3 - a ** 3)


def region_fraction(grid: Grid, region: dict[str, list[pint.Quantity]] | None,
                    path: str) -> np.ndarray:
    """The fraction of each cell inside ``region`` (axis → [lower, upper]; a missing axis
    means its whole extent), computed exactly from the cell edges."""
    region = region or {}
    unknown = sorted(set(region) - set(grid.dims))
    if unknown:
        raise ScenarioError([(f"{path}.{unknown[0]}", f"no such axis; this grid has "
                                                     f"{', '.join(grid.dims)}")])
    bounds = {d: (grid.lower[i], grid.upper[i]) for i, d in enumerate(grid.dims)}
    limits = {d: tuple(float(q.m_as("m")) for q in region[d]) if d in region else bounds[d]
              for d in grid.dims}
    if grid.radial:
        measure = _radial_overlap(grid, *limits["r"])
    else:
        parts = [_overlap(grid.edges(i), *limits[d]) for i, d in enumerate(grid.dims)]
        measure = parts[0]
        for p in parts[1:]:
            measure = np.multiply.outer(measure, p)
    fraction = measure / grid.weights
    if not float(fraction.sum()) > 0:
        raise ScenarioError([(path, "the region does not overlap the domain")])
    return fraction


def place(initial: InitialCondition, grid: Grid, field_units: str,
          path: str = "parameters.initial") -> np.ndarray:
    """The initial concentration field, in ``field_units`` (mol/m³ or kg/m³)."""
    base = amount_base(initial.amount, grid, f"{path}.amount")
    amount = float(initial.amount.m_as(amount_units(grid, base)))
    if ureg.parse_units(field_units) != ureg.parse_units(f"{base}/m**3"):
        raise ValueError("field units do not match the amount's kind")
    if initial.kind == "uniform":
        fraction = region_fraction(grid, initial.region, f"{path}.region")
        total = float((fraction * grid.weights).sum())
        return amount / total * fraction
    if initial.kind == "point" or initial.kind == "gaussian":
        if initial.center is None:
            center = [0.0 if grid.radial else 0.5 * (grid.lower[i] + grid.upper[i])
                      for i in range(grid.ndim)]
        else:
            if len(initial.center) != grid.ndim:
                raise ScenarioError([(f"{path}.center", f"expected {grid.ndim} coordinates, got "
                                                        f"{len(initial.center)}")])
            center = [float(c.m_as("m")) for c in initial.center]
        for i, c in enumerate(center):
            lo, hi = grid.lower[i], grid.upper[i]
            if not (lo <= c <= hi) and not (grid.radial and c == 0.0):
                raise ScenarioError([(f"{path}.center", f"coordinate {c:g} m lies outside the "
                                                        f"domain [{lo:g}, {hi:g}] m")])
        field = np.zeros(grid.cells)
        if initial.kind == "point":
            idx = tuple(min(int(np.searchsorted(grid.edges(i), c, side="right")) - 1,
                            grid.cells[i] - 1) for i, c in enumerate(center))
            idx = tuple(max(0, j) for j in idx)
            field[idx] = amount / grid.weights[idx]
            return field
        assert initial.width is not None
        sigma = float(initial.width.m_as("m"))
        r2 = np.zeros(grid.cells)
        for i, c in enumerate(center):
            shape = [1] * grid.ndim
            shape[i] = grid.cells[i]
            r2 = r2 + ((grid.centers(i) - c) ** 2).reshape(shape)
        profile = np.exp(-r2 / (2 * sigma ** 2))
        norm = float((profile * grid.weights).sum())
        if not norm > 0:
            raise ScenarioError([(f"{path}.width", "the Gaussian is too narrow for this grid")])
        return amount / norm * profile
    raise ScenarioError([(f"{path}.kind", f"unknown kind {initial.kind!r}")])


class Source(BaseModel):
    """A zero-order source (``rate`` per unit volume) over a region, e.g. a releasing depot."""

    model_config = ConfigDict(extra="forbid")

    rate: Qty()
    region: dict[str, list[Position]] | None = Field(default=None)
