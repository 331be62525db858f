"""The diffusion-weighted signal's own audits (REFERENCES §4: the checks every anchor fails
somewhere).

After the run:

- ``signal_at_b0`` — S(b = 0) = S0 (to rtol; Monte Carlo: exactly, every phase is 0);
- ``attenuation_bounds`` — 0 ≤ |E| ≤ 1 (+ n_sigma standard errors for Monte Carlo);
- ``imaginary_part`` — Im E ≈ 0 for the symmetric pores modelled here: |Im E| ≤ n_sigma·SE
  (Monte Carlo) or rtol (exact methods);
- ``walker_count`` — Monte Carlo: every walker is counted in some compartment at every output
  time (the ledger's mass balance says the same in units of S0);
- ``small_q_limit`` — E → 1 smoothly as q → 0: re-evaluated with the gradients scaled by
  ε = 10⁻², 10⁻³, (1 − E)/b is the same at both (1 − E ∝ q²) and lies in [0, D_max];
- ``magnitude_noise`` — with ``parameters.noise``: the noised magnitude images' first two
  moments against the Rice / non-central χ distribution of the clean |S| (within n_sigma
  standard errors);
- ``b_value`` — the b-value the protocol states (closed form for PGSE) equals γ²G²∫F²dt of the
  discretised waveform, to 1e-9 relative.

Before the run (through the core truncation audit): the narrow-pulse series' completeness at
Δ = 0 at every q of the protocol, and the sum rules Σc_k = Var(x), Σc_kλ_k = 1 of the bases
the Gaussian-phase and matrix methods use (:mod:`medtransport_dwi.eigenbasis`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from medtransport.audit.bounds import check_bounds
from medtransport.audit.report import AuditContext, AuditResult
from medtransport_dwi import eigenbasis, gaussian_phase, narrow_pulse
from medtransport_dwi.eigenbasis import SumRule

if TYPE_CHECKING:
    from medtransport_dwi.model import DWISignal

__all__ = ["ALL", "series_truncations"]


def _arrays(ctx: AuditContext) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    st = ctx.states
    s0 = ctx.model.params.s0
    e = (st["signal"].values + 1j * st["signal_imaginary"].values) / s0
    return (e, st["signal_standard_error"].values / s0,
            st["signal_imaginary_standard_error"].values / s0, st["b_value"].values)


def _mc(ctx: AuditContext) -> bool:
    return ctx.model.method == "monte_carlo"


def audit_signal_at_b0(ctx: AuditContext) -> list[AuditResult]:
    e, se, _, b = _arrays(ctx)
    sel = b == 0
    if not sel.any():
        return [AuditResult("signal_at_b0", True, 0.0, 0.0, "", "no b = 0 measurement")]
    dev = np.abs(e[sel] - 1.0)
    tol = ctx.tolerance.rtol * 10 + ctx.tolerance.n_sigma * se[sel]
    worst = float(dev.max())
    passed = bool(np.all(dev <= tol))
    return [AuditResult("signal_at_b0", passed, worst, float(tol.max()), "S0",
                        f"max |S(b=0)/S0 − 1| = {worst:.3g} over {int(sel.sum())} "
                        "measurement(s)")]


def audit_attenuation_bounds(ctx: AuditContext) -> list[AuditResult]:
    e, se, se_im, _ = _arrays(ctx)
    allow = 1e-12 + (ctx.tolerance.n_sigma * np.hypot(se, se_im) if _mc(ctx) else 0.0)
    return [check_bounds("attenuation_bounds", np.abs(e), 0.0, 1.0, allow, "dimensionless")]


def audit_imaginary_part(ctx: AuditContext) -> list[AuditResult]:
    e, _, se_im, _ = _arrays(ctx)
    tol = ctx.tolerance.n_sigma * se_im + 1e-12 if _mc(ctx) else \
        np.full(e.shape, max(ctx.tolerance.rtol, 1e-12))
    dev = np.abs(e.imag)
    passed = bool(np.all(dev <= tol))
    i = int(np.argmax(dev - tol))
    return [AuditResult("imaginary_part", passed, float(dev[i]), float(tol[i]), "S0",
                        f"largest |Im E| {dev.max():.3g}" + (
                            f" ({dev[i] / max(se_im[i], 1e-300):.2f} standard errors at "
                            f"measurement {i})" if _mc(ctx) else ""))]


def audit_walker_count(ctx: AuditContext) -> list[AuditResult]:
    if not _mc(ctx):
        return []
    model = ctx.model
    walks = ctx.trajectory.notes.get("walks", []) if ctx.trajectory else []
    counted = sum(w.walk.compartment.shape[1] for w in walks)
    expected = int(model.options["walkers"])
    spins = ctx.states["spins"].values.sum(axis=1) * expected / model.params.s0
    drift = float(np.max(np.abs(spins - expected))) if spins.size else float("nan")
    passed = counted == expected and drift <= 1e-6
    return [AuditResult("walker_count", bool(passed), float(expected - counted), 0.0,
                        "walkers", f"{counted} walkers with phases of {expected} started; "
                                   f"largest gap in the per-time count {drift:.3g}")]


def _rescaled(model: DWISignal, eps: float) -> np.ndarray:
    """E with every gradient scaled by ``eps``."""
    meas = model.measurements
    small = replace(meas, gradient=meas.gradient * eps, b_value=meas.b_value * eps ** 2)
    if model.method == "monte_carlo":
        from medtransport_dwi.montecarlo import phases, signal_of

        out = np.zeros(meas.count, complex)
        for c, cw in zip(model.params.compartments, model._walks, strict=True):
            out += c.volume_fraction * signal_of(phases(cw, small))[0]
        return out
    from medtransport_dwi.compartments import exact_attenuation

    return np.sum([c.volume_fraction * exact_attenuation(c, small, model.method)
                   for c in model.params.compartments], axis=0)


def _max_diffusivity(model: DWISignal) -> float:
    out = 0.0
    for c in model.params.compartments:
        for field in ("diffusivity", "diffusivity_parallel", "diffusivity_outside"):
            v = getattr(c, field, None)
            if v is not None:
                out = max(out, float(v.m_as("m^2/s")))
    return out


def audit_small_q_limit(ctx: AuditContext) -> list[AuditResult]:
    model = ctx.model
    meas = model.measurements
    if model.method == "narrow_pulse":
        from medtransport_dwi.compartments import narrow_pulse_b

        b = narrow_pulse_b(meas)
    else:
        b = meas.b_value
    sel = b > 0
    if not sel.any():
        return [AuditResult("small_q_limit", True, 0.0, 0.0, "", "no diffusion weighting")]
    e1, e2 = _rescaled(model, 1e-2), _rescaled(model, 1e-3)
    slope1 = (1.0 - e1.real[sel]) / (b[sel] * 1e-4)
    slope2 = (1.0 - e2.real[sel]) / (b[sel] * 1e-6)
    d_max = _max_diffusivity(model)
    rel = np.abs(slope1 - slope2) / np.maximum(np.abs(slope1), 1e-30)
    slack = 1e-6
    if _mc(ctx):
        n_min = min(w.walk.n_walkers for w in model._walks)
        slack = ctx.tolerance.n_sigma * np.sqrt(2.0 / n_min)
    worst_rel = float(rel.max())
    within = bool(np.all(slope2 >= -1e-12 * d_max) and np.all(slope2 <= d_max * (1 + slack)))
    passed = worst_rel <= 1e-2 and within
    return [AuditResult("small_q_limit", passed, worst_rel, 1e-2, "",
                        f"(1 − E)/b at q·10⁻² vs q·10⁻³ differ by {worst_rel:.3g} (relative); "
                        f"(1 − E)/b ∈ [{slope2.min():.4g}, {slope2.max():.4g}] m²/s, "
                        f"D_max = {d_max:.4g} m²/s")]


def audit_b_value(ctx: AuditContext) -> list[AuditResult]:
    meas = ctx.model.measurements
    b_wave = meas.waveform_b_values()
    dev = np.abs(meas.b_value - b_wave) / np.maximum(np.abs(b_wave), 1e-300)
    dev = np.where(b_wave == 0, np.abs(meas.b_value), dev)
    worst = float(dev.max())
    passed = worst <= 1e-9
    i = int(np.argmax(dev))
    return [AuditResult("b_value", passed, worst, 1e-9, "",
                        f"stated b {meas.b_value[i] * 1e-6:.9g} s/mm² vs γ²G²∫F²dt "
                        f"{b_wave[i] * 1e-6:.9g} s/mm² (measurement {i})")]


def audit_magnitude_noise(ctx: AuditContext) -> list[AuditResult]:
    """With ``noise``: the magnitude images' mean and second moment against the Rice /
    non-central χ distribution of the clean |S| (:mod:`medtransport.audit.magnitude_noise`)."""
    from medtransport.audit.magnitude_noise import audit_magnitude_noise as check

    st = ctx.states
    if "signal_magnitude" not in st:
        return [AuditResult("magnitude_noise", True, 0.0, 0.0, "", "no noise requested")]
    noisy = st["signal_magnitude"]
    e, _, _, _ = _arrays(ctx)
    clean = np.broadcast_to(np.abs(e) * ctx.model.params.s0, noisy.shape)
    return [check(clean, noisy.values, float(noisy.attrs["noise_sigma"]),
                  int(noisy.attrs["coils"]), ctx.tolerance.n_sigma)]


ALL: list[Callable[[AuditContext], list[AuditResult]]] = [
    audit_signal_at_b0, audit_attenuation_bounds, audit_imaginary_part, audit_walker_count,
    audit_small_q_limit, audit_b_value, audit_magnitude_noise]


# ------------------------------------------------------------------------ before the run

def series_truncations(model: DWISignal) -> list[Any]:
    from medtransport_dwi.compartments import RESTRICTED, size_of
    from medtransport_dwi.sequence import GAMMA

    meas = model.measurements
    out: list[Any] = []
    for i, c in enumerate(model.params.compartments):
        if c.kind not in RESTRICTED:
            continue
        size = size_of(c)  # type: ignore[arg-type]
        label = f":{c.name or i}"
        if model.method == "narrow_pulse":
            deltas = np.array([meas.shapes[k].delta for k in meas.shape_index])
            x = GAMMA * meas.strength * deltas * size
            n = 4000 if c.kind == "planes" else narrow_pulse.angular_orders(float(x.max()))
            gap = narrow_pulse.truncation_gap(c.kind, x, n)
            worst = float(np.max(np.abs(gap)))
            total = 1.0 - float(gap[np.argmax(np.abs(gap))])
            out.append(SumRule(f"narrow_pulse_completeness[{c.kind}{label}]", n, total, 1.0,
                               worst, 1e-4))
        elif model.method == "gaussian_phase":
            out += eigenbasis.sum_rules(c.kind, size, gaussian_phase.N_MODES,
                                        slope_tolerance=SLOPE_TOLERANCE, label=label)
        else:
            from medtransport_dwi.matrix_formalism import basis_for

            # The smallest basis the method builds (at q → 0; larger q only adds modes), so
            # every basis used satisfies the rules at least as well.
            b = basis_for(c.kind, 0.0)
            # The rules are summed over the basis actually used, so a wrong matrix shows.
            out += eigenbasis.sum_rules(c.kind, size, b.n_coupled, slope_tolerance=SLOPE_TOLERANCE,
                                        label=label, row=(b.coupling[0] ** 2 * size ** 2,
                                                          b.alpha2 / size ** 2))
    return out


#: The slope sum rule converges like 1/N: the bases keep ≥ 98 % of it.
SLOPE_TOLERANCE = 0.02

