"""Diffusion-encoding sequences: pulsed gradients and general waveforms, b-values, protocols.

The *effective* gradient g(t) = G·f(t)·n̂ (refocusing pulses folded in as a sign change) has a
shape f made of constant pieces. Its spin phase for a path x(t) is φ = γ∫g(t)·x(t)dt, and with
F(t) = ∫₀ᵗ f (REFERENCES §4; Stejskal & Tanner, J Chem Phys 42:288, 1965)

    b = γ²G² ∫ F(t)² dt,                           ∫ f = 0 (echo condition)
    PGSE (f = +1 on [0, δ], −1 on [Δ, Δ + δ]):   b = γ²G²δ²(Δ − δ/3),   q = γGδ.

γ is the proton gyromagnetic ratio, CODATA 2022: 2.675 221 8708 × 10⁸ rad s⁻¹ T⁻¹ (Mohr et al.,
Rev Mod Phys 97:025002, 2025). ∫F² is integrated exactly for piecewise-constant f (F is then
piecewise linear: ∫ over a piece of length h from F₀ to F₁ is h(F₀² + F₀F₁ + F₁²)/3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from medtransport.domain import NotBool
from medtransport.units import Qty

__all__ = ["GAMMA", "Measurement", "Protocol", "Shape", "fibonacci_directions",
           "pgse_b_value", "pgse_gradient"]

#: Proton gyromagnetic ratio, rad s⁻¹ T⁻¹ (CODATA 2022).
GAMMA = 2.6752218708e8


def pgse_b_value(gradient: float, delta: float, separation: float) -> float:
    """b = γ²g²δ²(Δ − δ/3) in s/m² (SI inputs: T/m, s, s)."""
    return GAMMA ** 2 * gradient ** 2 * delta ** 2 * (separation - delta / 3.0)


def pgse_gradient(b_value: float, delta: float, separation: float) -> float:
    """g = √(b / (γ²δ²(Δ − δ/3))) in T/m, the inverse of :func:`pgse_b_value` (SI inputs)."""
    return float(np.sqrt(b_value / (GAMMA ** 2 * delta ** 2 * (separation - delta / 3.0))))


@dataclass(frozen=True)
class Shape:
    """A piecewise-constant effective-gradient shape f: ``durations`` (s) and ``levels``
    (dimensionless, |f| ≤ 1); ``delta``/``separation`` for a pulsed pair (else NaN)."""

    durations: tuple[float, ...]
    levels: tuple[float, ...]
    delta: float = math.nan
    separation: float = math.nan

    @property
    def duration(self) -> float:
        return float(sum(self.durations))

    @property
    def is_pgse(self) -> bool:
        return not math.isnan(self.delta)

    def moment(self) -> float:
        """∫ f dt (zero for a spin echo)."""
        return float(np.dot(self.durations, self.levels))

    def integral_f_squared(self) -> float:
        """∫ F(t)² dt, F = ∫ f, exactly for the constant pieces (s³)."""
        total, f0 = 0.0, 0.0
        for h, level in zip(self.durations, self.levels, strict=True):
            f1 = f0 + level * h
            total += h * (f0 * f0 + f0 * f1 + f1 * f1) / 3.0
            f0 = f1
        return total

    def step_integrals(self, dt: float, n_steps: int) -> np.ndarray:
        """∫ f over each step [k·dt, (k + 1)·dt) of a walk (zero after the shape ends)."""
        edges = np.concatenate([[0.0], np.cumsum(self.durations)])
        grid = np.arange(n_steps + 1) * dt
        # The integral of f from 0 to t is piecewise linear: interpolate it at the step edges.
        cumulative = np.concatenate([[0.0], np.cumsum(np.asarray(self.durations) *
                                                      np.asarray(self.levels))])
        at = np.interp(grid, edges, cumulative, right=cumulative[-1])
        return np.diff(at)

    def trapezoid_weights(self, dt: float, n_steps: int) -> np.ndarray:
        """Weights c_k with Σ c_k·x(t_k) ≈ ∫ f(t)x(t) dt for x sampled at the step edges
        (each step's ∫f shared by its two end points)."""
        w = self.step_integrals(dt, n_steps)
        c = np.zeros(n_steps + 1)
        c[:-1] += 0.5 * w
        c[1:] += 0.5 * w
        return c


def pgse_shape(delta: float, separation: float) -> Shape:
    gap = separation - delta
    return Shape((delta, gap, delta), (1.0, 0.0, -1.0), delta, separation)


def fibonacci_directions(n: int) -> np.ndarray:
    """``n`` unit vectors spread over a hemisphere (a Fibonacci lattice on z ≥ 0); diffusion
    signals are symmetric under n̂ → −n̂, so a hemisphere covers every orientation."""
    if n == 1:
        return np.array([[1.0, 0.0, 0.0]])
    i = np.arange(n) + 0.5
    z = 1.0 - i / n
    phi = math.pi * (3.0 - math.sqrt(5.0)) * np.arange(n)
    r = np.sqrt(1.0 - z * z)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


# --------------------------------------------------------------------------- scenario section

Direction = Annotated[list[float], Field(min_length=3, max_length=3)]


class Shell(BaseModel):
    """One shell: a b-value or a gradient strength, and its directions (a count, spread over
    a hemisphere, or explicit vectors); optionally its own pulse timing."""

    model_config = ConfigDict(extra="forbid")

    b_value: Qty("s/mm^2", ge=0) | None = None
    gradient_strength: Qty("mT/m", ge=0) | None = None
    directions: Annotated[int, Field(ge=1, le=10_000), NotBool] | list[Direction] = 1
    # from a microsecond: shorter pulses divide the gradient to overflow
    pulse_duration: Qty("ms", ge=1e-3) | None = None
    pulse_separation: Qty("ms", ge=1e-3) | None = None

    @model_validator(mode="after")
    def _one_strength(self) -> Shell:
        if (self.b_value is None) == (self.gradient_strength is None):
            raise ValueError("give exactly one of 'b_value' and 'gradient_strength'")
        if isinstance(self.directions, list):
            if not self.directions:
                raise ValueError("'directions' needs at least one vector")
            for i, d in enumerate(self.directions):
                if not all(math.isfinite(v) for v in d) or math.hypot(*d) == 0:
                    raise ValueError(f"direction {i} must be a finite non-zero vector")
        return self


class Waveform(BaseModel):
    """A general effective-gradient shape sampled every ``step``: ``samples`` (dimensionless,
    scaled to 1 at the largest) held constant over each step; their sum must vanish (an echo)."""

    model_config = ConfigDict(extra="forbid")

    step: Qty("ms", gt=0)
    samples: Annotated[list[float], Field(min_length=2, max_length=100_000)]

    @model_validator(mode="after")
    def _echo(self) -> Waveform:
        a = np.asarray(self.samples, dtype=float)
        if not np.all(np.isfinite(a)) or not np.any(a):
            raise ValueError("'samples' must be finite and not all zero")
        if abs(a.sum()) > 1e-9 * np.abs(a).sum():
            raise ValueError(f"'samples' must sum to zero (an echo: ∫g dt = 0), got "
                             f"{a.sum():.6g}")
        return self


class Protocol(BaseModel):
    """The ``parameters.protocol`` section: pulsed gradients (``pgse``, with a pulse duration δ
    and separation Δ) or a sampled ``waveform``, and the shells measured."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["pgse", "waveform"] = "pgse"
    # from a microsecond: shorter pulses divide the gradient to overflow
    pulse_duration: Qty("ms", ge=1e-3) | None = None
    pulse_separation: Qty("ms", ge=1e-3) | None = None
    waveform: Waveform | None = None
    echo_time: Qty("ms", gt=0) | None = None
    shells: Annotated[list[Shell], Field(min_length=1, max_length=1000)]

    @model_validator(mode="after")
    def _timing(self) -> Protocol:
        if self.kind == "waveform":
            if self.waveform is None:
                raise ValueError("kind 'waveform' needs 'waveform' (step and samples)")
            if any(s.pulse_duration is not None or s.pulse_separation is not None
                   for s in self.shells):
                raise ValueError("pulse timing belongs to kind 'pgse'")
            return self
        for i, s in enumerate(self.shells):
            delta = s.pulse_duration or self.pulse_duration
            sep = s.pulse_separation or self.pulse_separation
            if delta is None or sep is None:
                raise ValueError(f"shell {i}: PGSE needs 'pulse_duration' and "
                                 "'pulse_separation' (on the protocol or the shell)")
            if sep < delta:
                raise ValueError(f"shell {i}: 'pulse_separation' ({sep:~P}) must be at least "
                                 f"'pulse_duration' ({delta:~P})")
        return self


@dataclass(frozen=True)
class Measurement:
    """All measurements of a protocol, in SI: ``gradient`` (M, 3) T/m, ``shape_index`` (M,)
    into ``shapes``, ``b_value`` (M,) s/m² as computed from the closed form (PGSE) or the
    waveform, and ``shell`` (M,)."""

    gradient: np.ndarray
    shape_index: np.ndarray
    shapes: tuple[Shape, ...]
    b_value: np.ndarray
    shell: np.ndarray

    @property
    def count(self) -> int:
        return int(self.gradient.shape[0])

    @property
    def strength(self) -> np.ndarray:
        return np.linalg.norm(self.gradient, axis=1)

    @property
    def direction(self) -> np.ndarray:
        s = self.strength
        out = np.zeros_like(self.gradient)
        out[:, 0] = 1.0
        nz = s > 0
        out[nz] = self.gradient[nz] / s[nz, None]
        return out

    def waveform_b_values(self) -> np.ndarray:
        """b = γ²G²∫F² recomputed from the discretised shapes (independent of the closed
        form)."""
        f2 = np.array([sh.integral_f_squared() for sh in self.shapes])
        return GAMMA ** 2 * self.strength ** 2 * f2[self.shape_index]

    @property
    def duration(self) -> float:
        return max(sh.duration for sh in self.shapes)


def b_value_of(shape: Shape, strength: float) -> float:
    """The closed form for a pulsed pair (REFERENCES §4), else γ²G²∫F²."""
    if shape.is_pgse:
        return pgse_b_value(strength, shape.delta, shape.separation)
    return GAMMA ** 2 * strength ** 2 * shape.integral_f_squared()


def build_measurements(protocol: Protocol) -> Measurement:
    shapes: list[Shape] = []
    index: dict[tuple[float, float], int] = {}
    grads, idx, bvals, shell_of = [], [], [], []
    for i, s in enumerate(protocol.shells):
        if protocol.kind == "pgse":
            delta = float((s.pulse_duration or protocol.pulse_duration).m_as("s"))  # type: ignore[union-attr]
            sep = float((s.pulse_separation or protocol.pulse_separation).m_as("s"))  # type: ignore[union-attr]
            key = (delta, sep)
            if key not in index:
                index[key] = len(shapes)
                shapes.append(pgse_shape(delta, sep))
            k = index[key]
        else:
            if not shapes:
                wf = protocol.waveform
                assert wf is not None
                a = np.asarray(wf.samples, dtype=float)
                a = a / np.abs(a).max()
                shapes.append(Shape(tuple([float(wf.step.m_as("s"))] * a.size),
                                    tuple(a.tolist())))
            k = 0
        shape = shapes[k]
        if s.gradient_strength is not None:
            g = float(s.gradient_strength.m_as("T/m"))
        else:
            b = float(s.b_value.m_as("s/m^2"))  # type: ignore[union-attr]
            unit_b = b_value_of(shape, 1.0)
            g = math.sqrt(b / unit_b)
        dirs = fibonacci_directions(s.directions) if isinstance(s.directions, int) else \
            np.asarray(s.directions, dtype=float)
        dirs = dirs / np.linalg.norm(dirs, axis=1)[:, None]
        for d in dirs:
            grads.append(g * d)
            idx.append(k)
            bvals.append(b_value_of(shape, g))
            shell_of.append(i)
    return Measurement(np.asarray(grads), np.asarray(idx, dtype=int), tuple(shapes),
                       np.asarray(bvals), np.asarray(shell_of, dtype=int))
