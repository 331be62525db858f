"""Urea kinetics against closed forms: fixed volume, variable volume (Sargent–Gotch), the two
solvers against each other, the two-pool limits; units, Watson, nPCR."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medtransport.units import Q_
from medtransport_dialysis.kinetics import Kinetics, Schedule, dphi1, simulate_course
from medtransport_dialysis.urea import (
    generation_from_npcr,
    npcr_from_generation,
    urea_mmol_per_l,
    watson_volume,
)

METHODS = ["closed_form", "matrix_exponential"]


def _kin(g: float = 10.0, kr: float = 0.0, intake: float = 0.0, urine: float = 0.0,
         **kw: object) -> Kinetics:
    one = np.ones(1)
    return Kinetics(g * one, kr * one, intake * one, urine * one, **kw)  # type: ignore[arg-type]


def _one_session(k: float, qf: float, start: float = 0.0, hours: float = 4.0) -> Schedule:
    return Schedule(np.array([start]), np.array([start + hours]), np.array([[k]]),
                    np.array([[qf]]))


def _conc(course, pool: int = 0) -> np.ndarray:  # type: ignore[no-untyped-def]
    return course.part("amount")[:, 0, pool] / course.part("volume")[:, 0]


@pytest.mark.parametrize("method", METHODS)
def test_fixed_volume_session_is_the_textbook_exponential(method: str) -> None:
    """C(t) = C0·e^{−Kt/V} + G/K·(1 − e^{−Kt/V})."""
    c0, v, k, g = 25.0, 38.0, 15.0, 12.0
    t = np.linspace(0.0, 4.0, 17)
    course = simulate_course(t, _one_session(k, 0.0), _kin(g), np.array([[c0 * v]]),
                             np.array([v]), method=method)
    x = np.exp(-k * t / v)
    np.testing.assert_allclose(_conc(course), c0 * x + g / k * (1 - x), rtol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_anuric_interdialytic_urea_rises_linearly(method: str) -> None:
    c0, v, g = 8.0, 40.0, 10.0
    t = np.linspace(0.0, 68.0, 35)
    none = Schedule(np.zeros(0), np.zeros(0), np.zeros((0, 1)), np.zeros((0, 1)))
    course = simulate_course(t, none, _kin(g), np.array([[c0 * v]]), np.array([v]),
                             method=method)
    np.testing.assert_allclose(_conc(course), c0 + g * t / v, rtol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_ultrafiltration_session_matches_the_variable_volume_closed_form(method: str) -> None:
    """V dC/dt = G − (K + K_r − Q_f)·C with V = V0 − Q_f·t (Sargent & Gotch):
    C = G/B − (G/B − C0)·(V/V0)^{B/Q_f}, B = K + K_r − Q_f."""
    c0, v0, k, kr, g, qf = 30.0, 40.0, 14.0, 0.3, 11.0, 0.75
    t = np.linspace(0.0, 4.0, 9)
    course = simulate_course(t, _one_session(k, qf), _kin(g, kr), np.array([[c0 * v0]]),
                             np.array([v0]), method=method)
    v = v0 - qf * t
    b = k + kr - qf
    np.testing.assert_allclose(course.part("volume")[:, 0], v, rtol=1e-13)
    np.testing.assert_allclose(_conc(course), g / b - (g / b - c0) * (v / v0) ** (b / qf),
                               rtol=1e-11)


@pytest.mark.parametrize("method", METHODS)
def test_interdialytic_weight_gain_dilutes(method: str) -> None:
    """Between sessions V grows at a = intake − urine: C = G/B + (C0 − G/B)·(V/V0)^{−B/a},
    B = K_r + a."""
    c0, v0, kr, g, a = 10.0, 36.0, 0.18, 9.0, 0.06
    t = np.linspace(0.0, 44.0, 12)
    none = Schedule(np.zeros(0), np.zeros(0), np.zeros((0, 1)), np.zeros((0, 1)))
    course = simulate_course(t, none, _kin(g, kr, intake=a + 0.02, urine=0.02),
                             np.array([[c0 * v0]]), np.array([v0]), method=method)
    v = v0 + a * t
    b = kr + a
    np.testing.assert_allclose(_conc(course), g / b + (c0 - g / b) * (v / v0) ** (-b / a),
                               rtol=1e-11)


def _week(pools: int = 1, **kw: object) -> tuple[Schedule, Kinetics]:
    starts = np.array([8.0, 56.0, 104.0])
    p = 3
    sched = Schedule(starts, starts + 4.0, np.tile([[15.0], [16.0], [14.0]], (1, p)),
                     np.full((3, p), 0.6))
    kin = Kinetics(np.array([9.0, 10.0, 12.0]), np.array([0.0, 0.2, 0.4]),
                   np.full(p, 0.08), np.array([0.0, 0.02, 0.04]), **kw)  # type: ignore[arg-type]
    return sched, kin


def test_the_two_solvers_agree_over_a_week_for_several_patients() -> None:
    sched, kin = _week()
    t = np.arange(0.0, 169.0, 0.5)
    v0 = np.array([35.0, 40.0, 45.0])
    m0 = (20.0 * v0)[:, None]
    a = simulate_course(t, sched, kin, m0, v0, method="closed_form")
    b = simulate_course(t, sched, kin, m0, v0, method="matrix_exponential")
    np.testing.assert_allclose(a.states, b.states, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(a.at_stop, b.at_stop, rtol=1e-10, atol=1e-9)


def test_the_books_close_for_both_pools() -> None:
    sched, kin = _week()
    two = Kinetics(kin.generation, kin.residual_clearance, kin.intake, kin.urine,
                   (0.35, 0.65), 48.0)
    t = np.arange(0.0, 169.0, 1.0)
    v0 = np.array([35.0, 40.0, 45.0])
    m0 = (20.0 * v0)[:, None] * np.array([0.35, 0.65])
    c = simulate_course(t, sched, two, m0, v0, method="matrix_exponential")
    total = (c.part("amount").sum(-1) + c.part("dialysate") + c.part("renal")
             - c.part("generated"))
    np.testing.assert_allclose(total, np.broadcast_to(total[0], total.shape), rtol=1e-12)
    np.testing.assert_allclose(c.part("generated"), np.outer(t, kin.generation), rtol=1e-12)


def test_two_pools_with_fast_exchange_are_one_pool() -> None:
    sched, kin = _week()
    fast = Kinetics(kin.generation, kin.residual_clearance, kin.intake, kin.urine,
                    (0.35, 0.65), 1e5)
    t = np.arange(0.0, 169.0, 2.0)
    v0 = np.array([35.0, 40.0, 45.0])
    one = simulate_course(t, sched, kin, (20.0 * v0)[:, None], v0)
    two = simulate_course(t, sched, fast, (20.0 * v0)[:, None] * np.array([0.35, 0.65]), v0,
                          method="matrix_exponential")
    np.testing.assert_allclose(two.part("amount").sum(-1), one.part("amount")[..., 0],
                               rtol=1e-3)


def test_slow_exchange_makes_the_extracellular_pool_rebound() -> None:
    sched, kin = _week()
    slow = Kinetics(kin.generation, kin.residual_clearance, kin.intake, kin.urine,
                    (1 / 3, 2 / 3), 48.0)
    t = np.array([0.0, 12.0, 12.5, 13.0])  # the first session ends at 12 h
    v0 = np.full(3, 40.0)
    c = simulate_course(t, sched, slow, (20.0 * v0)[:, None] * np.array([1 / 3, 2 / 3]), v0,
                        method="matrix_exponential")
    ce = c.part("amount")[..., 0] / (c.part("volume") / 3)
    assert np.all(ce[2] > ce[1]) and np.all(ce[3] > ce[2])


def test_the_divided_difference_is_smooth_across_its_switch() -> None:
    x = np.array([0.3, 0.3, -2.0, 5.0, 0.0])
    for dy in (1e-3, 1e-5, 1e-6, 1e-9):
        y = x + dy
        exact = np.array([float(_dd_series(a, b)) for a, b in zip(x, y, strict=True)])
        np.testing.assert_allclose(dphi1(x, y), exact, rtol=1e-9)


def _dd_series(x: float, y: float) -> float:
    """(φ(x) − φ(y))/(x − y) by the power series, term by term: Σ (xⁿ − yⁿ)/(x − y)/(n+1)!."""
    from math import factorial

    total = 0.0
    for n in range(1, 60):
        diff = sum(x ** (n - 1 - j) * y ** j for j in range(n))
        total += diff / factorial(n + 1)
    return total


# ----------------------------------------------------------------------------- units

def test_bun_and_urea_are_converted_and_not_confused() -> None:
    assert urea_mmol_per_l(Q_(10, "mmol/L")) == pytest.approx(10.0)
    assert urea_mmol_per_l(Q_(28.0134, "mg/dL")) == pytest.approx(10.0, rel=1e-6)
    assert urea_mmol_per_l(Q_(60.056, "mg/dL"), "urea") == pytest.approx(10.0, rel=1e-6)
    # the classic slip: a BUN read as urea is 60.06/28.01 = 2.14 × too low
    ratio = urea_mmol_per_l(Q_(70, "mg/dL")) / urea_mmol_per_l(Q_(70, "mg/dL"), "urea")
    assert ratio == pytest.approx(2.144, abs=1e-3)
    with pytest.raises(ValueError, match="concentration"):
        urea_mmol_per_l(Q_(1, "L"))


def test_watson_volume() -> None:
    # hand-computed from Watson et al. 1980, table 3
    assert watson_volume(70, 175, 40, False) == pytest.approx(
        2.447 - 0.09516 * 40 + 0.1074 * 175 + 0.3362 * 70)
    assert watson_volume(60, 160, 40, True) == pytest.approx(-2.097 + 0.1069 * 160
                                                              + 0.2466 * 60)
    assert 38 < float(watson_volume(70, 175, 40, False)) < 44  # about 58 % of weight


def test_npcr_round_trip_and_value() -> None:
    # G = 8 mg/min urea nitrogen, V = 38 L: PCR = 9.35·8 + 0.294·38 = 85.97 g/day
    g = 8.0 * 60.0 / 28.0134
    assert npcr_from_generation(g, 38.0) == pytest.approx(85.972 / (38 / 0.58), rel=1e-4)
    assert generation_from_npcr(npcr_from_generation(g, 38.0), 38.0) == pytest.approx(g)
    with pytest.raises(ValueError, match="nPCR"):
        generation_from_npcr(0.1, 38.0)


@settings(max_examples=25, deadline=None)
@given(v0=st.floats(20, 60), k=st.floats(0.5, 25), kr=st.floats(0, 0.6), g=st.floats(1, 20),
       qf=st.floats(0, 1.2), intake=st.floats(0, 0.15), hours=st.floats(1, 6),
       gap=st.floats(10, 80), step=st.floats(0.25, 7))
def test_any_schedule_closes_its_books_and_both_solvers_agree(
        v0: float, k: float, kr: float, g: float, qf: float, intake: float, hours: float,
        gap: float, step: float) -> None:
    starts = np.array([2.0, 2.0 + hours + gap])
    sched = Schedule(starts, starts + hours, np.array([[k], [k]]), np.array([[qf], [qf]]))
    kin = _kin(g, kr, intake=intake)
    t = np.arange(0.0, float(starts[-1] + hours + 5.0), step)
    a = simulate_course(t, sched, kin, np.array([[20.0 * v0]]), np.array([v0]))
    b = simulate_course(t, sched, kin, np.array([[20.0 * v0]]), np.array([v0]),
                        method="matrix_exponential")
    np.testing.assert_allclose(a.states, b.states, rtol=1e-9, atol=1e-9 * 20 * v0)
    books = (20.0 * v0 + a.part("generated") - a.part("dialysate") - a.part("renal"))
    np.testing.assert_allclose(a.part("amount")[..., 0], books, rtol=1e-11,
                               atol=1e-11 * 20 * v0)
    np.testing.assert_allclose(a.part("volume")[:, 0],
                               v0 + intake * t - qf * sum(np.clip(t - s, 0, hours)
                                                          for s in starts), rtol=1e-12)
