"""The closed-form PK solutions against independent references (REFERENCES §1).

References: high-accuracy numerical integration of the defining ODEs (DOP853 at rtol 1e-13,
checked here at 1e-9 relative; the agreement achieved is ~1e-12), 50-digit decimal arithmetic for
the Bateman function near kₐ = k, scipy's Wright omega for the Lambert-W step, numerical
quadrature for AUC = F·D/CL.
"""

from __future__ import annotations

import itertools
import math
from decimal import Decimal, localcontext

import numpy as np
import pytest
from scipy.integrate import quad, solve_ivp
from scipy.special import wrightomega

from medtransport_pk import closed_forms as cf

ODE_RTOL = 1e-13
TOL = 1e-9  # required agreement with the ODE reference (achieved: ≤ ~1e-12)
TIMES = np.array([0.05, 0.3, 1.0, 2.5, 6.0, 12.0, 24.0, 48.0])


def integrate(rhs, y0, t_eval, t0=0.0):
    sol = solve_ivp(rhs, (t0, float(t_eval[-1])), y0, method="DOP853", t_eval=t_eval,
                    rtol=ODE_RTOL, atol=1e-30)
    assert sol.success
    return sol.y


def rel_err(got, want):
    return np.max(np.abs(np.asarray(got) / np.asarray(want) - 1.0))


def test_iv_bolus_one_compartment_matches_ode():
    dose, v, k = 100.0, 12.0, 0.23
    ref = integrate(lambda t, a: -k * a, [dose], TIMES)[0] / v
    assert rel_err(cf.iv_bolus_one_compartment(TIMES, dose, v, k), ref) < TOL
    assert cf.iv_bolus_one_compartment(-1.0, dose, v, k) == 0.0


def test_infusion_one_compartment_matches_ode_during_and_after():
    rate, duration, v, k = 50.0, 2.0, 12.0, 0.23
    during = TIMES[TIMES <= duration]
    after = TIMES[TIMES > duration]
    # Integrate the two pieces separately so the step in the input is not smeared.
    a_during = integrate(lambda t, a: rate - k * a, [0.0], np.append(during, duration))[0]
    a_after = integrate(lambda t, a: -k * a, [a_during[-1]], after, t0=duration)[0]
    ref = np.concatenate([a_during[:-1], a_after]) / v
    assert rel_err(cf.infusion_one_compartment(TIMES, rate, duration, v, k), ref) < TOL


def bateman_ode(t_eval, dose, f, ka, k, v, lag=0.0):
    rhs = lambda t, y: [-ka * y[0], ka * y[0] - k * y[1]]  # noqa: E731
    return integrate(rhs, [f * dose, 0.0], t_eval, t0=lag)[1] / v


@pytest.mark.parametrize(("ka", "k", "lag"), [(1.5, 0.1, 0.0), (0.05, 0.4, 0.0),
                                              (1.2, 0.15, 0.5), (0.3, 0.3, 0.0)])
def test_bateman_matches_ode(ka, k, lag):
    dose, f, v = 320.0, 0.8, 30.0
    t = TIMES[TIMES > lag]
    ref = bateman_ode(t, dose, f, ka, k, v, lag)
    assert rel_err(cf.bateman(t, dose, f, ka, k, v, lag=lag), ref) < TOL
    assert np.all(cf.bateman(np.array([0.0, lag]), dose, f, ka, k, v, lag=lag) == 0.0)


def bateman_decimal(t, dose, f, ka, k, v):
    """The textbook Bateman form evaluated with 50 significant digits (exact float inputs)."""
    with localcontext() as ctx:
        ctx.prec = 50
        ka_d, k_d, t_d = Decimal(ka), Decimal(k), Decimal(t)
        if ka_d == k_d:
            shape = t_d * (-k_d * t_d).exp()
        else:
            shape = ((-k_d * t_d).exp() - (-ka_d * t_d).exp()) / (ka_d - k_d)
        return float(Decimal(f) * Decimal(dose) * ka_d / Decimal(v) * shape)


