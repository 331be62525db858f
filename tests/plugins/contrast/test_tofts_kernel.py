"""The compiled Tofts predictions and their exact Jacobian (medtransport_contrast.tofts_kernel):
predictions against the kinetics module's extended Tofts, derivatives against central
differences of the predictions, and the analytic kep-derivative of the recursion against the
limit of a slow exchange (kep → 0: ∂F/∂kep = −∫(t−u)·C_p(u) du, here for a step input)."""

from __future__ import annotations

import numpy as np
import pytest

from medtransport_contrast import kinetics as kin
from medtransport_contrast.tofts_kernel import tofts_jacobian, tofts_predict

T = np.arange(300) * 0.5
CP = np.where(T >= 10, (T - 10) * np.exp(-(T - 10) / 20), 0.0)


def _params(n: int = 40) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    return rng.uniform(0.02, 0.5, n) / 60, rng.uniform(0.1, 0.6, n), rng.uniform(0, 0.1, n)


def test_predictions_equal_the_kinetics_module() -> None:
    k, ve, vp = _params()
    assert np.allclose(tofts_predict(k, ve, vp, 0.5, CP), kin.extended_tofts(T, CP, k, ve, vp),
                       rtol=1e-13, atol=1e-15)
    assert np.allclose(tofts_predict(k, ve, None, 0.5, CP), kin.tofts(T, CP, k, ve),
                       rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("extended", [False, True])
def test_jacobian_matches_central_differences(extended: bool) -> None:
    k, ve, vp = _params()
    jac = tofts_jacobian(k, ve, extended, 0.5, CP, scale_k=2.0)
    steps = [(1e-6 * k, 0 * ve, 0 * vp), (0 * k, 1e-6 * ve, 0 * vp), (0 * k, 0 * ve, 1e-6 + vp * 0)]
    for j in range(3 if extended else 2):
        dk, dv, dp = steps[j]
        h = (dk, dv, dp)[j]
        vp_p = vp + dp if extended else None
        vp_m = vp - dp if extended else None
        num = (tofts_predict(k + dk, ve + dv, vp_p, 0.5, CP)
               - tofts_predict(k - dk, ve - dv, vp_m, 0.5, CP)) / (2 * h[:, None])
        if j == 0:
            num = num * 2.0  # the Ktrans column is scaled by scale_k
        scale = np.max(np.abs(num), axis=1, keepdims=True)
        assert np.max(np.abs(jac[:, j] - num) / scale) < 1e-6, j


def test_rate_derivative_at_zero_rate_is_the_first_moment() -> None:
    # as kep → 0 (K → 0, ve fixed): ∂C/∂K → F(0) = ∫C_p = t for a unit step, and
    # ∂C/∂ve = −kep²·∂F/∂kep with ∂F/∂kep → −∫(t−u)·C_p(u) du = −t²/2
    step = np.ones_like(T)
    k, ve = np.array([1e-9]), np.array([0.5])
    jac = tofts_jacobian(k, ve, False, 0.5, step)
    kep = k / ve
    assert np.allclose(jac[0, 0], T, rtol=1e-6)
    assert np.allclose(-jac[0, 1] / kep ** 2, -T ** 2 / 2, rtol=1e-6, atol=1e-9)
