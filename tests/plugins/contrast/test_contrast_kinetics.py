"""Tracer-kinetic forward models against closed forms and an independent ODE solution."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from medtransport_contrast import kinetics as kin
from medtransport_contrast.tissue import solve_tissue


@pytest.mark.parametrize("z", [0.0, -1e-8, -0.1999, -0.2, -0.2001, -3.0, -50.0])
def test_phi_functions_match_their_definitions(z: float) -> None:
    zz = np.float64(z) if z != 0.0 else np.float64(1e-300)
    with np.errstate(all="ignore"):
        exact = [(np.exp(z) - 1) / z, (np.exp(z) - 1 - z) / z ** 2,
                 (np.exp(z) - 1 - z - z ** 2 / 2) / z ** 3] if abs(z) > 1e-3 else \
            [1 + z / 2, 0.5 + z / 6, 1 / 6 + z / 24]
    for k in (1, 2, 3):
        assert float(kin.phi(k, np.array(zz))) == pytest.approx(exact[k - 1], rel=1e-9)


def test_exponential_convolution_is_exact_for_linear_input() -> None:
    """c(t) = a + b·t: F(t) = a(1 − e^{−κt})/κ + b(t/κ − (1 − e^{−κt})/κ²), on an irregular
    grid, and its integral."""
    t = np.concatenate([[0.0], np.cumsum(np.random.default_rng(1).uniform(0.1, 7.0, 80))])
    a, b = 0.7, 0.013
    for kappa in (0.003, 0.05, 2.0):
        f, integral = kin.exp_convolution(kappa, t, a + b * t, integral=True)
        e = np.exp(-kappa * t)
        exact = a * (1 - e) / kappa + b * (t / kappa - (1 - e) / kappa ** 2)
        exact_int = a * (t - (1 - e) / kappa) / kappa + \
            b * (t ** 2 / (2 * kappa) - (t - (1 - e) / kappa) / kappa ** 2)
        np.testing.assert_allclose(f, exact, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(integral, exact_int, rtol=1e-9, atol=1e-10)
    # κ → 0, where the closed form cancels: its Taylor expansion to O(κ²)
    kappa = 1e-7
    f = kin.exp_convolution(kappa, t, a + b * t)
    series = a * (t - kappa * t ** 2 / 2) + b * (t ** 2 / 2 - kappa * t ** 3 / 6)
    np.testing.assert_allclose(f, series, rtol=1e-9)


def test_tofts_step_input_fills_the_ees() -> None:
    """C_p = 1 from t = 0: C_t = ve·(1 − e^{−kep·t})."""
    t = np.linspace(0.0, 600.0, 301)
    ct = kin.tofts(t, np.ones_like(t), 0.2 / 60, 0.4)
    np.testing.assert_allclose(ct, 0.4 * (1 - np.exp(-0.5 / 60 * t)), rtol=1e-12, atol=1e-14)


def _ode_2cxm(t: np.ndarray, ca: np.ndarray, fp: float, ps: float, vp: float,
              ve: float) -> np.ndarray:
    def rhs(s: float, y: np.ndarray) -> list[float]:
        c = np.interp(s, t, ca)
        return [fp * c - (fp + ps) / vp * y[0] + ps / ve * y[1], ps / vp * y[0] - ps / ve * y[1]]

    sol = solve_ivp(rhs, (t[0], t[-1]), [0.0, 0.0], t_eval=t, method="LSODA", rtol=1e-10,
                    atol=1e-13, max_step=float(t[1] - t[0]))
    return sol.y


def test_two_compartment_exchange_matches_an_ode_solver() -> None:
    t = np.linspace(0.0, 300.0, 601)
    ca = np.where(t >= 10, 5 * np.exp(-(t - 10) / 20) + 1.0 * (t >= 10), 0.0)
    for fp, ps, vp, ve in ((0.25 / 60, 0.15 / 60, 0.1, 0.2), (0.05 / 60, 1e-5 / 60, 0.02, 0.1),
                           (0.4 / 60, 0.5 / 60, 0.05, 0.4)):
        plasma, ees = kin.two_compartment_exchange_parts(t, ca, fp, ps, vp, ve)
        ref = _ode_2cxm(t, ca, fp, ps, vp, ve)
        np.testing.assert_allclose(plasma, ref[0], atol=2e-7)
        np.testing.assert_allclose(ees, ref[1], atol=2e-7)


def test_two_compartment_exchange_limits() -> None:
    """Sourbron & Buckley 2013: Fp → ∞ gives extended Tofts with Ktrans = PS; PS → 0 a
    one-compartment plasma model C = Fp·(e^{−(Fp/vp)t} ∗ C_a)."""
    t = np.linspace(0.0, 300.0, 601)
    ca = np.where(t >= 10, 5 * np.exp(-(t - 10) / 20) + 1.0, 0.0)
    big = kin.two_compartment_exchange(t, ca, 1e4, 0.1 / 60, 0.05, 0.3)
    etm = kin.extended_tofts(t, ca, 0.1 / 60, 0.3, 0.05)
    np.testing.assert_allclose(big, etm, atol=1e-5)
    none = kin.two_compartment_exchange(t, ca, 0.3 / 60, 0.0, 0.05, 0.3)
    one = 0.3 / 60 * kin.exp_convolution(0.3 / 60 / 0.05, t, ca)
    np.testing.assert_allclose(none, one, atol=1e-12)


def test_vectorized_over_voxels_equals_one_at_a_time() -> None:
    t = np.linspace(0.0, 120.0, 241)
    ca = np.where(t >= 10, 4 * np.exp(-(t - 10) / 15) + 0.5, 0.0)
    ktrans = np.array([[0.05, 0.1], [0.2, 0.4]]) / 60
    ve = np.array([[0.1, 0.2], [0.3, 0.5]])
    many = kin.tofts(t, ca, ktrans, ve)
    assert many.shape == (2, 2, t.size)
    for i in range(2):
        for j in range(2):
            np.testing.assert_allclose(many[i, j], kin.tofts(t, ca, ktrans[i, j], ve[i, j]),
                                       rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("model, kw", [
    ("tofts", {"ktrans": 0.2 / 60, "ve": 0.3, "e0": 0.05}),
    ("extended_tofts", {"ktrans": 0.2 / 60, "ve": 0.3, "vp": 0.05}),
    ("patlak", {"ktrans": 0.05 / 60, "vp": 0.1, "e0": 0.02}),
    ("two_compartment_exchange", {"fp": 0.3 / 60, "ps": 0.1 / 60, "vp": 0.05, "ve": 0.2,
                                  "e0": 0.03}),
])
def test_tissue_books_close_and_match_the_forward_model(model: str, kw: dict) -> None:
    """The flows from the closed-form integrals account for every change in the tissue, and
    the parts add up to the forward model's C_t."""
    t = np.linspace(0.0, 300.0, 301)
    cp = np.where(t >= 10, 5 * np.exp(-(t - 10) / 20) + 1.0, 0.0)
    sol = solve_tissue(model, t, cp, **kw)
    stored = sol.plasma + sol.ees
    flows = sum(sol.inflow.values()) - sum(sol.outflow.values(), np.zeros_like(t))
    np.testing.assert_allclose(stored - stored[0], flows, atol=1e-12 * np.max(np.abs(stored)))
    if not kw.get("e0"):
        forward = {"tofts": lambda: kin.tofts(t, cp, kw["ktrans"], kw["ve"]),
                   "extended_tofts": lambda: kin.extended_tofts(t, cp, kw["ktrans"], kw["ve"],
                                                                kw["vp"]),
                   "patlak": lambda: kin.patlak(t, cp, kw["ktrans"], kw["vp"]),
                   "two_compartment_exchange": lambda: kin.two_compartment_exchange(
                       t, cp, kw["fp"], kw["ps"], kw["vp"], kw["ve"])}[model]()
        np.testing.assert_allclose(stored, forward, rtol=1e-10, atol=1e-14)


