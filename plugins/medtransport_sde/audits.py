"""The processes' audits, wired to the core's (``medtransport.audit``): each recomputes what it
checks from the paths or the returned states, never from the model's own summary.

- ``probability_ledger``: alive + absorbed per wall = started (counted from the paths), and the
  returned density integrates to the surviving fraction; the ledger's absorbed fractions never
  decrease (``irreversible_flows``: paths beyond the histogram are stored, not a flow);
- ``moments``: the returned mean and variance against the exact moments of the process
  (:mod:`medtransport.numerics.sde_moments`) within n_sigma standard errors — the SEs of the
  exact law (from its 2nd and 4th central moments), at every output;
- ``state_space``: no returned state outside the process's state space; the fix used and the
  violations the raw scheme would have had are reported;
- ``feller``: Feller's ratio 2κθ/σ² of a CIR process (reported; < 1 means zero is reached);
- ``fokker_planck``: the histogram against the core's finite-volume Fokker–Planck density
  (Pearson χ², family-wise level :data:`FP_LEVEL`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from medtransport.audit.fokker_planck import audit_fokker_planck
from medtransport.audit.irreversible import audit_irreversible
from medtransport.audit.moments import audit_moment
from medtransport.audit.probability_ledger import audit_probability_ledger
from medtransport.audit.report import AuditContext, AuditResult
from medtransport.audit.state_space import audit_state_space

if TYPE_CHECKING:
    from medtransport.numerics.sde import SDEResult
    from medtransport.numerics.sde_ensemble import EnsembleRun

__all__ = ["FP_LEVEL", "feller", "fokker_planck", "moments", "probability_ledger",
           "state_space"]

#: Family-wise false-alarm rate of the Fokker–Planck test.
FP_LEVEL = 1e-3


def _result(ctx: AuditContext) -> SDEResult | EnsembleRun:
    assert ctx.trajectory is not None
    return ctx.trajectory.notes["result"]


def _in_kernel(res: SDEResult | EnsembleRun) -> bool:
    """Statistics computed while the paths ran: counts and extremes, no stored paths."""
    return not hasattr(res, "values")


def probability_ledger(ctx: AuditContext) -> list[AuditResult]:
    res = _result(ctx)
    model: Any = ctx.model
    walls = model.walls() if model.has_walls else None
    if _in_kernel(res):  # counted by the kernel: finite states per output (no walls there)
        alive = np.asarray(res.alive)
        absorbed: dict[str, np.ndarray] = {}
    else:
        alive = np.sum(np.all(np.isfinite(res.values), axis=2), axis=1)
        absorbed = {name: res.absorbed(code) for code, name in model.wall_names().items()
                    if walls is not None and walls[0][2 * code] == "absorbing"}
    ds = ctx.states
    integral = ds["density"].values @ model.bins.weights
    out = audit_probability_ledger(ctx.times, res.n_paths, alive, absorbed, integral,
                                   ds["beyond_histogram"].values)
    # every outflow of a process is absorption, which no path undoes
    ledger = ctx.trajectory.ledgers["probability"]  # type: ignore[union-attr]
    out.append(audit_irreversible(ctx.times, ledger.outflow, ledger.units))
    return out


def moments(ctx: AuditContext) -> list[AuditResult]:
    model: Any = ctx.model
    assert ctx.times is not None
    exact = model.exact_moments(ctx.times - ctx.times[0])
    if exact is None:
        return [AuditResult("moments", True, 0.0, 1.0, "", "not applicable: walls change the "
                            "law of the process, so its free moments do not hold")]
    ds = ctx.states
    n = ctx.tolerance.n_sigma
    units = model.state_units
    se_mean, se_var = null_standard_errors(model.sde(), model.x0(), ctx.times - ctx.times[0],
                                           ds["alive"].values)
    return [audit_moment("moments[mean]", ctx.times, ds["mean"].values, se_mean, exact[0], n,
                         units),
            audit_moment("moments[variance]", ctx.times, ds["variance"].values, se_var,
                         exact[1], n, f"({units})²")]


def null_standard_errors(sde: Any, x0: float, elapsed: np.ndarray, alive: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray]:
    """SEs of the sample mean and variance of n paths under the exact law: √(μ₂/n) and
    √((μ₄ − μ₂²(n − 3)/(n − 1))/n) — honest for heavy tails, where the sample's own are not."""
    from medtransport.numerics.sde_moments import central_moments

    cm = central_moments(sde, x0, elapsed)
    n = np.maximum(np.asarray(alive, float), 2.0)
    mu2, mu4 = cm[:, 0], cm[:, 2]
    return (np.sqrt(np.maximum(mu2, 0) / n),
            np.sqrt(np.maximum(mu4 - mu2 * mu2 * (n - 3) / (n - 1), 0) / n))