def test_bateman_is_continuous_through_ka_equal_k():
    """Across kₐ → k, including the series/expm1 switch at |kₐ − k|·t = 1e-5, the stable form
    stays within 1e-10 relative (achieved: ~1e-15) of 50-digit arithmetic."""
    dose, f, k, v, t = 320.0, 0.8, 0.3, 30.0, 4.0
    switch = 1e-5 / t  # the |kₐ − k| at which the evaluation changes method
    gaps = np.concatenate([np.logspace(-16, -1, 61), switch * (1 + np.linspace(-1e-3, 1e-3, 9))])
    worst = 0.0
    for gap in gaps:
        for ka in (k + gap, k - gap):
            got = float(cf.bateman(t, dose, f, ka, k, v))
            worst = max(worst, abs(got / bateman_decimal(t, dose, f, ka, k, v) - 1.0))
    assert worst <= 1e-10
    # Neighbours straddling the switch differ only by the true (tiny) change in kₐ.
    below = float(cf.bateman(t, dose, f, k + switch * (1 - 1e-12), k, v))
    above = float(cf.bateman(t, dose, f, k + switch * (1 + 1e-12), k, v))
    assert abs(above / below - 1.0) <= 1e-10
    limit = cf.bateman_equal_rates(TIMES, dose, f, k, v)
    assert rel_err(cf.bateman(TIMES, dose, f, k, k, v), limit) < 1e-15  # same formula, reordered
    assert rel_err(limit, bateman_ode(TIMES, dose, f, k, k, v)) < TOL


@pytest.mark.parametrize(("cl", "v1", "q", "v2"), [(5.0, 10.0, 3.0, 20.0),   # k10+k12 < k21
                                                   (2.0, 5.0, 8.0, 40.0),    # k10+k12 > k21
                                                   (0.1, 10.0, 0.01, 50.0)])  # slow exchange
def test_iv_bolus_two_compartment_matches_ode(cl, v1, q, v2):
    dose = 100.0
    k10, k12, k21 = cl / v1, q / v1, q / v2
    rhs = lambda t, a: [-(k10 + k12) * a[0] + k21 * a[1], k12 * a[0] - k21 * a[1]]  # noqa: E731
    ref = integrate(rhs, [dose, 0.0], TIMES)[0] / v1
    assert rel_err(cf.iv_bolus_two_compartment(TIMES, dose, cl, v1, q, v2), ref) < TOL
    alpha, beta, a, b = cf.two_compartment_rates(cl, v1, q, v2)
    assert alpha * beta == pytest.approx(k10 * k21, rel=1e-14)
    assert alpha + beta == pytest.approx(k10 + k12 + k21, rel=1e-14)
    assert a + b == pytest.approx(1.0, rel=1e-14)  # C(0) = D/V1


def test_iv_bolus_two_compartment_matches_50_digit_biexponential():
    """The ODE reference above is itself only good to ~3e-11 in the fast-exchange case; the
    bi-exponential evaluated with 50 digits pins the float64 evaluation to ~2e-16."""
    cl, v1, q, v2, dose = 2.0, 5.0, 8.0, 40.0, 100.0
    with localcontext() as ctx:
        ctx.prec = 50
        dv1 = Decimal(v1)
        k10, k12, k21 = Decimal(cl) / dv1, Decimal(q) / dv1, Decimal(q) / Decimal(v2)
        s, p = k10 + k12 + k21, k10 * k21
        root = (s * s - 4 * p).sqrt()
        alpha, beta = (s + root) / 2, (s - root) / 2
        ref = [float(Decimal(dose) / Decimal(v1) / root
                     * ((alpha - k21) * (-alpha * Decimal(t)).exp()
                        + (k21 - beta) * (-beta * Decimal(t)).exp())) for t in TIMES]
    assert rel_err(cf.iv_bolus_two_compartment(TIMES, dose, cl, v1, q, v2), ref) < 1e-14


def mm_ode(t_eval, dose, v, vmax, km):
    rhs = lambda t, a: [-vmax * (a[0] / v) / (km + a[0] / v)]  # noqa: E731
    return integrate(rhs, [dose], t_eval)[0] / v


@pytest.mark.parametrize(("dose", "km"), [(500.0, 4.0), (50.0, 40.0), (5000.0, 0.5)])
def test_michaelis_menten_matches_ode(dose, km):
    v, vmax = 40.0, 30.0
    t = np.array([0.1, 1.0, 3.0, 8.0, 20.0])
    ref = mm_ode(t, dose, v, vmax, km)
    assert rel_err(cf.michaelis_menten_bolus(t, dose, v, vmax, km), ref) < TOL


