"""Audits of the noise models, each recomputing what it checks from the returned states.

``schedule`` (normalization of the process): from the returned β alone, in float64,
ᾱ_k = Π_{j≤k}(1 − β_j) must be ≤ 1 and non-increasing, the output at step 0 must be the data
itself (ᾱ_0 = 1: the data start intact), and the returned ᾱ must equal the recomputed one; the
terminal SNR ᾱ_T/(1 − ᾱ_T) is reported.

``noise_level``: the noise actually present. With ᾱ recomputed from β, the residual
r_k = x_k − √ᾱ_k·x_0 of every output k ≥ 1 must be N(0, 1 − ᾱ_k) i.i.d. over the N samples:

    |mean(r)/√(1 − ᾱ)| ≤ n_σ/√N,     |mean(r²)/(1 − ᾱ) − 1| ≤ n_σ·√(2/N) + ρ,

and a Kolmogorov–Smirnov test of r/√(1 − ᾱ) against N(0, 1) must not reject at the two-sided
level of n_σ standard errors (p ≥ 2Φ(−n_σ)). ρ allows the rounding of the stored dtype:
ρ = 4·ε_dtype·max|x|/√(1 − ᾱ). A float16 coefficient path (ᾱ_1 rounds to 1, so no noise is
added at small t) and a chain with a wrong √(1 − β) factor both fail it.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from medtransport.audit.report import AuditContext, AuditResult

__all__ = ["audit_noise_level", "audit_schedule"]


def audit_schedule(ctx: AuditContext) -> list[AuditResult]:
    ds = ctx.states
    beta = np.asarray(ds["beta"].values, dtype=np.float64)
    alpha_bar = np.cumprod(1.0 - beta)
    problems = []
    if not np.all((beta > 0) & (beta <= 1)):
        problems.append("β outside (0, 1]")
    if np.any(np.diff(alpha_bar) > 0) or alpha_bar[0] > 1:
        problems.append("ᾱ increases")
    returned = np.asarray(ds["alpha_bar"].values, dtype=np.float64)
    mismatch = float(np.max(np.abs(returned - alpha_bar) / np.maximum(alpha_bar, 1e-300)
                            * (alpha_bar > 0) + np.abs(returned - alpha_bar) * (alpha_bar == 0)))
    if not mismatch <= 1e-10:
        problems.append(f"returned ᾱ differs from Π(1 − β) by {mismatch:.3g} (relative)")
    steps = np.asarray(ds["step"].values)
    if 0 in steps:
        i0 = int(np.argmax(steps == 0))
        if not np.array_equal(ds["image"].isel(time=i0).values, ds["clean"].values):
            problems.append("the output at step 0 is not the data (ᾱ_0 ≠ 1)")
    else:
        problems.append("no output at step 0, so the data's start is unchecked")
    terminal = alpha_bar[-1] / (1.0 - alpha_bar[-1]) if alpha_bar[-1] < 1 else math.inf
    detail = (f"ᾱ_0 = 1, ᾱ non-increasing over {beta.size} steps, ᾱ_T = {alpha_bar[-1]:.6g}, "
              f"terminal SNR {terminal:.6g}")
    if problems:
        detail = "; ".join(problems) + f" ({detail})"
    return [AuditResult("schedule_normalization", not problems, mismatch, 1e-10, "", detail)]


def audit_noise_level(ctx: AuditContext) -> list[AuditResult]:
    ds = ctx.states
    beta = np.asarray(ds["beta"].values, dtype=np.float64)
    with np.errstate(divide="ignore"):
        log_ab = np.concatenate([[0.0], np.cumsum(np.log1p(-beta))])
    one_minus = 0.0 - np.expm1(log_ab)
    alpha_bar = np.exp(log_ab)
    x0 = np.asarray(ds["clean"].values, dtype=np.float64).reshape(-1)
    n = x0.size
    n_sigma = ctx.tolerance.n_sigma
    p_min = 2.0 * stats.norm.sf(n_sigma)
    eps = float(np.finfo(ds["image"].dtype).eps) if ds["image"].dtype.kind == "f" else 0.0
    worst, worst_tol, failures, checked = 0.0, 0.0, [], 0
    for i, k in enumerate(np.asarray(ds["step"].values, dtype=int)):
        if k == 0:
            continue
        x = np.asarray(ds["image"].isel(time=i).values, dtype=np.float64).reshape(-1)
        sd = math.sqrt(one_minus[k])
        z = (x - math.sqrt(alpha_bar[k]) * x0) / sd
        rounding = 4.0 * eps * float(np.max(np.abs(x))) / sd
        mean_dev = abs(float(z.mean()))
        var_dev = abs(float(np.mean(z * z)) - 1.0)
        tol_mean = n_sigma / math.sqrt(n) + rounding
        tol_var = n_sigma * math.sqrt(2.0 / n) + rounding
        p = float(stats.kstest(z, "norm").pvalue)
        checked += 1
        if var_dev / tol_var > worst / max(worst_tol, 1e-300) or worst_tol == 0:
            worst, worst_tol = var_dev, tol_var
        bad = []
        if mean_dev > tol_mean:
            bad.append(f"mean {mean_dev:.3g} σ (allowed {tol_mean:.3g})")
        if var_dev > tol_var:
            bad.append(f"variance off by {var_dev:.3g} of 1 − ᾱ (allowed {tol_var:.3g}): "
                       f"measured noise sd {math.sqrt(max(np.mean(z * z), 0)) * sd:.3g}, "
                       f"expected {sd:.3g}")
        if p < p_min:
            bad.append(f"KS p = {p:.3g} < {p_min:.3g}")
        if bad:
            failures.append((float(ds["time"].values[i]), int(k), "; ".join(bad)))
    passed = not failures
    detail = (f"x_k − √ᾱ_k·x_0 is N(0, 1 − ᾱ_k) at {checked} output steps (ᾱ recomputed from β "
              f"in float64; N = {n}, {n_sigma:g} σ)")
    where: dict[str, object] = {}
    if failures:
        t, k, why = failures[0]
        detail = f"at step {k}: {why}" + (f" (and {len(failures) - 1} more steps)"
                                          if len(failures) > 1 else "")
        where = {"time_s": t, "step": k}
    return [AuditResult("noise_level", passed, worst, worst_tol, "", detail, where)]
