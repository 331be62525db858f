"""Tissue compartments and their exact signals (everything but Monte Carlo).

Each compartment has a volume fraction f_c; the tissue signal is S = S0·Σ_c f_c E_c (no
exchange between compartments, except inside a Monte Carlo lattice). Per compartment:

- ``free``: E = exp(−bD); ``tensor`` (ball/stick/zeppelin): E = exp(−b·ĝᵀDĝ) with
  D = D⊥I + (D∥ − D⊥)aaᵀ (REFERENCES §4, DTI);
- ``planes`` (normal n), ``cylinder`` (axis a), ``sphere``: the gradient component across the
  pore gives the restricted factor E_r (narrow-pulse series, Gaussian phase or matrix
  formalism); a component along free directions gives exp(−b_∥D), b_∥ = b·(ĝ·a)² for a
  cylinder and b·(1 − (ĝ·n)²) for planes (the two motions are independent).

The narrow-pulse method uses q = γGδ and Δ for every compartment (free: exp(−q²DΔ)).
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from medtransport.units import Q_, Qty
from medtransport_dwi import gaussian_phase, matrix_formalism, narrow_pulse
from medtransport_dwi.sequence import GAMMA, Measurement

__all__ = ["Compartment", "exact_attenuation", "frame"]

Fraction = Annotated[float, Field(gt=0, le=1)]
Vector = Annotated[list[float], Field(min_length=3, max_length=3)]
# Bounds that keep the series and spectra in float64 range (free water is 3 um^2/ms, a gas
# ~2e4; restricting geometries from a nanometre to a centimetre).
Diffusivity = Qty("um^2/ms", gt=0, le=1e5)
Size = Qty("um", ge=1e-3, le=1e4)


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    volume_fraction: Fraction = 1.0


def _check_vector(v: list[float] | None, what: str) -> None:
    if v is not None and (not all(math.isfinite(x) for x in v) or math.hypot(*v) == 0):
        raise ValueError(f"'{what}' must be a finite non-zero vector")


class Free(_Base):
    kind: Literal["free"] = "free"
    diffusivity: Diffusivity


class Tensor(_Base):
    """Axially symmetric Gaussian diffusion (a stick has zero perpendicular diffusivity)."""

    kind: Literal["tensor"] = "tensor"
    diffusivity_parallel: Diffusivity
    diffusivity_perpendicular: Qty("um^2/ms", ge=0, le=1e5)
    orientation: Vector = [0.0, 0.0, 1.0]

    @model_validator(mode="after")
    def _v(self) -> Tensor:
        _check_vector(self.orientation, "orientation")
        return self


class Planes(_Base):
    kind: Literal["planes"] = "planes"
    separation: Size
    diffusivity: Diffusivity
    orientation: Vector = [1.0, 0.0, 0.0]

    @model_validator(mode="after")
    def _v(self) -> Planes:
        _check_vector(self.orientation, "orientation")
        return self


class Cylinder(_Base):
    kind: Literal["cylinder"] = "cylinder"
    radius: Size
    diffusivity: Diffusivity
    orientation: Vector = [0.0, 0.0, 1.0]

    @model_validator(mode="after")
    def _v(self) -> Cylinder:
        _check_vector(self.orientation, "orientation")
        return self


class Sphere(_Base):
    kind: Literal["sphere"] = "sphere"
    radius: Size
    diffusivity: Diffusivity


class Lattice(_Base):
    """A periodic lattice of permeable cylinders or spheres in their extracellular space
    (Monte Carlo only): walkers start uniformly in a cell, so the intracellular share is the
    pores' volume fraction in the cell."""

    kind: Literal["sphere_lattice", "cylinder_lattice"]
    radius: Size
    spacing: Size
    diffusivity: Diffusivity
    diffusivity_outside: Diffusivity
    permeability: Qty("um/ms", ge=0) = Q_(0.0, "um/ms")
    orientation: Vector = [0.0, 0.0, 1.0]

    @model_validator(mode="after")
    def _v(self) -> Lattice:
        _check_vector(self.orientation, "orientation")
        if self.spacing <= 2 * self.radius:
            raise ValueError("'spacing' must exceed the pore diameter (2·radius)")
        return self

    def intra_fraction(self) -> float:
        r, s = float(self.radius.m_as("um")), float(self.spacing.m_as("um"))
        if self.kind == "sphere_lattice":
            return 4.0 / 3.0 * math.pi * r ** 3 / s ** 3
        return math.pi * r ** 2 / s ** 2


Compartment = Annotated[Free | Tensor | Planes | Cylinder | Sphere | Lattice,
                        Field(discriminator="kind")]

