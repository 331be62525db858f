"""Domains: where the counted quantity lives, and how to add it up.

Every domain knows its integration weights ``w`` so that the framework can compute the stored
amount of any state itself, independently of the model's own bookkeeping:

    stored(t) = Σ_i w_i · u_i(t)

- :class:`Compartments` — well-mixed volumes; ``w_i = V_i`` (states are concentrations) or
  ``w_i = 1`` (states are amounts).
- :class:`Grid` — finite-volume cells in 1–3-D Cartesian boxes, or radially symmetric cylinders
  and spheres; ``w_i`` is the cell measure: a length (1-D slab, amounts per unit face area),
  an area (2-D, per unit depth; a cylinder, per unit axial length, ``π(r_o² − r_i²)``) or a
  volume (3-D box; sphere shell ``4π(r_o³ − r_i³)/3``).
- :class:`Particles` — walkers each carrying an equal share of the amount; stored = number of
  walkers still inside × amount per walker.

The weights carry units, so the dimension of a stored amount follows from the field's unit: a
concentration in mol/m³ on a 1-D grid integrates to mol/m².
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import numpy as np
import pint
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from medtransport.errors import ScenarioError
from medtransport.numerics import arena
from medtransport.units import Q_, Qty, ureg

__all__ = ["MAX_CELLS", "Compartments", "Domain", "DomainSpec", "Grid", "Particles",
           "grid_of"]

#: The largest grid the framework will allocate (about 1.6 GB per float64 state).
MAX_CELLS = 200_000_000

CARTESIAN_AXES = ("x", "y", "z")


class Domain:
    """Base class: a set of places with integration weights."""

    dims: tuple[str, ...]
    weights_units: str

    @property
    def weights(self) -> np.ndarray:
        raise NotImplementedError

    @property
    def shape(self) -> tuple[int, ...]:
        return self.weights.shape

    def coords(self) -> dict[str, tuple[tuple[str, ...], np.ndarray, dict[str, str]]]:
        """xarray coordinates ``{name: (dims, values, attrs)}`` with units and long names."""
        return {}

    def integrate(self, values: np.ndarray, units: str | pint.Unit) -> pint.Quantity:
        """Σ w·u over the trailing domain dimensions of ``values`` (leading dims are kept).

        NaN values propagate, so a non-finite state can never look balanced.
        """
        values = np.asarray(values, dtype=float)
        nd = len(self.shape)
        if values.shape[values.ndim - nd:] != self.shape:
            raise ValueError(f"state of shape {values.shape} does not end in the domain's "
                             f"shape {self.shape}")
        weights = np.broadcast_to(self.weights, self.shape).reshape(-1)
        if weights.size <= 8:
            # a few compartments, often a strided slice of the states: matmul reads them in
            # place (a matrix-vector product per leading index), where tensordot would first
            # copy them; one pass, measured 2.5× faster than summing the slices
            flat = values.reshape(*values.shape[:values.ndim - nd], -1)
            # leading axes in memory order, so the result is laid out like the states (a
            # time-major solver's output stays time-major for the sums that follow)
            lead = flat.ndim - 1
            order = sorted(range(lead), key=lambda a: -abs(flat.strides[a]))
            ordered = flat.transpose(*order, lead)
            # into a population batch's reused memory (numerics.arena), as numpy's own would be
            total = np.matmul(ordered, weights, out=arena.empty(ordered.shape[:-1]))
            total = total.transpose(np.argsort(order))
        else:
            # one contraction, no (…, domain) temporary: this runs over every state of a grid
            total = np.tensordot(values, np.broadcast_to(self.weights, self.shape), axes=nd)
        return Q_(total, ureg.parse_units(str(units)) * ureg.parse_units(self.weights_units))

    def describe(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class Compartments(Domain):
    """Well-mixed compartments with volumes (in L) or, with ``volumes=None``, amount states."""

    names: tuple[str, ...]
    volumes: tuple[float, ...] | None = None
    volume_units: str = "L"
    dims: tuple[str, ...] = ("compartment",)

    def __post_init__(self) -> None:
        if self.volumes is not None and len(self.volumes) != len(self.names):
            raise ValueError("one volume per compartment is needed")

    @property
    def weights(self) -> np.ndarray:
        if self.volumes is None:
            return np.ones(len(self.names))
        return np.asarray(self.volumes, dtype=float)

    @property
    def weights_units(self) -> str:  # type: ignore[override]
        return "dimensionless" if self.volumes is None else self.volume_units

    def coords(self) -> dict[str, Any]:
        out: dict[str, Any] = {"compartment": (("compartment",), np.asarray(self.names),
                                               {"long_name": "compartment"})}
        if self.volumes is not None:
            out["volume"] = (("compartment",), self.weights,
                             {"units": self.volume_units, "long_name": "compartment volume"})
        return out

    def describe(self) -> str:
        if self.volumes is None:
            return f"{len(self.names)} well-mixed compartments ({', '.join(self.names)})"
        parts = [f"{n} {v:g} {self.volume_units}" for n, v in zip(self.names, self.volumes,
                                                                    strict=True)]
        return f"{len(self.names)} well-mixed compartments ({', '.join(parts)})"


@dataclass(frozen=True)
class Grid(Domain):
    """A cell-centred finite-volume grid; all lengths in metres.

    ``geometry`` is ``"cartesian"`` (1–3 axes named x, y, z) or ``"cylinder"``/``"sphere"`` (one
    radial axis r from ``lower[0]`` — an inner radius, 0 for a full cylinder or ball — to
    ``upper[0]``).
    """

    geometry: Literal["cartesian", "cylinder", "sphere"]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    cells: tuple[int, ...]
    _cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        n = len(self.cells)
        if not (len(self.lower) == len(self.upper) == n):
            raise ValueError("lower, upper and cells need one entry per axis")
        if self.geometry == "cartesian" and not 1 <= n <= 3:
            raise ValueError("a Cartesian grid has 1 to 3 axes")
        if self.geometry != "cartesian" and n != 1:
            raise ValueError(f"a radially symmetric {self.geometry} has one (radial) axis")
        if any(c < 1 for c in self.cells):
            raise ValueError("every axis needs at least one cell")
        if any(not (hi > lo) for lo, hi in zip(self.lower, self.upper, strict=True)):
            raise ValueError("every axis needs upper > lower")
        if self.geometry != "cartesian" and self.lower[0] < 0:
            raise ValueError("an inner radius cannot be negative")

    @property
    def dims(self) -> tuple[str, ...]:  # type: ignore[override]
        return CARTESIAN_AXES[: len(self.cells)] if self.geometry == "cartesian" else ("r",)

    @property
    def ndim(self) -> int:
        return len(self.cells)

    @property
    def radial(self) -> bool:
        return self.geometry != "cartesian"

    @property
    def spacing(self) -> tuple[float, ...]:
        return tuple((hi - lo) / n for lo, hi, n in zip(self.lower, self.upper, self.cells,
                                                         strict=True))

    def edges(self, axis: int) -> np.ndarray:
        return np.linspace(self.lower[axis], self.upper[axis], self.cells[axis] + 1)

    def centers(self, axis: int) -> np.ndarray:
        e = self.edges(axis)
        return 0.5 * (e[1:] + e[:-1])

    @property
    def weights_units(self) -> str:  # type: ignore[override]
        if self.geometry == "sphere":
            return "m**3"
        if self.geometry == "cylinder":
            return "m**2"
        return {1: "m", 2: "m**2", 3: "m**3"}[self.ndim]

    @property
    def weights(self) -> np.ndarray:
        """Cell measures (length, area or volume; see the module docstring)."""
        if "w" not in self._cache:
            if self.geometry == "cartesian":
                w = np.full(self.cells, math.prod(self.spacing))
            else:
                e = self.edges(0)
                if self.geometry == "cylinder":
                    w = math.pi * (e[1:] ** 2 - e[:-1] ** 2)
                else:
                    w = 4.0 * math.pi / 3.0 * (e[1:] ** 3 - e[:-1] ** 3)
            w.setflags(write=False)
            self._cache["w"] = w
        return self._cache["w"]

    def face_area(self, axis: int) -> np.ndarray | float:
        """Measure of the cell faces normal to ``axis``.

        Cartesian: the product of the other spacings (a scalar; 1 for a 1-D slab).
        Radial: at each of the ``cells + 1`` edges, 2πr (cylinder, per unit length) or 4πr².
        """
        if self.geometry == "cartesian":
            return math.prod(h for i, h in enumerate(self.spacing) if i != axis)
        e = self.edges(0)
        return 2.0 * math.pi * e if self.geometry == "cylinder" else 4.0 * math.pi * e ** 2

    @property
    def face_area_units(self) -> str:
        if self.geometry == "sphere":
            return "m**2"
        if self.geometry == "cylinder":
            return "m"
        return {1: "dimensionless", 2: "m", 3: "m**2"}[self.ndim]

    @property
    def faces(self) -> tuple[str, ...]:
        """Names of the boundary faces: ``x-``, ``x+``, … or ``r-`` (only with an inner
        radius) and ``r+``."""
        if self.radial:
            return ("r-", "r+") if self.lower[0] > 0 else ("r+",)
        return tuple(f"{a}{s}" for a in self.dims for s in "-+")

    def face_total_area(self, face: str) -> float:
        """Total measure of one boundary face (units: :attr:`face_area_units`)."""
        axis = self.dims.index(face[0])
        if self.radial:
            area = self.face_area(0)
            return float(area[0] if face.endswith("-") else area[-1])
        other = [self.upper[i] - self.lower[i] for i in range(self.ndim) if i != axis]
        return math.prod(other)

    def coords(self) -> dict[str, Any]:
        names = {"x": "position x", "y": "position y", "z": "position z", "r": "radius"}
        return {d: ((d,), self.centers(i), {"units": "m", "long_name": names[d]})
                for i, d in enumerate(self.dims)}

    def describe(self) -> str:
        from medtransport.display import length  # 1.5 mm, not 0.0015 m

        if self.radial:
            inner = f" with inner radius {length(self.lower[0])}" if self.lower[0] > 0 else ""
            return (f"radially symmetric {self.geometry} of radius {length(self.upper[0])}"
                    f"{inner}, {self.cells[0]} shells of {length(self.spacing[0])}")
        size = " × ".join(length(hi - lo) for lo, hi in zip(self.lower, self.upper,
                                                            strict=True))
        cells = " × ".join(map(str, self.cells))
        return f"{self.ndim}-D box {size}, {cells} cells"


@dataclass(frozen=True)
class Particles(Domain):
    """``count`` walkers in ``ndim`` dimensions, each carrying ``amount_per_walker``."""

    count: int
    ndim: int
    amount_per_walker: float
    amount_units: str
    dims: tuple[str, ...] = ("walker",)

    @property
    def weights(self) -> np.ndarray:
        return np.full(self.count, self.amount_per_walker)

    @property
    def weights_units(self) -> str:  # type: ignore[override]
        return self.amount_units

    def describe(self) -> str:
        return (f"{self.count} walkers in {self.ndim}-D, {self.amount_per_walker:g} "
                f"{self.amount_units} each")


# --------------------------------------------------------------------------- scenario section

#: Lengths of a domain: from a nanometre (a membrane) to 10 m (a whole body with room to
#: spare); outside that the cell volumes and face areas over- or underflow in float64.
Length = Qty("m", ge=1e-9, le=10.0)


def _not_bool(value: Any) -> Any:
    # pydantic's lax mode reads `true` as 1; a boolean is never a count.
    if isinstance(value, bool):
        raise ValueError(f"expected a whole number, got the boolean {value}")
    return value


#: Metadata for whole-number fields (cells, seeds, repeat counts) that refuses booleans; put it
#: after the ``Field`` constraints, or the JSON Schema loses ``minimum``/``maximum``.
NotBool = BeforeValidator(_not_bool)


class DomainSpec(BaseModel):
    """The ``domain`` section of a scenario.

    ``shape: box`` takes ``size`` (one length per axis) and ``cells``; ``cylinder``/``sphere``
    take ``radius`` (and optionally ``inner_radius``) and ``cells`` (one number, radial);
    ``compartments`` takes ``compartments`` (names) and optional ``volumes``.
    """

    model_config = ConfigDict(extra="forbid")

    shape: Literal["box", "cylinder", "sphere", "compartments"]
    size: Annotated[list[Length], Field(min_length=1, max_length=3)] | None = None
    origin: list[Qty("m", ge=-10.0, le=10.0)] | None = None
    radius: Length | None = None
    inner_radius: Qty("m", ge=0, le=10.0) | None = None
    cells: Annotated[list[Annotated[int, Field(ge=1), NotBool]], Field(min_length=1,
                                                                       max_length=3)] | None = None
    compartments: list[str] | None = None
    volumes: list[Qty("L", gt=0, le=1e6)] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> DomainSpec:
        if self.shape == "box":
            if self.size is None or self.cells is None:
                raise ValueError("a box needs 'size' (one length per axis) and 'cells'")
            if len(self.size) != len(self.cells):
                raise ValueError(f"'size' has {len(self.size)} axes but 'cells' has "
                                 f"{len(self.cells)}")
            if self.origin is not None and len(self.origin) != len(self.size):
                raise ValueError("'origin' needs one length per axis")
        elif self.shape in ("cylinder", "sphere"):
            if self.radius is None or self.cells is None:
                raise ValueError(f"a {self.shape} needs 'radius' and 'cells'")
            if len(self.cells) != 1:
                raise ValueError(f"a radially symmetric {self.shape} takes one number of "
                                 f"(radial) cells, got {len(self.cells)}")
            if self.inner_radius is not None and self.inner_radius >= self.radius:
                raise ValueError("'inner_radius' must be smaller than 'radius'")
        elif self.shape == "compartments":
            if not self.compartments:
                raise ValueError("'compartments' needs a list of names")
            if self.volumes is not None and len(self.volumes) != len(self.compartments):
                raise ValueError("'volumes' needs one volume per compartment")
        if self.cells is not None and math.prod(self.cells) > MAX_CELLS:
            raise ValueError(f"{math.prod(self.cells)} cells is more than the {MAX_CELLS} "
                             "this machine can hold")
        return self

    def build(self) -> Domain:
        """The :class:`Domain` this section describes (lengths converted to metres)."""
        try:
            if self.shape == "box":
                assert self.size is not None and self.cells is not None
                lo = [0.0] * len(self.size) if self.origin is None else \
                    [float(o.m_as("m")) for o in self.origin]
                hi = [a + float(s.m_as("m")) for a, s in zip(lo, self.size, strict=True)]
                return Grid("cartesian", tuple(lo), tuple(hi), tuple(self.cells))
            if self.shape in ("cylinder", "sphere"):
                assert self.radius is not None and self.cells is not None
                inner = 0.0 if self.inner_radius is None else float(self.inner_radius.m_as("m"))
                return Grid(self.shape, (inner,), (float(self.radius.m_as("m")),),
                            (self.cells[0],))
            assert self.compartments is not None
            vols = None if self.volumes is None else tuple(float(v.m_as("L"))
                                                           for v in self.volumes)
            return Compartments(tuple(self.compartments), vols)
        except ValueError as exc:
            raise ScenarioError([("domain", str(exc))]) from None


def grid_of(spec: DomainSpec | None, model_id: str) -> Grid:
    """The grid of a scenario's ``domain`` section for a model that needs a box, cylinder or
    sphere; a missing section or compartments are refused naming the field."""
    if spec is None:
        raise ScenarioError([("domain", f"{model_id} needs a domain (a box, cylinder or "
                                        "sphere)")])
    grid = spec.build()
    if not isinstance(grid, Grid):
        raise ScenarioError([("domain.shape", f"{model_id} needs a box, cylinder or sphere, "
                                              "not compartments")])
    return grid
