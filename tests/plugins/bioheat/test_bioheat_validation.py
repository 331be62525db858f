"""bioheat.pennes against analytic solutions (REFERENCES §3), with measured convergence orders.

Each reference is computed here from its formula, independently of the plugin:

- 1-D slab, surface held at T_1, far face insulated, perfusion, no metabolism: the steady state
  T − T_a = (T_1 − T_a)·cosh((L − x)/δ)/cosh(L/δ), δ = √(k/(ω_b ρ_b c_b));
- slab −l/2 < x < l/2 at T_0, both faces held at T_s from t = 0 (Carslaw & Jaeger, *Conduction
  of Heat in Solids*, 2nd ed., §3.3): (T − T_s)/(T_0 − T_s) = (4/π) Σ_n (−1)^n/(2n+1)
  · cos((2n+1)πx/l)·exp(−κ(2n+1)²π²t/l²); its mean (8/π²) Σ 1/(2n+1)²·exp(…) is 1 at t = 0
  only because Σ 1/(2n+1)² = π²/8;
- sphere of radius R held at T_s with heat q in the ball r < a (a point-like source of power
  P = q·4πa³/3): T − T_s = P/(4πk)·(1/r − 1/R) for r ≥ a, plus q(a² − r²)/(6k) inside.

Tolerances sit a factor 2–4 above the errors measured at the stated resolutions.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import medtransport as mt

BLOOD_RHO_C = 1050.0 * 3617.0  # the plugin's blood (IT'IS) — the Pennes coefficient's scale
K = 0.5            # W/(m·K)
RHO_C = 4.0e6      # J/(m³·K): density 1000 kg/m³ × 4000 J/(kg·K)
KAPPA = K / RHO_C  # m²/s


def plain_tissue(perfusion: str = "0 1/s") -> dict[str, Any]:
    return {"tissue": "plain", "metabolism": False,
            "tissues": {"plain": {"density": "1000 kg/m^3", "specific_heat": "4000 J/(kg*K)",
                                  "conductivity": f"{K} W/(m*K)", "perfusion_rate": perfusion,
                                  "metabolic_heat": "0 W/m^3"}}}


def run(domain: dict[str, Any], parameters: dict[str, Any], boundaries: dict[str, Any],
        time: dict[str, Any], method: str = "crank_nicolson", events: list[Any] | None = None
        ) -> Any:
    return mt.run({"name": "validation", "model": "bioheat.pennes", "domain": domain,
                   "parameters": parameters, "boundaries": boundaries, "time": time,
                   "events": events or [], "solver": {"method": method}})


def order(errors: list[float], ratio: float = 2.0) -> np.ndarray:
    e = np.asarray(errors)
    return np.log(e[:-1] / e[1:]) / math.log(ratio)


# ----------------------------------------------------------------------------- perfusion


def perfused_slab_error(cells: int) -> float:
    omega = 5e-4  # 1/s
    length = 0.03
    ds = run({"shape": "box", "size": [f"{length} m"], "cells": [cells]},
             {**plain_tissue(f"{omega} 1/s"), "initial_temperature": "37 degC",
              "arterial_temperature": "37 degC"},
             {"x-": {"kind": "dirichlet", "value": "45 degC"}, "x+": {"kind": "no_flux"}},
             # backward Euler with huge steps converges to the discrete steady state
             {"stop": "1e8 s", "step": "1e7 s"}, method="backward_euler")
    delta = math.sqrt(K / (omega * BLOOD_RHO_C))
    x = ds["x"].values
    exact = 310.15 + 8.0 * np.cosh((length - x) / delta) / math.cosh(length / delta)
    return float(np.max(np.abs(ds["temperature"].values[-1] - exact)))


def test_perfused_slab_steady_state_is_exponential_with_second_order_in_dx() -> None:
    errors = [perfused_slab_error(n) for n in (25, 50, 100)]
    assert errors[-1] < 1e-3  # K, of an 8 K rise (measured 3.4e-4; orders 1.96, 1.98)
    assert np.all(order(errors) > 1.8) and np.all(order(errors) < 2.3), errors


# ----------------------------------------------------------------------------- C&J slab


def cj_slab(x: np.ndarray, t: float, length: float, terms: int) -> tuple[np.ndarray, float]:
    """(profile, mean) of (T − T_s)/(T_0 − T_s) for the slab centred on 0."""
    n = np.arange(terms)[:, None]
    k = 2 * n + 1
    decay = np.exp(-KAPPA * k ** 2 * math.pi ** 2 * t / length ** 2)
    profile = (4 / math.pi * (-1.0) ** n / k * np.cos(k * math.pi * x / length) * decay).sum(0)
    mean = float((8 / math.pi ** 2 / k[:, 0] ** 2 * decay[:, 0]).sum())
    return profile, mean


def test_carslaw_jaeger_series_normalization_uses_the_odd_basel_sum() -> None:
    terms = 400
    _, mean0 = cj_slab(np.zeros(1), 0.0, 0.01, terms)
    # Σ_{n<N} 1/(2n+1)² = π²/8 − tail, tail ≤ 1/(4N): the mean at t = 0 is 1 within (8/π²)/(4N)
    assert abs(mean0 - 1.0) <= 8 / math.pi ** 2 / (4 * terms)
    assert abs(mean0 - 1.0) > 0  # truncated: not exactly 1


def cj_run(cells: int, step: float, method: str) -> Any:
    length = 0.01
    return run({"shape": "box", "size": [f"{length} m"], "origin": [f"{-length / 2} m"],
                "cells": [cells]},
               {**plain_tissue(), "initial_temperature": "45 degC"},
               {"x-": {"kind": "dirichlet", "value": "37 degC"},
                "x+": {"kind": "dirichlet", "value": "37 degC"}},
               {"stop": "40 s", "step": f"{step} s", "output_every": "10 s"}, method=method)


def test_transient_slab_matches_carslaw_jaeger() -> None:
    ds = cj_run(200, 0.05, "crank_nicolson")
    x = ds["x"].values
    worst_profile = worst_mean = 0.0
    for i, t in enumerate(ds["time"].values[1:], start=1):
        profile, mean = cj_slab(x, float(t), 0.01, 2000)
        theta = (ds["temperature"].values[i] - 310.15) / 8.0
        worst_profile = max(worst_profile, float(np.max(np.abs(theta - profile))))
        worst_mean = max(worst_mean, abs(float(theta.mean()) - mean))
    assert worst_profile < 2e-4   # of the unit temperature ratio (measured 6.4e-5)
    assert worst_mean < 8e-5      # (measured 3.1e-5)


@pytest.mark.parametrize(("method", "expected"), [("crank_nicolson", 2.0),
                                                  ("backward_euler", 1.0)])
def test_convergence_order_in_dt(method: str, expected: float) -> None:
    # The error of a step against a much finer step on the same grid: the time error alone.
    ref = cj_run(40, 0.0125, "crank_nicolson")["temperature"].values[-1]
    errors = [float(np.max(np.abs(cj_run(40, s, method)["temperature"].values[-1] - ref)))
              for s in (1.0, 0.5, 0.25)]
    measured = order(errors)  # measured: CN 2.000, 2.003; BE 1.011, 1.006
    assert np.all(np.abs(measured - expected) < 0.25), (errors, measured)


# ----------------------------------------------------------------------------- sphere


def sphere_error(cells: int) -> float:
    radius, a, sar, rho = 0.01, 0.002, 2000.0, 1000.0
    ds = run({"shape": "sphere", "radius": f"{radius} m", "cells": [cells]},
             {**plain_tissue(), "initial_temperature": "37 degC",
              "sources": [{"name": "core", "kind": "rf", "region": {"r": ["0 m", f"{a} m"]}}]},
             {"r+": {"kind": "dirichlet", "value": "37 degC"}},
             {"stop": "1e8 s", "step": "1e7 s"}, method="backward_euler",
             events=[{"type": "power", "source": "core", "sar": f"{sar} W/kg",
                      "duration": "1e9 s"}])
    q = sar * rho
    power = q * 4 / 3 * math.pi * a ** 3
    r = ds["r"].values
    exact = np.where(r >= a, power / (4 * math.pi * K) * (1 / r - 1 / radius),
                     power / (4 * math.pi * K) * (1 / a - 1 / radius) + q * (a ** 2 - r ** 2)
                     / (6 * K))
    rise = ds["temperature"].values[-1] - 310.15
    outside = r >= 2 * a
    return float(np.max(np.abs(rise[outside] - exact[outside])))


def test_sphere_with_a_point_like_source_matches_the_radial_solution() -> None:
    # cells: 25, 50, 100 keep the source ball's edge (2 mm) on a cell face
    errors = [sphere_error(n) for n in (25, 50, 100)]
    # K, of a rise of ~2.1 K at r = 2a (measured 1.5e-4; orders 1.91, 1.95)
    assert errors[-1] < 5e-4
    assert np.all(order(errors) > 1.7), errors


def test_cooling_sphere_matches_the_series_normalized_by_the_basel_sum() -> None:
    """Sphere of radius a at T_0, surface held at T_s (Carslaw & Jaeger §9.3): the mean
    (T̄ − T_s)/(T_0 − T_s) = (6/π²) Σ_{n≥1} exp(−κn²π²t/a²)/n², which is 1 at t = 0 because
    Σ 1/n² = π²/6 (the tail after N terms is below 1/N)."""
    radius, terms = 0.005, 4000
    n = np.arange(1, terms + 1)
    assert abs(6 / math.pi ** 2 * np.sum(1.0 / n ** 2) - 1.0) <= 6 / math.pi ** 2 / terms
    ds = run({"shape": "sphere", "radius": f"{radius} m", "cells": [100]},
             {**plain_tissue(), "initial_temperature": "45 degC"},
             {"r+": {"kind": "dirichlet", "value": "37 degC"}},
             {"stop": "60 s", "step": "0.1 s", "output_every": "15 s"})
    w = 4 / 3 * math.pi * np.diff(np.linspace(0, radius, 101) ** 3)
    worst = 0.0
    for i, t in enumerate(ds["time"].values[1:], start=1):
        exact = 6 / math.pi ** 2 * np.sum(np.exp(-KAPPA * n ** 2 * math.pi ** 2 * t
                                                 / radius ** 2) / n ** 2)
        mean = float(np.sum(w * (ds["temperature"].values[i] - 310.15)) / np.sum(w)) / 8.0
        worst = max(worst, abs(mean - exact))
    assert worst < 1e-4, worst  # measured 2.8e-5 (1.2e-4 with 50 shells, 6.9e-6 with 200)