RESTRICTED = ("planes", "cylinder", "sphere")


def frame(axis: list[float], along: int) -> np.ndarray:
    """A rotation whose row ``along`` is the unit ``axis``: rows are the pore frame's axes in
    lab coordinates (planes: local x = normal; cylinders, tensors: local z = axis)."""
    a = np.asarray(axis, dtype=float)
    a = a / np.linalg.norm(a)
    helper = np.array([1.0, 0.0, 0.0]) if abs(a[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = np.cross(a, helper)
    u /= np.linalg.norm(u)
    v = np.cross(a, u)
    rows = [u, v, a] if along == 2 else [a, u, v]
    return np.stack(rows)


def size_of(c: Planes | Cylinder | Sphere) -> float:
    return float((c.separation if isinstance(c, Planes) else c.radius).m_as("m"))


def _split(c: Planes | Cylinder | Sphere, meas: Measurement) -> tuple[np.ndarray, np.ndarray]:
    """(gradient component across the pore, squared cosine along its free directions)."""
    g = meas.gradient
    if isinstance(c, Sphere):
        return np.linalg.norm(g, axis=1), np.zeros(meas.count)
    a = np.asarray(c.orientation, dtype=float)
    a /= np.linalg.norm(a)
    along = g @ a
    strength = meas.strength
    with np.errstate(invalid="ignore", divide="ignore"):
        cos2 = np.where(strength > 0, (along / np.where(strength > 0, strength, 1)) ** 2, 0.0)
    if isinstance(c, Planes):
        return np.abs(along), 1.0 - cos2
    return np.sqrt(np.maximum(strength ** 2 - along ** 2, 0.0)), cos2


def _gaussian(c: Free | Tensor, meas: Measurement, b: np.ndarray) -> np.ndarray:
    if isinstance(c, Free):
        d = np.full(meas.count, float(c.diffusivity.m_as("m^2/s")))
    else:
        a = np.asarray(c.orientation, dtype=float)
        a /= np.linalg.norm(a)
        cos2 = (meas.direction @ a) ** 2
        dpar = float(c.diffusivity_parallel.m_as("m^2/s"))
        dperp = float(c.diffusivity_perpendicular.m_as("m^2/s"))
        d = dperp + (dpar - dperp) * cos2
    return np.exp(-b * d).astype(complex)


def narrow_pulse_b(meas: Measurement) -> np.ndarray:
    """b of the narrow-pulse limit, q²Δ (q = γGδ)."""
    out = np.empty(meas.count)
    for i, k in enumerate(meas.shape_index):
        sh = meas.shapes[k]
        q = GAMMA * meas.strength[i] * sh.delta
        out[i] = q * q * sh.separation
    return out


def exact_attenuation(c: Compartment, meas: Measurement, method: str,
                      n_terms: dict[str, int] | None = None) -> np.ndarray:
    """E_c for every measurement by ``method`` (``matrix``, ``gaussian_phase`` or
    ``narrow_pulse``)."""
    if isinstance(c, Lattice):
        raise ValueError(f"a {c.kind} has no exact signal; use solver.method monte_carlo")
    b = narrow_pulse_b(meas) if method == "narrow_pulse" else meas.b_value
    if isinstance(c, Free | Tensor):
        return _gaussian(c, meas, b)
    across, free_cos2 = _split(c, meas)
    d = float(c.diffusivity.m_as("m^2/s"))
    size = size_of(c)
    out = np.exp(-b * free_cos2 * d).astype(complex)
    for k, shape in enumerate(meas.shapes):
        sel = meas.shape_index == k
        if not sel.any():
            continue
        if method == "narrow_pulse":
            q = GAMMA * across[sel] * shape.delta
            terms = (n_terms or {}).get(c.kind)
            if c.kind == "planes":
                r = narrow_pulse.planes(q, size, d, shape.separation, terms or 4000)
            elif c.kind == "cylinder":
                r = narrow_pulse.cylinder(q, size, d, shape.separation,
                                          terms or narrow_pulse.angular_orders(
                                              float(np.max(q)) * size))
            else:
                r = narrow_pulse.sphere(q, size, d, shape.separation,
                                        terms or narrow_pulse.angular_orders(
                                            float(np.max(q)) * size))
            out[sel] *= r
        elif method == "gaussian_phase":
            out[sel] *= gaussian_phase.restricted(c.kind, size, d, shape, across[sel])
        else:
            out[sel] *= matrix_formalism.restricted(c.kind, size, d, shape, across[sel])
    return out
