"""Validation of the exact signal theory against closed forms from the literature.

References used for expected values (never the code under test):
- CODATA 2022 proton gyromagnetic ratio (scipy.constants);
- Stejskal & Tanner 1965: b = γ²g²δ²(Δ − δ/3), here against brute-force quadrature of F(t)²;
- long-time narrow-pulse limits sinc²(qL/2), [2J₁(qR)/(qR)]², [3j₁(qR)/(qR)]² (Callaghan 1991);
- uniform-pore variances L²/12, R²/4, R²/5 by direct quadrature;
- motional narrowing ln E = −2γ²G²δ·Σc_k/(Dλ_k) with Neuman's (1974) closed sums Σc_k/λ_k =
  L⁴/120 (planes), 7R⁴/96 (cylinder), 8R⁴/175 (sphere);
- free diffusion E = exp(−bD).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.constants
from scipy.integrate import quad
from scipy.special import j1, spherical_jn

from medtransport_dwi import eigenbasis, gaussian_phase, matrix_formalism, narrow_pulse
from medtransport_dwi.sequence import GAMMA, Shape, pgse_b_value, pgse_gradient, pgse_shape


def test_gamma_is_codata_2022() -> None:
    value, unit, _ = scipy.constants.physical_constants["proton gyromag. ratio"]
    assert unit == "s^-1 T^-1"
    assert GAMMA == pytest.approx(value, rel=1e-10)


@pytest.mark.parametrize(("delta", "sep"), [(10e-3, 30e-3), (20e-3, 40e-3), (5e-3, 5e-3)])
def test_pgse_b_value_matches_quadrature_of_the_waveform(delta: float, sep: float) -> None:
    g = 0.04

    def f_int(t: float) -> float:  # F(t) = ∫₀ᵗ f for +1 on [0, δ], −1 on [Δ, Δ + δ]
        return min(t, delta) - min(max(t - sep, 0.0), delta)

    integral, _ = quad(lambda t: f_int(t) ** 2, 0, sep + delta, points=[delta, sep],
                       limit=200, epsabs=1e-16)
    assert pgse_b_value(g, delta, sep) == pytest.approx(GAMMA ** 2 * g ** 2 * integral, rel=1e-9)
    assert pgse_shape(delta, sep).integral_f_squared() == pytest.approx(integral, rel=1e-12)
    # the gradient a fit derives from a shell's b is the one that gives that b
    b = GAMMA ** 2 * g ** 2 * integral
    assert pgse_gradient(b, delta, sep) == pytest.approx(g, rel=1e-9)


def test_waveform_step_integrals_are_exact_for_misaligned_steps() -> None:
    shape = pgse_shape(10.05e-3, 30.0e-3)
    w = shape.step_integrals(0.1e-3, 500)
    assert w.sum() == pytest.approx(0.0, abs=1e-15)
    assert w[:100].sum() == pytest.approx(10e-3, rel=1e-12)  # first 10 ms of the pulse
    assert w[100] == pytest.approx(0.05e-3, rel=1e-9)  # the step the pulse ends in


# --------------------------------------------------------------------------- narrow pulse

def _planes_reference(u: float, delta_rate: float, n_terms: int) -> float:
    """The REFERENCES §4 formula as printed, in float arithmetic (only away from u = nπ)."""
    total = 2 * (1 - math.cos(u)) / u ** 2
    for n in range(1, n_terms + 1):
        total += 4 * u ** 2 * math.exp(-n * n * math.pi ** 2 * delta_rate) * \
            (1 - (-1) ** n * math.cos(u)) / (u ** 2 - (n * math.pi) ** 2) ** 2
    return total


@pytest.mark.parametrize("u", [0.3, 1.0, 2.5, 7.7, 12.9])
def test_planes_series_matches_the_printed_formula(u: float) -> None:
    e = narrow_pulse.planes(np.array([u / 1e-5]), 1e-5, 1e-9, 0.05, 400)
    assert e[0] == pytest.approx(_planes_reference(u, 1e-9 * 0.05 / 1e-10, 400), rel=1e-12)


@pytest.mark.parametrize("u", [1e-6, 0.5, math.pi, 2 * math.pi, 3 * math.pi + 1e-9, 10.0, 40.0])
def test_planes_series_at_zero_diffusion_time_sums_to_one(u: float) -> None:
    e = narrow_pulse.planes(np.array([u]), 1.0, 1.0, 0.0, 20000)
    assert e[0] == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_planes_removable_singularity_has_its_finite_limit(n: int) -> None:
    rate = 0.01  # DΔ/L²
    _first, terms = narrow_pulse.planes_terms(np.array([n * math.pi]), 50)
    assert terms[n - 1, 0] == pytest.approx(0.5, rel=1e-12)
    # and the whole signal is continuous through u = nπ
    at = narrow_pulse.planes(np.array([n * math.pi]), 1.0, rate, 1.0, 200)[0]
    near = _planes_reference(n * math.pi + 1e-5, rate, 200)
    assert at == pytest.approx(near, abs=1e-6)


@pytest.mark.parametrize("x", [0.5, 2.0, 4.0, 7.5])
def test_long_time_limits(x: float) -> None:
    long = 1e6  # DΔ/R² ≫ 1
    planes = narrow_pulse.planes(np.array([x]), 1.0, 1.0, long, 100)[0]
    assert planes == pytest.approx((math.sin(x / 2) / (x / 2)) ** 2, rel=1e-12)
    cyl = narrow_pulse.cylinder(np.array([x]), 1.0, 1.0, long, 20)[0]
    assert cyl == pytest.approx((2 * j1(x) / x) ** 2, rel=1e-12)
    sph = narrow_pulse.sphere(np.array([x]), 1.0, 1.0, long, 20)[0]
    assert sph == pytest.approx((3 * spherical_jn(1, x) / x) ** 2, rel=1e-12)


@pytest.mark.parametrize("pore", ["cylinder", "sphere"])
def test_pore_series_sum_to_one_at_zero_diffusion_time(pore: str) -> None:
    x = np.array([0.0, 0.7, 2.0816, 5.3314, 9.0, 15.0])
    gap = narrow_pulse.truncation_gap(pore, x, narrow_pulse.angular_orders(15.0))
    assert np.all(np.abs(gap) < 5e-5)


# --------------------------------------------------------------------------- eigenbases

@pytest.mark.parametrize("pore", ["planes", "cylinder", "sphere"])
def test_variance_of_a_uniform_position(pore: str) -> None:
    # Var(x) by direct quadrature over the pore (size 1)
    if pore == "planes":
        ref = quad(lambda x: x * x, -0.5, 0.5)[0]
    elif pore == "cylinder":
        ref = quad(lambda r: r ** 2 * 0.5 * r * 2 * math.pi, 0, 1)[0] / math.pi
    else:
        ref = quad(lambda r: r ** 2 / 3 * 4 * math.pi * r * r, 0, 1)[0] / (4 * math.pi / 3)
    assert eigenbasis.variance(pore, 1.0) == pytest.approx(ref, rel=1e-12)


@pytest.mark.parametrize("pore", ["planes", "cylinder", "sphere"])
@pytest.mark.parametrize("count", [8, 40, 400])
def test_sum_rules_hold_within_their_tail_bounds(pore: str, count: int) -> None:
    for rule in eigenbasis.sum_rules(pore, 2.0, count):
        gap = rule.exact_sum_at_t0 - rule.sum_at_t0
        assert 0 <= gap <= rule.tail_bound, rule
    slope = eigenbasis.sum_rules(pore, 2.0, 4000)[1]
    assert slope.sum_at_t0 == pytest.approx(1.0, abs=2e-4)


@pytest.mark.parametrize("pore", ["planes", "cylinder", "sphere"])
def test_matrix_basis_reproduces_the_closed_form_couplings(pore: str) -> None:
    b = eigenbasis.basis(pore, 4, 20)
    c_basis = np.sort(b.coupling[0] ** 2)[::-1]
    c_closed, _ = eigenbasis.first_row(pore, 1.0, b.n_coupled)
    np.testing.assert_allclose(c_basis[:b.n_coupled], c_closed, rtol=1e-8)


# --------------------------------------------------------------------------- finite pulses

@pytest.mark.parametrize(("pore", "size"), [("planes", 8e-6), ("cylinder", 3e-6),
                                            ("sphere", 5e-6)])
def test_matrix_agrees_with_gaussian_phase_at_low_b(pore: str, size: float) -> None:
    shape = pgse_shape(10e-3, 30e-3)
    g = math.sqrt(100e6 / pgse_b_value(1.0, 10e-3, 30e-3))  # b = 100 s/mm²
    mf = matrix_formalism.restricted(pore, size, 2e-9, shape, np.array([g]))[0]
    gpa = gaussian_phase.restricted(pore, size, 2e-9, shape, np.array([g]))[0]
    assert abs(mf.imag) < 1e-12
    assert -math.log(mf.real) == pytest.approx(-math.log(gpa.real), rel=2e-3)


@pytest.mark.parametrize(("pore", "size", "sum_c_over_lambda"), [
    ("planes", 2e-6, 2e-6 ** 4 / 120), ("cylinder", 1e-6, 7 * 1e-6 ** 4 / 96),
    ("sphere", 1e-6, 8 * 1e-6 ** 4 / 175)])
def test_motional_narrowing_limit(pore: str, size: float, sum_c_over_lambda: float) -> None:
    d, delta = 2e-9, 60e-3
    shape = pgse_shape(delta, delta)
    g = 0.05
    expected = -2 * GAMMA ** 2 * g ** 2 * delta * sum_c_over_lambda / d
    for method in (matrix_formalism, gaussian_phase):
        e = method.restricted(pore, size, d, shape, np.array([g]))[0]
        assert math.log(e.real) == pytest.approx(expected, rel=1e-2)


@pytest.mark.parametrize(("pore", "size"), [("planes", 6e-6), ("cylinder", 4e-6),
                                            ("sphere", 5e-6)])
def test_matrix_tends_to_narrow_pulse_series_for_short_pulses(pore: str, size: float) -> None:
    delta, sep, d = 0.02e-3, 20e-3, 2e-9
    q = np.array([0.8, 2.5]) / size
    g = q / (GAMMA * delta)
    mf = matrix_formalism.restricted(pore, size, d, pgse_shape(delta, sep), g).real
    fn = {"planes": lambda: narrow_pulse.planes(q, size, d, sep, 2000),
          "cylinder": lambda: narrow_pulse.cylinder(q, size, d, sep, 20),
          "sphere": lambda: narrow_pulse.sphere(q, size, d, sep, 20)}[pore]
    np.testing.assert_allclose(mf, fn(), atol=2e-3)


def test_general_waveform_matches_pgse_when_it_is_one() -> None:
    # A PGSE sampled every 0.5 ms as a general waveform gives the PGSE signal.
    step, delta, sep = 0.5e-3, 10e-3, 30e-3
    n = round((sep + delta) / step)
    levels = np.zeros(n)
    levels[: int(delta / step)] = 1.0
    levels[int(sep / step):] = -1.0
    wave = Shape(tuple([step] * n), tuple(levels.tolist()))
    g = np.array([0.06])
    for pore, size in (("sphere", 5e-6), ("cylinder", 3e-6), ("planes", 7e-6)):
        a = matrix_formalism.restricted(pore, size, 2e-9, pgse_shape(delta, sep), g)[0]
        b = matrix_formalism.restricted(pore, size, 2e-9, wave, g)[0]
        assert b.real == pytest.approx(a.real, rel=1e-9)
        c = gaussian_phase.restricted(pore, size, 2e-9, wave, g)[0]
        d = gaussian_phase.restricted(pore, size, 2e-9, pgse_shape(delta, sep), g)[0]
        assert c.real == pytest.approx(d.real, rel=1e-9)
