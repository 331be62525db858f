"""Stability: margins checked before time advances.

A model states each margin as ``value ≤ limit`` with the fix in words. Core helpers for the
common ones:

- explicit diffusion (FTCS): r = D·Δt/Δx² ≤ 1/(2d) in d dimensions (REFERENCES §0: r is the
  probability of a lattice walker jumping to one given neighbour, and 2d·r ≤ 1);
- advection (CFL): C = |u|·Δt/Δx ≤ 1.

A failed margin refuses the run before it starts; the message gives the largest stable step.
"""

from __future__ import annotations

from dataclasses import dataclass

from medtransport.audit.report import AuditContext, AuditResult


@dataclass(frozen=True)
class StabilityMargin:
    """``value ≤ limit`` must hold; ``fix`` says how to get there (e.g. the largest stable
    step)."""

    name: str
    value: float
    limit: float
    detail: str = ""
    fix: str = ""

    @property
    def passed(self) -> bool:
        return bool(self.value <= self.limit)  # NaN fails


def ftcs_margin(diffusivity: float, dt: float, spacing: float, ndim: int) -> StabilityMargin:
    """r = D·Δt/Δx² against 1/(2d), with the largest stable Δt in the fix."""
    r = diffusivity * dt / spacing ** 2
    limit = 1.0 / (2 * ndim)
    largest = limit * spacing ** 2 / diffusivity if diffusivity > 0 else float("inf")
    return StabilityMargin("ftcs", r, limit, f"r = D·Δt/Δx² = {r:.6g} (limit 1/(2d) = "
                           f"{limit:.6g}, d = {ndim})", f"use a time step of at most "
                           f"{largest:.6g} s")


def cfl_margin(speed: float, dt: float, spacing: float) -> StabilityMargin:
    """Courant number C = |u|·Δt/Δx against 1."""
    c = abs(speed) * dt / spacing
    largest = spacing / abs(speed) if speed else float("inf")
    return StabilityMargin("cfl", c, 1.0, f"C = |u|·Δt/Δx = {c:.6g}",
                           f"use a time step of at most {largest:.6g} s")


def audit_stability(ctx: AuditContext) -> list[AuditResult]:
    out = []
    for m in ctx.model.stability():
        detail = m.detail if m.passed else f"{m.detail}; {m.fix}"
        out.append(AuditResult(f"stability[{m.name}]", m.passed, float(m.value), float(m.limit),
                               "", detail, stage="pre"))
    return out
