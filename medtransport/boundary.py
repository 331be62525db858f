"""Boundaries: what happens at each face of a domain, and the flux each lets through.

A boundary is specified per face (``x-``, ``x+``, …, ``r+``; see :attr:`Grid.faces`) in the
scenario's ``boundaries`` section and checked against the field it bounds: a Dirichlet value has
the field's dimension, a Neumann flux the flux's, a transfer coefficient flux/field.

Every non-periodic condition reduces, for a cell-centred finite-volume cell whose centre lies a
distance ``h`` from the face and whose transport coefficient is ``D`` (diffusivity, or thermal
conductivity for heat), to an *outward* flux per unit face area that is affine in the cell value
``u_b``:

    J_out = α·u_b − β

- no-flux (reflecting):           α = 0,                  β = 0
- Dirichlet ``value`` g:          α = D/h,                β = α·g
- absorbing:                      Dirichlet with g = 0
- Neumann ``flux`` q (inward):    α = 0,                  β = q
- Robin/convective (H, u_∞):      α = 1/(h/D + 1/H),      β = α·u_∞
  (the half-cell conduction and the surface transfer act as resistances in series)
- permeable membrane (P, u_out):  as Robin with H = P, u_∞ = u_out
- clearance (compartments only):  outflow rate = CL·u (a volume per time)
- periodic:                        couples the opposite face; no flux leaves the domain.

The numerics use ``(α, β)`` both to assemble the operator and to report, at every step, the flux
each face lets through — so the ledger's outflow is a per-face sum the auditor can read.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Annotated, Literal

import pint
from pydantic import BaseModel, ConfigDict, Field

from medtransport.errors import ScenarioError, UnitError
from medtransport.units import Qty, to_canonical, ureg

__all__ = [
    "Absorbing",
    "BoundaryCondition",
    "BoundarySpec",
    "Clearance",
    "Dirichlet",
    "Neumann",
    "NoFlux",
    "Periodic",
    "Permeable",
    "Robin",
    "resolve_boundaries",
]

AnyQuantity = Qty()


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NoFlux(_Spec):
    """Reflecting wall: nothing crosses."""

    kind: Literal["no_flux"]


class Dirichlet(_Spec):
    """The field is held at ``value`` on the face."""

    kind: Literal["dirichlet"]
    value: AnyQuantity


class Absorbing(_Spec):
    """A perfect sink: the field is zero on the face and whatever reaches it leaves."""

    kind: Literal["absorbing"]


class Neumann(_Spec):
    """A given flux ``flux`` *into* the domain through the face (negative: out of it)."""

    kind: Literal["neumann"]
    flux: AnyQuantity


class Robin(_Spec):
    """Convective transfer: outward flux = transfer_coefficient · (u_surface − ambient)."""

    kind: Literal["robin"]
    transfer_coefficient: AnyQuantity
    ambient: AnyQuantity


class Permeable(_Spec):
    """A membrane: outward flux = permeability · (u_surface − outside)."""

    kind: Literal["permeable"]
    permeability: AnyQuantity
    outside: AnyQuantity


class Periodic(_Spec):
    """The face is joined to the opposite one; both must say periodic."""

    kind: Literal["periodic"]


class Clearance(_Spec):
    """Well-mixed compartments only: outflow rate = clearance · concentration."""

    kind: Literal["clearance"]
    clearance: Qty("L/h", ge=0)


BoundarySpec = Annotated[
    NoFlux | Dirichlet | Absorbing | Neumann | Robin | Permeable | Periodic | Clearance,
    Field(discriminator="kind"),
]


@dataclass(frozen=True)
class BoundaryCondition:
    """A boundary resolved against its field: magnitudes in the field's canonical units.

    ``value``/``ambient`` in field units, ``flux`` in flux units, ``coefficient`` in
    flux/field units, ``clearance`` in L/h.
    """

    face: str
    kind: str
    value: float = 0.0
    flux: float = 0.0
    coefficient: float = 0.0
    clearance: float = 0.0
    field_units: str = ""
    flux_units: str = ""

    @property
    def lets_through(self) -> bool:
        """Whether anything can leave (or enter) the domain through this face."""
        return self.kind not in ("no_flux", "periodic")

    def flux_coefficients(self, conductance: float) -> tuple[float, float]:
        """``(α, β)`` of the outward flux ``J = α·u_b − β`` for a half cell of conductance
        ``D/h`` (flux/field units)."""
        if self.kind in ("no_flux", "periodic"):
            return 0.0, 0.0
        if self.kind in ("dirichlet", "absorbing"):
            return conductance, conductance * self.value
        if self.kind == "neumann":
            return 0.0, self.flux
        if self.kind in ("robin", "permeable"):
            if self.coefficient == 0.0:
                return 0.0, 0.0
            alpha = 1.0 / (1.0 / conductance + 1.0 / self.coefficient)
            return alpha, alpha * self.value
        raise ValueError(f"{self.kind} has no finite-volume face flux")

    def describe(self) -> str:
        from medtransport.display import pretty

        h = f"({self.flux_units})/({self.field_units})" \
            if self.field_units and self.flux_units else ""
        h = f"{ureg.parse_units(h):~P}" if h else ""
        # the report's "what may leave" is read by people: mol/m³, not mol/m**3
        u, f = pretty(self.field_units or ""), pretty(self.flux_units or "")
        return {
            "no_flux": "no flux (reflecting)",
            "dirichlet": f"held at {self.value:g} {u}",
            "absorbing": "absorbing (held at 0)",
            "neumann": f"given inward flux {self.flux:g} {f}",
            "robin": f"convective, transfer coefficient {self.coefficient:g} {h}, ambient "
                     f"{self.value:g} {u}",
            "permeable": f"permeable, permeability {self.coefficient:g} {h}, outside "
                         f"{self.value:g} {u}",
            "periodic": "periodic",
            "clearance": f"clearance {self.clearance:g} L/h",
        }[self.kind]


def _convert(q: pint.Quantity, unit: str, path: str, what: str) -> float:
    try:
        return float(to_canonical(q, unit, field=path).magnitude)
    except UnitError:
        expected = ureg.parse_units(unit).dimensionality
        raise ScenarioError([(path, f"expected {what} of dimension {expected} (e.g. {unit}), "
                                    f"got {q:~C} of dimension {q.dimensionality}")]) from None


def resolve_boundaries(specs: dict[str, BoundarySpec], faces: tuple[str, ...], *,
                       field_units: str, flux_units: str,
                       default: str = "no_flux",
                       allowed: frozenset[str] | None = None) -> dict[str, BoundaryCondition]:
    """Check the scenario's boundary specs against a domain's faces and its field's units.

    Faces the scenario leaves out get ``default``. Errors name ``boundaries.<face>``.
    ``allowed`` restricts the kinds a model supports.
    """
    problems: list[tuple[str, str]] = []
    unknown = sorted(set(specs) - set(faces))
    for face in unknown:
        problems.append((f"boundaries.{face}", f"no such face; this domain has faces "
                                               f"{', '.join(faces)}"))
    coeff_units = f"({flux_units})/({field_units})"
    out: dict[str, BoundaryCondition] = {}
    for face in faces:
        spec = specs.get(face)
        path = f"boundaries.{face}"
        kind = spec.kind if spec is not None else default
        if allowed is not None and kind not in allowed:
            problems.append((f"{path}.kind", f"this model supports {', '.join(sorted(allowed))}; "
                                             f"got {kind!r}"))
            continue
        try:
            if spec is None or isinstance(spec, NoFlux):
                out[face] = BoundaryCondition(face, kind)
            elif isinstance(spec, Dirichlet):
                out[face] = BoundaryCondition(face, "dirichlet", value=_convert(
                    spec.value, field_units, f"{path}.value", "a field value"))
            elif isinstance(spec, Absorbing | Periodic):
                out[face] = BoundaryCondition(face, spec.kind)
            elif isinstance(spec, Neumann):
                out[face] = BoundaryCondition(face, "neumann", flux=_convert(
                    spec.flux, flux_units, f"{path}.flux", "a flux"))
            elif isinstance(spec, Robin):
                out[face] = BoundaryCondition(
                    face, "robin",
                    coefficient=_convert(spec.transfer_coefficient, coeff_units,
                                         f"{path}.transfer_coefficient", "a transfer coefficient"),
                    value=_convert(spec.ambient, field_units, f"{path}.ambient",
                                   "an ambient field value"))
            elif isinstance(spec, Permeable):
                out[face] = BoundaryCondition(
                    face, "permeable",
                    coefficient=_convert(spec.permeability, coeff_units,
                                         f"{path}.permeability", "a permeability"),
                    value=_convert(spec.outside, field_units, f"{path}.outside",
                                   "an outside field value"))
            elif isinstance(spec, Clearance):
                if not faces or any(f[0] in "xyzr" for f in faces):
                    raise ScenarioError([(path, "a clearance applies to well-mixed "
                                                "compartments, not to a grid face")])
                out[face] = BoundaryCondition(face, "clearance",
                                              clearance=float(spec.clearance.m_as("L/h")))
            else:  # pragma: no cover - the discriminated union is exhaustive
                raise ScenarioError([(path, f"unknown boundary kind {kind!r}")])
            if out[face].coefficient < 0:
                problems.append((path, "a transfer coefficient or permeability cannot be "
                                       "negative"))
        except ScenarioError as exc:
            problems.extend(exc.problems)
    out = {face: replace(bc, field_units=field_units, flux_units=flux_units)
           for face, bc in out.items()}
    # A periodic face needs a periodic partner.
    for face, bc in out.items():
        if bc.kind == "periodic":
            partner = face[0] + ("+" if face.endswith("-") else "-")
            if face[0] == "r":
                problems.append((f"boundaries.{face}", "a radial face cannot be periodic"))
            elif out.get(partner) is None or out[partner].kind != "periodic":
                problems.append((f"boundaries.{face}", f"periodic needs {partner} periodic too"))
    if problems:
        raise ScenarioError(problems)
    return out
