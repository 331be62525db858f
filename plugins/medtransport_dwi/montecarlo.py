"""Monte Carlo signals: walkers in each compartment's geometry, phases from their paths.

Walker j of compartment c accumulates I_w = ∫ f_w(t) x_j(t) dt for each gradient shape f_w
(trapezoidal rule on the walk's time grid; :mod:`medtransport.numerics.reflecting_walk`), in the
compartment's own frame; its phase for measurement m is φ_jm = γ g_m·I_w(m) (g rotated into
that frame), and

    E_c,m = (1/N_c) Σ_j e^{−iφ_jm},     SE(Re E) = sd(cos φ)/√N_c,  SE(Im E) = sd(sin φ)/√N_c

(Hall & Alexander, IEEE TMI 28:1354, 2009). The tissue signal is Σ f_c E_c with
SE = √(Σ f_c² SE_c²). The N walkers are shared out over the compartments in proportion to
f_c by largest remainders, so they add up to N exactly; every walker is counted at every
output time (inside or outside the pores of a lattice).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from medtransport.numerics.reflecting_walk import PoreWalk, WalkResult, walk_in_pore
from medtransport_dwi.compartments import (
    Compartment,
    Cylinder,
    Free,
    Lattice,
    Planes,
    Sphere,
    Tensor,
    frame,
)
from medtransport_dwi.sequence import GAMMA, Measurement

__all__ = ["CompartmentWalk", "allocate", "phases", "simulate_compartment"]


def allocate(fractions: list[float], n: int) -> list[int]:
    """Largest-remainder shares of ``n`` walkers in proportion to ``fractions``."""
    raw = np.asarray(fractions, dtype=float) / float(np.sum(fractions)) * n
    base = np.floor(raw).astype(int)
    rest = n - int(base.sum())
    order = np.argsort(-(raw - base), kind="stable")
    base[order[:rest]] += 1
    return base.tolist()


@dataclass
class CompartmentWalk:
    """The walk of one compartment: its result, its frame, and the signal it gives."""

    walk: WalkResult
    rotation: np.ndarray
    signal: np.ndarray = field(default_factory=lambda: np.zeros(0, complex))
    se_real: np.ndarray = field(default_factory=lambda: np.zeros(0))
    se_imag: np.ndarray = field(default_factory=lambda: np.zeros(0))


def _spec(c: Compartment, dt: float, n_steps: int) -> tuple[PoreWalk, np.ndarray]:
    if isinstance(c, Free):
        return PoreWalk("free", float(c.diffusivity.m_as("m^2/s")), dt, n_steps), np.eye(3)
    if isinstance(c, Tensor):
        dpar = float(c.diffusivity_parallel.m_as("m^2/s"))
        dperp = float(c.diffusivity_perpendicular.m_as("m^2/s"))
        s = math.sqrt(dperp / dpar)
        return (PoreWalk("free", dpar, dt, n_steps, axis_scale=(s, s, 1.0)),
                frame(c.orientation, 2))
    if isinstance(c, Planes):
        return (PoreWalk("planes", float(c.diffusivity.m_as("m^2/s")), dt, n_steps,
                         size=0.5 * float(c.separation.m_as("m"))), frame(c.orientation, 0))
    if isinstance(c, Cylinder):
        return (PoreWalk("cylinder", float(c.diffusivity.m_as("m^2/s")), dt, n_steps,
                         size=float(c.radius.m_as("m"))), frame(c.orientation, 2))
    if isinstance(c, Sphere):
        return (PoreWalk("sphere", float(c.diffusivity.m_as("m^2/s")), dt, n_steps,
                         size=float(c.radius.m_as("m"))), np.eye(3))
    assert isinstance(c, Lattice)
    return (PoreWalk(c.kind, float(c.diffusivity.m_as("m^2/s")), dt, n_steps,
                     size=float(c.radius.m_as("m")), cell=float(c.spacing.m_as("m")),
                     diffusivity_out=float(c.diffusivity_outside.m_as("m^2/s")),
                     permeability=float(c.permeability.m_as("m/s"))),
            frame(c.orientation, 2))


def phases(cw: CompartmentWalk, meas: Measurement, scale: float = 1.0) -> np.ndarray:
    """φ (walkers × measurements) for the gradients scaled by ``scale``."""
    g_local = meas.gradient @ cw.rotation.T * scale  # (M, 3)
    out = np.empty((cw.walk.n_walkers, meas.count))
    for k in range(len(meas.shapes)):
        sel = np.flatnonzero(meas.shape_index == k)
        if sel.size:
            out[:, sel] = GAMMA * cw.walk.integrals[:, k, :] @ g_local[sel].T
    return out


def signal_of(phi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean e^{−iφ}, SE of its real part, SE of its imaginary part) over walkers."""
    n = phi.shape[0]
    c, s = np.cos(phi), -np.sin(phi)
    ddof = 1 if n > 1 else 0
    return (c.mean(axis=0) + 1j * s.mean(axis=0), c.std(axis=0, ddof=ddof) / math.sqrt(n),
            s.std(axis=0, ddof=ddof) / math.sqrt(n))


def simulate_compartment(c: Compartment, meas: Measurement, n_walkers: int, seed: int,
                         dt: float, n_steps: int, output_steps: np.ndarray) -> CompartmentWalk:
    spec, rotation = _spec(c, dt, n_steps)
    weights = np.stack([sh.trapezoid_weights(dt, n_steps) for sh in meas.shapes])
    walk = walk_in_pore(spec, n_walkers, seed, weights, output_steps=output_steps)
    cw = CompartmentWalk(walk, rotation)
    cw.signal, cw.se_real, cw.se_imag = signal_of(phases(cw, meas))
    return cw