def test_models_take_quantities_in_any_unit_and_plain_numbers_as_si() -> None:
    """One convention (kinetics module docstring): plain numbers are SI (s, 1/s); quantities
    are converted, and a quantity input curve gives a quantity result in its unit."""
    from medtransport.units import Q_

    t = np.linspace(0, 300, 151)
    cp = np.exp(-t / 60) * (t > 10)
    si = kin.tofts(t, cp, 0.25 / 60, 0.3)
    q = kin.tofts(Q_(t / 60, "min"), Q_(cp, "mM"), Q_(0.25, "1/min"), Q_(30, "percent"))
    assert str(q.units) == "millimolar"
    np.testing.assert_allclose(q.m_as("mM"), si, rtol=1e-12)
    # the slip the convention removes: 0.25 read as 1/s instead of 1/min is 60× too fast
    assert not np.allclose(kin.tofts(t, cp, 0.25, 0.3), si, rtol=0.1)
    np.testing.assert_allclose(
        kin.two_compartment_exchange(t, cp, Q_(30, "mL/min/dL"), Q_(0.1, "1/min"), 0.05, 0.2),
        kin.two_compartment_exchange(t, cp, 0.3 / 60, 0.1 / 60, 0.05, 0.2), rtol=1e-12)
    np.testing.assert_allclose(kin.patlak(t, cp, Q_(0.1, "1/min"), 0.05),
                               kin.patlak(t, cp, 0.1 / 60, 0.05), rtol=1e-12)
