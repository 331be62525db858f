"""Series truncation: enough terms, and the normalization sums they rest on.

A series model reports, for each series it evaluates, the number of terms N, a rigorous bound
on the neglected tail, the tolerance, and the truncated and closed-form normalization sums —
for a slab Σ_{n≥0} 1/(2n+1)² = π²/8, for a sphere Σ_{n≥1} 1/n² = π²/6 (Basel). The tail of the
sums after N terms is bounded by ∫_N^∞ dx/x² = 1/N (odd terms: 1/(4N)) (REFERENCES §0).

Passes when tail_bound ≤ tolerance and the truncated sum falls short of the closed form by a
non-negative amount no larger than the sum's own tail bound (when the series reports one).
"""

from __future__ import annotations

from typing import Any

from medtransport.audit.report import AuditContext, AuditResult


def audit_truncation(ctx: AuditContext) -> list[AuditResult]:
    out = []
    for i, tr in enumerate(ctx.model.truncations()):
        name = f"truncation[{getattr(tr, 'name', i)}]"
        tail = float(tr.tail_bound)
        passed = tail <= float(tr.tolerance)
        detail = f"{tr.n_terms} terms, tail bound {tail:.3g} (tolerance {tr.tolerance:.3g})"
        gap = float(tr.exact_sum_at_t0) - float(tr.sum_at_t0)
        sum_bound: Any = getattr(tr, "sum_tail_bound", None)
        detail += (f"; truncated normalization sum {tr.sum_at_t0:.12g} vs closed form "
                   f"{tr.exact_sum_at_t0:.12g}")
        if gap < -1e-15 * abs(float(tr.exact_sum_at_t0)):
            passed = False
            detail += " — the truncated sum exceeds its closed form"
        if sum_bound is not None and gap > float(sum_bound):
            passed = False
            detail += f" — gap {gap:.3g} exceeds the tail bound {float(sum_bound):.3g}"
        out.append(AuditResult(name, bool(passed), tail, float(tr.tolerance), "", detail,
                               stage="pre"))
    return out
