"""The dialyser against Michaels' closed form and its limits, convection, HDF, recirculation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medtransport.units import Q_
from medtransport_dialysis.dialyser import (
    clearance,
    convective,
    michaels,
    recirculated,
    session_clearance,
)


def _textbook(koa: float, qb: float, qd: float) -> float:
    """Michaels (1966) as printed: K = Qb·(e^z − 1)/(e^z − Qb/Qd), z = KoA/Qb·(1 − Qb/Qd)."""
    z = koa / qb * (1.0 - qb / qd)
    return qb * (math.exp(z) - 1.0) / (math.exp(z) - qb / qd)


@pytest.mark.parametrize(("koa", "qb", "qd"), [(1200, 400, 800), (500, 300, 500),
                                               (900, 450, 300), (1600, 250, 700),
                                               (300, 200, 150)])
def test_michaels_matches_the_printed_formula(koa: float, qb: float, qd: float) -> None:
    assert michaels(koa, qb, qd) == pytest.approx(_textbook(koa, qb, qd), rel=1e-12)


def test_equal_flows_take_the_limit_of_the_formula() -> None:
    # z = 0: K = Qb·KoA/(KoA + Qb); the printed form is 0/0 there
    assert michaels(800, 400, 400) == pytest.approx(400 * 800 / 1200, rel=1e-13)
    assert michaels(800, 400, 400 * (1 + 1e-9)) == pytest.approx(400 * 800 / 1200, rel=1e-8)


@pytest.mark.parametrize(("koa", "qb"), [(1200, 400), (500, 300), (2000, 250)])
def test_infinite_dialysate_flow(koa: float, qb: float) -> None:
    limit = qb * (1 - math.exp(-koa / qb))
    assert michaels(koa, qb, math.inf) == pytest.approx(limit, rel=1e-13)
    assert michaels(koa, qb, 1e9) == pytest.approx(limit, rel=1e-6)


@pytest.mark.parametrize(("qb", "qd"), [(400, 800), (400, 300), (350, 350)])
def test_infinite_koa_is_flow_limited(qb: float, qd: float) -> None:
    assert michaels(math.inf, qb, qd) == min(qb, qd)
    assert michaels(1e6, qb, qd) == pytest.approx(min(qb, qd), rel=1e-3)


def test_clearance_grows_with_every_flow_and_stays_below_them() -> None:
    k = michaels(1200, np.array([200, 300, 400, 500]), 800)
    assert np.all(np.diff(k) > 0) and np.all(k < [200, 300, 400, 500])
    assert np.all(np.diff(michaels(1200, 400, np.array([300, 500, 800]))) > 0)
    assert np.all(np.diff(michaels(np.array([500, 1000, 1500]), 400, 800)) > 0)


def test_convection_adds_the_unfiltered_part() -> None:
    assert convective(250, 400, 0) == 250
    assert convective(250, 400, 100) == pytest.approx(250 + 100 * (1 - 250 / 400))
    assert convective(400, 400, 100) == pytest.approx(400)  # nothing left to clear
    assert convective(250, 400, 100, sieving=0.5) == pytest.approx(250 + 50 * 0.375)


def test_post_dilution_hdf_beats_pre_dilution_at_the_same_substitution() -> None:
    hd = clearance(1200, 350, 600)
    post = clearance(1200, 350, 600, substitution=80)
    pre = clearance(1200, 350, 600, substitution=80, dilution="pre")
    # pre-dilution dilutes what the filter sees by Qb/(Qb + Q_sub): for urea it may even fall
    # below plain HD, which is why pre-dilution needs about twice the substitution volume
    assert hd < post and pre < post
    assert pre == pytest.approx(clearance(1200, 430, 600, ultrafiltration=80) * 350 / 430)


def test_recirculation_matches_the_needle_mass_balance() -> None:
    k, qb, r = 250.0, 400.0, 0.15
    # iterate the inlet concentration to its fixed point, arterial concentration 1
    c_in = 1.0
    for _ in range(200):
        c_in = (1 - r) * 1.0 + r * c_in * (1 - k / qb)
    assert recirculated(k, qb, r) == pytest.approx(k * c_in, rel=1e-12)
    assert recirculated(k, qb, 0.0) == k


def test_quantities_in_and_out() -> None:
    k = session_clearance(Q_(1.2, "L/min"), Q_(400, "mL/min"), Q_(48, "L/h"))
    assert k.m_as("mL/min") == pytest.approx(_textbook(1200, 400, 800), rel=1e-12)


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"ultrafiltration": 500.0}, "below the blood flow"),
    ({"recirculation": 1.0}, "recirculation"),
    ({"dilution": "middle"}, "dilution"),
])
def test_bad_input_is_refused_with_a_reason(kwargs: dict, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        clearance(1200, 400, 800, **kwargs)
    with pytest.raises(ValueError, match="positive"):
        michaels(1200, 0, 800)