def state_space(ctx: AuditContext) -> list[AuditResult]:
    model: Any = ctx.model
    res = _result(ctx)
    sde = ctx.trajectory.notes["sde"] if ctx.trajectory is not None else model.sde()
    steps = int(res.steps[-1]) * res.n_paths
    # in the kernel: the extremes of the returned states at each output decide the same way
    values = np.stack([res.minimum, res.maximum], axis=1) if _in_kernel(res) \
        else res.values[:, :, 0]
    return [audit_state_space("state_space", values, float(sde.lower[0]),
                              float(sde.upper[0]), scheme=res.scheme, fix=res.bounds_fix,
                              violations=int(np.sum(res.violations)), path_steps=steps,
                              units=model.state_units)]


def feller(ctx: AuditContext) -> list[AuditResult]:
    ratio = ctx.model.feller_ratio()  # type: ignore[attr-defined]
    holds = ratio >= 1.0
    detail = (f"Feller's condition 2κθ ≥ σ²: 2κθ/σ² = {ratio:.4g} — "
              + ("holds: zero is never reached" if holds else
                 "does not hold: the process reaches zero (and reflects there); reported, "
                 "not a failure"))
    return [AuditResult("feller", True, ratio, 1.0, "", detail)]


def fokker_planck(ctx: AuditContext) -> list[AuditResult]:
    from medtransport.domain import Grid
    from medtransport.numerics.fokker_planck import drifted_bm_density

    model: Any = ctx.model
    res = _result(ctx)
    assert ctx.times is not None
    elapsed = ctx.times - ctx.times[0]
    sde = model.sde()
    drift = float(sde.drift_constant[0])
    noise = math.sqrt(float(sde.noise[0, 0]))
    bins = model.bins
    w = model.walls()
    kinds = ("none", "none") if w is None else (w[0][0], w[0][2])
    h = float(bins.weights[0])
    positive = elapsed[elapsed > 0]
    if positive.size == 0:
        return []
    sd_min = noise * math.sqrt(positive[0])
    refine = max(1, math.ceil(h / (sd_min / 10.0)), math.ceil(abs(drift) * h / (0.5 * noise ** 2)))
    fine_h = h / refine
    # a side without a wall: pad far beyond where any path goes (mean ± 8 SD), reflecting there
    span_sd = noise * math.sqrt(elapsed[-1])
    reach_lo = min(model.x0() + min(0.0, drift * elapsed[-1]) - 8 * span_sd, bins.lower)
    reach_hi = max(model.x0() + max(0.0, drift * elapsed[-1]) + 8 * span_sd, bins.upper)
    pad_lo = 0 if kinds[0] != "none" else math.ceil((bins.lower - reach_lo) / h)
    pad_hi = 0 if kinds[1] != "none" else math.ceil((reach_hi - bins.upper) / h)
    lo, hi = bins.lower - pad_lo * h, bins.upper + pad_hi * h
    cells = (pad_lo + bins.cells + pad_hi) * refine
    grid = Grid("cartesian", (lo,), (hi,), (cells,))
    walls = tuple("absorbing" if k == "absorbing" else "reflecting" for k in kinds)
    p = drifted_bm_density(grid, drift, noise, model.x0(), elapsed, walls=walls,  # type: ignore[arg-type]
                           max_dt=positive[0] / 50.0)
    mass = (p * fine_h).reshape(len(elapsed), -1, refine).sum(axis=2)
    probs = mass[:, pad_lo:pad_lo + bins.cells]
    if _in_kernel(res):
        counts = np.asarray(res.counts)  # counted while the paths ran, on the same cells
    else:
        counts = np.stack([np.histogram(res.values[k, :, 0][np.isfinite(res.values[k, :, 0])],
                                        bins.edges)[0] for k in range(len(elapsed))])
    out = audit_fokker_planck(ctx.times, counts, res.n_paths, probs, FP_LEVEL)
    out.detail += f" (Fokker–Planck on {cells} cells of {fine_h:.3g} {model.state_units})"
    return [out]
