"""Exact linear compartment solutions against closed forms written out here."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medtransport.numerics.compartments import amounts, steady_state_start


def one_compartment(k: float) -> np.ndarray:
    # states: central, eliminated
    return np.array([[-k, 0.0], [k, 0.0]])


def chain(ka: float, k: float) -> np.ndarray:
    # states: depot, central, eliminated
    return np.array([[-ka, 0.0, 0.0], [ka, -k, 0.0], [0.0, k, 0.0]])


def two_compartment(k10: float, k12: float, k21: float) -> np.ndarray:
    # states: central, peripheral, eliminated
    return np.array([[-(k10 + k12), k21, 0.0], [k12, -k21, 0.0], [k10, 0.0, 0.0]])


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def test_one_compartment_bolus_is_exponential() -> None:
    dose, vol, k = 500.0, 30.0, 0.15
    t = np.linspace(0, 48, 97)
    amt = amounts(one_compartment(k), t, additions=[(0.0, [dose, 0.0])])
    assert rel(amt[:, 0] / vol, dose / vol * np.exp(-k * t)) < 1e-13


def test_infusion_rises_and_falls_as_the_closed_form() -> None:
    rate, t_inf, vol, k = 100.0, 2.0, 20.0, 0.3
    t = np.linspace(0, 12, 121)
    amt = amounts(one_compartment(k), t, inputs=[(0.0, t_inf, [rate, 0.0])])
    during = rate / (k * vol) * (1 - np.exp(-k * np.minimum(t, t_inf)))
    after = np.where(t > t_inf, np.exp(-k * (t - t_inf)), 1.0)
    assert rel(amt[:, 0] / vol, during * after) < 1e-12


def test_two_state_chain_is_bateman() -> None:
    dose, ka, k = 320.0, 1.5, 0.088
    t = np.linspace(0, 24, 49)
    amt = amounts(chain(ka, k), t, additions=[(0.0, [dose, 0.0, 0.0])])
    bateman = dose * ka / (ka - k) * (np.exp(-k * t) - np.exp(-ka * t))
    assert rel(amt[:, 1], bateman) < 1e-12
    assert rel(amt[:, 0], dose * np.exp(-ka * t)) < 1e-12


def test_batched_equals_a_loop_over_patients() -> None:
    rng = np.random.default_rng(1)
    kmats = np.stack([two_compartment(*rng.uniform(0.05, 1.0, 3)) for _ in range(7)])
    t = np.arange(0.0, 36.0, 0.5)
    adds = [(0.0, [100.0, 0, 0]), (12.25, [50.0, 0, 0])]
    ins = [(3.0, 5.0, [40.0, 0, 0])]
    batched = amounts(kmats, t, additions=adds, inputs=ins)
    assert batched.shape == (7, t.size, 3)
    for p in range(7):
        single = amounts(kmats[p], t, additions=adds, inputs=ins)
        assert np.max(np.abs(batched[p] - single)) <= 1e-13 * np.max(np.abs(single))


def test_columns_summing_to_zero_conserve_everything_given() -> None:
    kmat = two_compartment(0.2, 0.5, 0.3)
    assert np.allclose(kmat.sum(axis=0), 0.0)
    t = np.linspace(0, 100, 1001)
    amt = amounts(kmat, t, additions=[(0.0, [1000.0, 0, 0]), (33.3, [500.0, 0, 0])],
                inputs=[(10.0, 20.0, [25.0, 0, 0])])
    given = 1000.0 + np.where(t >= 33.3, 500.0, 0.0) + 25.0 * np.clip(t - 10.0, 0.0, 10.0)
    assert np.max(np.abs(amt.sum(axis=1) - given)) <= 1e-13 * given.max()


@pytest.mark.parametrize("dose_time", [6.0, 6.3], ids=["at_output", "between_outputs"])
def test_bolus_at_and_between_output_times(dose_time: float) -> None:
    dose, k = 100.0, 0.2
    t = np.linspace(0, 12, 25)  # every 0.5
    amt = amounts(one_compartment(k), t, additions=[(dose_time, [dose, 0.0])])
    expected = np.where(t >= dose_time, dose * np.exp(-k * (t - dose_time)), 0.0)
    assert np.max(np.abs(amt[:, 0] - expected)) <= 1e-12 * dose
    if dose_time == 6.0:
        assert amt[12, 0] == pytest.approx(dose, rel=1e-15)  # included in the output at its time


def test_steady_state_is_the_fixed_point_of_repeated_doses() -> None:
    kmat = np.array([[-1.2, 0, 0, 0], [1.2, -0.45, 0.2, 0], [0, 0.3, -0.2, 0], [0, 0.15, 0, 0]])
    tau, dose = 12.0, 300.0
    body = [0, 1, 2]
    ss = steady_state_start(kmat, tau, body, additions=[(0.5, [dose, 0, 0, 0])],
                            inputs=[(0.0, 1.0, [0, 100.0, 0, 0])])
    n = 200
    t = tau * np.arange(n + 1)
    adds = [(tau * i + 0.5, [dose, 0, 0, 0]) for i in range(n)]
    ins = [(tau * i, tau * i + 1.0, [0, 100.0, 0, 0]) for i in range(n)]
    amt = amounts(kmat, t, additions=adds, inputs=ins)
    assert ss[3] == 0.0
    assert rel(amt[-1, :3], ss[:3]) < 1e-10


def test_steady_state_refuses_a_body_that_does_not_eliminate() -> None:
    kmat = np.array([[-0.5, 0.5], [0.5, -0.5]])  # closed exchange, no sink
    with pytest.raises(ValueError, match="do not eliminate"):
        steady_state_start(kmat, 12.0, [0, 1], additions=[(0.0, [1.0, 0.0])])


def test_a_regular_grid_with_a_periodic_regimen_costs_few_exponentials(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import medtransport.numerics.compartments as comp

    calls = [0]
    original = comp.expm_batched

    def counted(a: np.ndarray) -> np.ndarray:
        calls[0] += 1
        return original(a)

    monkeypatch.setattr(comp, "expm_batched", counted)
    t = np.arange(0.0, 72.0 + 1e-9, 1 / 6)  # 72 h every 10 min
    ins = [(12.0 * i, 12.0 * i + 1.0, [1000.0, 0, 0]) for i in range(6)]
    amounts(two_compartment(0.15, 0.23, 0.17), t, inputs=ins)
    assert 1 <= calls[0] <= 6  # one per (interval length, input) pair, not one per step


@pytest.mark.parametrize("scale", [1e-9, 1e-5, 1e-3, 2e-3, 1e-2, 1.0, 50.0, 3e3])
def test_batched_exponential_matches_scipy(scale: float) -> None:
    """Scaling-and-squaring Taylor on a stack equals scipy's Padé expm per matrix, from small
    norms (where the Taylor degree drops to 2–10) to stiff ones (ka = 3000/h over an hour)."""
    import scipy.linalg

    from medtransport.numerics.compartments import expm_batched

    rng = np.random.default_rng(5)
    stack = rng.standard_normal((40, 5, 5)) * scale
    stack -= np.eye(5) * np.abs(stack).sum(axis=-1, keepdims=True)  # decaying, like rate matrices
    mine = expm_batched(stack)
    for a, b in zip(mine, stack, strict=True):
        ref = scipy.linalg.expm(b)
        np.testing.assert_allclose(a, ref, rtol=1e-11, atol=1e-13 * max(1.0, np.abs(ref).max()))
    if scale <= 1e-2:  # no squaring: the truncated series alone, to round-off
        np.testing.assert_allclose(mine, [scipy.linalg.expm(b) for b in stack], rtol=1e-14,
                                   atol=1e-15)


def test_taylor_degree_bounds_the_remainder() -> None:
    """The degree chosen for θ meets θ^(q+1)/(q+1)!·e^(2θ) ≤ 1e-18 and one degree less does
    not, over the whole range of scaled norms."""
    from medtransport.numerics.compartments import _taylor_degree

    for theta in np.geomspace(1e-12, 0.5, 60):
        q = _taylor_degree(float(theta))

        def bound(d: int, th: float = float(theta)) -> float:
            return th ** (d + 1) / math.factorial(d + 1) * math.exp(2 * th)

        assert bound(q) <= 1e-18
        assert q == 1 or bound(q - 1) > 1e-18


def test_a_reused_output_buffer_gives_the_same_amounts() -> None:
    from medtransport.numerics.compartments import Addition, amounts

    k = np.array([[[-0.3, 0.1, 0.0], [0.2, -0.1, 0.0], [0.1, 0.0, 0.0]]] * 4)
    k[1:, 0, 0] -= 0.05
    k[1:, 2, 0] += 0.05
    t = np.linspace(0.0, 24.0, 97)
    fresh = amounts(k, t, additions=[Addition(0.0, np.array([100.0, 0.0, 0.0]))])
    buffer = np.full((4, t.size, 3), np.nan)
    reused = amounts(k, t, additions=[Addition(0.0, np.array([100.0, 0.0, 0.0]))], out=buffer)
    np.testing.assert_array_equal(reused, fresh)
    assert np.shares_memory(reused, buffer)
    with pytest.raises(ValueError, match="out must be"):
        amounts(k, t, out=np.empty((t.size, 3, 3)))