def test_michaelis_menten_large_dose_stays_finite():
    """C₀/K_m = 1e5: e^{C₀/K_m} overflows, the log-form evaluation does not."""
    dose, v, vmax, km = 1e5, 10.0, 50.0, 0.1
    t = np.array([0.0, 1.0, 10.0, 100.0, 199.0, 250.0])
    c = cf.michaelis_menten_bolus(t, dose, v, vmax, km)
    assert np.all(np.isfinite(c)) and c[0] == pytest.approx(dose / v, rel=1e-14)
    c0 = dose / v
    y = np.log(c0 / km) + (c0 - vmax / v * t) / km
    assert rel_err(c, km * np.real(wrightomega(y))) < 1e-13
    assert rel_err(c[1:], mm_ode(t[1:], dose, v, vmax, km)) < TOL


def test_michaelis_menten_small_dose_is_first_order():
    """C₀ ≪ K_m: elimination is linear with k = V_max/(V·K_m); the relative difference is of
    order C₀/K_m = 1e-6."""
    dose, v, vmax, km = 1e-3, 10.0, 5.0, 100.0
    k = vmax / (v * km)
    c = cf.michaelis_menten_bolus(TIMES, dose, v, vmax, km)
    assert rel_err(c, cf.iv_bolus_one_compartment(TIMES, dose, v, k)) < 1e-5


def auc_piecewise(fn, split):
    head = quad(fn, 0.0, split, epsabs=0.0, epsrel=1e-13, limit=500)[0]
    return head + quad(fn, split, np.inf, epsabs=0.0, epsrel=1e-13, limit=500)[0]


def test_auc_of_single_doses_is_f_dose_over_clearance():
    dose, f, v, k = 100.0, 0.7, 12.0, 0.23
    cl = k * v
    cases = {
        "bolus": (lambda t: float(cf.iv_bolus_one_compartment(t, dose, v, k)), dose),
        "infusion": (lambda t: float(cf.infusion_one_compartment(t, 25.0, 4.0, v, k)), 100.0),
        "oral": (lambda t: float(cf.bateman(t, dose, f, 1.3, k, v, lag=0.5)), f * dose),
        "oral ka=k": (lambda t: float(cf.bateman_equal_rates(t, dose, f, k, v)), f * dose),
        "two-compartment": (lambda t: float(cf.iv_bolus_two_compartment(t, dose, cl, v, 3.0,
                                                                        20.0)), dose),
    }
    for name, (fn, absorbed) in cases.items():
        assert auc_piecewise(fn, 4.0) == pytest.approx(absorbed / cl, rel=1e-9), name


def test_auc_of_michaelis_menten_bolus():
    """AUC = C₀(K_m + C₀/2)/(V_max/V), from integrating dt = −(K_m + C)/((V_max/V)·C) dC."""
    dose, v, vmax, km = 500.0, 40.0, 30.0, 4.0
    c0 = dose / v
    got = auc_piecewise(lambda t: float(cf.michaelis_menten_bolus(t, dose, v, vmax, km)), 10.0)
    assert got == pytest.approx(c0 * (km + c0 / 2) / (vmax / v), rel=1e-9)


def test_superposition_matches_ode_with_repeated_doses():
    dose, v, k, ka = 100.0, 12.0, 0.23, 1.1
    dose_times = [0.0, 8.0, 16.0]
    t = np.array([1.0, 7.9, 8.5, 15.0, 16.2, 30.0])
    got = cf.superpose(cf.bateman, t, dose_times, dose=dose, bioavailability=1.0, ka=ka, k=k,
                       volume=v)
    # Reference: integrate between doses, adding each dose to the gut.
    rhs = lambda s, y: [-ka * y[0], ka * y[0] - k * y[1]]  # noqa: E731
    y = np.zeros(2)
    ref = []
    edges = [*dose_times, math.inf]
    for start, stop in itertools.pairwise(edges):
        y = y + np.array([dose, 0.0])
        inside = t[(t >= start) & (t < stop)]
        end = min(stop, float(t[-1]))
        sol = solve_ivp(rhs, (start, end), y, method="DOP853", rtol=ODE_RTOL, atol=1e-30,
                        dense_output=True)
        ref.extend(sol.sol(inside)[1] / v)
        y = sol.y[:, -1]
    assert rel_err(got, np.array(ref)) < TOL
