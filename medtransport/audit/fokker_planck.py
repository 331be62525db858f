"""Fokker–Planck agreement: a Monte Carlo histogram against the density the PDE predicts.

At each tested output time the N started paths fall into the cells j (counts O_j) or not (dead
or beyond the cells); the finite-volume solution of the Fokker–Planck equation gives each
cell's probability P_j = p_j·w_j. Under the hypothesis that the paths follow that density the
counts are multinomial, so Pearson's statistic over the cells with N·P_j ≥ 5 plus one pooled
"elsewhere" class

    X² = Σ (O_j − N·P_j)²/(N·P_j)

is χ²-distributed with (classes − 1) degrees of freedom. The audit fails when its p-value is
below ``level`` / (number of tested times) (Bonferroni, so ``level`` is the family-wise false
alarm rate; the PDE's discretisation error must be small against the sampling noise, which a
fine grid and a modest N ensure).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import chi2

from medtransport.audit.report import AuditResult

__all__ = ["audit_fokker_planck", "pearson_test"]


def pearson_test(counts: np.ndarray, n_started: int, probabilities: np.ndarray
                 ) -> tuple[float, int, float]:
    """(X², degrees of freedom, p-value) of counts against cell probabilities."""
    o = np.asarray(counts, float)
    p = np.clip(np.asarray(probabilities, float), 0.0, None)
    e = n_started * p
    keep = e >= 5.0
    o_rest = n_started - o[keep].sum()
    e_rest = n_started - e[keep].sum()
    x2 = float(np.sum((o[keep] - e[keep]) ** 2 / e[keep]))
    classes = int(keep.sum())
    if e_rest >= 5.0:
        x2 += (o_rest - e_rest) ** 2 / e_rest
        classes += 1
    dof = max(classes - 1, 1)
    return x2, dof, float(chi2.sf(x2, dof))


def audit_fokker_planck(times: np.ndarray, counts: np.ndarray, n_started: int,
                        probabilities: np.ndarray, level: float = 1e-3) -> AuditResult:
    """Pearson's test at every output time t > 0 (``counts``, ``probabilities``: (T, cells))."""
    t = np.asarray(times, float)
    tested = np.flatnonzero(t > 0)
    if tested.size == 0:
        return AuditResult("fokker_planck", True, 1.0, level, "", "no output time after t0")
    each = level / tested.size
    results = [pearson_test(counts[k], n_started, probabilities[k]) for k in tested]
    pvals = np.array([r[2] for r in results])
    i = int(np.argmin(pvals))
    x2, dof, pv = results[i]
    passed = bool(np.all(pvals >= each))
    detail = (f"Pearson χ² of the histogram against the finite-volume Fokker–Planck density "
              f"at {tested.size} times: smallest p = {pv:.3g} (X² = {x2:.4g}, {dof} dof, "
              f"t = {t[tested[i]]:.6g} s); refused below {each:.3g} (level {level:g}, "
              "Bonferroni)")
    return AuditResult("fokker_planck", passed, pv, each, "", detail,
                       {} if passed else {"time_s": float(t[tested[i]])})
