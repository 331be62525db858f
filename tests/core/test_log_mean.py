"""The logarithmic mean of the log-down AUC segment (:func:`medtransport.summaries.log_mean`)
against 40-digit decimal arithmetic, on both sides of the series' threshold: within 4 ulp
everywhere, where (c0 − c1)/ln(c0/c1) from the rounded ratio loses digits near 1."""

from __future__ import annotations

import math
from decimal import Decimal, localcontext

import numpy as np
import pytest

from medtransport.summaries import SERIES_BELOW, _metrics_kernel, log_mean


def exact(c0: float, c1: float) -> float:
    with localcontext() as ctx:
        ctx.prec = 40
        a, b = Decimal(c0), Decimal(c1)
        return float((a - b) / (a / b).ln())


def pairs() -> list[tuple[float, float]]:
    rng = np.random.default_rng(5)
    out = []
    for x in np.r_[rng.uniform(1e-9, 0.2, 300), [SERIES_BELOW * (1 - 1e-12),
                                                  SERIES_BELOW * (1 + 1e-12), 1e-300 + 1e-16,
                                                  0.5, 0.9]]:
        c1 = float(rng.uniform(1e-3, 1e3))
        c0 = c1 * (1 + x) / (1 - x)  # so that (c0 − c1)/(c0 + c1) ≈ x
        out.append((c0, c1))
    return out


@pytest.mark.parametrize("compiled", [False, True])
def test_log_mean_is_within_4_ulp_of_40_digit_arithmetic(compiled: bool) -> None:
    if compiled:
        import numba

        _metrics_kernel()  # registers log_mean for compiled callers
        f = numba.njit(lambda a, b: log_mean(a, b))
    else:
        f = log_mean
    worst = 0.0
    for c0, c1 in pairs():
        ref = exact(c0, c1)
        worst = max(worst, abs(f(c0, c1) - ref) / math.ulp(ref))
    assert worst <= 4.0


def test_the_ratio_formula_it_replaces_loses_digits_near_1() -> None:
    """Why the series: on a 1-min grid the ratio is within 1e-3 of 1, and the logarithm of
    the rounded ratio is off by up to ~1e-13 relative; the series is not."""
    c1 = 10.0
    c0 = c1 * math.exp(1e-4) * (1 + 3e-17)
    ref = exact(c0, c1)
    old = (c0 - c1) / math.log(c0 / c1)
    assert abs(log_mean(c0, c1) - ref) <= 4 * math.ulp(ref)
    assert abs(old - ref) > 100 * math.ulp(ref)


def test_the_coefficients_are_those_of_x_over_artanh_x() -> None:
    """1/Σ_j y^j/(2j + 1) term by term, in exact fractions."""
    from fractions import Fraction

    from medtransport import summaries

    s = [Fraction(1, 2 * j + 1) for j in range(6)]
    r = [Fraction(1)]
    for n in range(1, 6):
        r.append(-sum(s[k] * r[n - k] for k in range(1, n + 1)))
    assert [summaries._R1, summaries._R2, summaries._R3, summaries._R4, summaries._R5] == \
        [float(c) for c in r[1:]]
