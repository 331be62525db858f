"""Thermal dose and thermal damage, accumulated cell by cell over a temperature history.

CEM43 — cumulative equivalent minutes at 43 °C (Sapareto & Dewey 1984, Int J Radiat Oncol Biol
Phys 10:787):

    CEM43 = Σ_steps R^(43 − T)·Δt,   R = 0.5 for T ≥ 43 °C, 0.25 below   (T in °C, Δt in min)

Arrhenius damage integral (Henriques & Moritz 1947, Am J Pathol 23:531):

    Ω = ∫ A·exp(−E_a/(R_gas·T)) dt        (T in kelvin; Ω = 1 ≈ 63 % of cells damaged)

Both are integrated with the trapezoidal rule over each step (exact for a constant temperature).
The 43 °C reference is converted to kelvin once (316.15 K); temperatures stay in kelvin.
"""

from __future__ import annotations

import numpy as np

__all__ = ["GAS_CONSTANT", "REFERENCE_K", "arrhenius_rate", "cem43_rate"]

#: J/(mol·K), CODATA 2018 (exact since the 2019 SI).
GAS_CONSTANT = 8.314462618
#: 43 °C in kelvin.
REFERENCE_K = 316.15


def cem43_rate(temperature_k: np.ndarray) -> np.ndarray:
    """Equivalent minutes at 43 °C per minute at ``temperature_k``: R^(43 − T)."""
    excess = np.asarray(temperature_k, dtype=float) - REFERENCE_K  # K = °C differences
    # 0.5^(−e) = 2^e above 43 °C, 0.25^(−e) = 2^(2e) below: one exp2 pass, no branches.
    # The exponent is capped so unphysical inputs do not overflow.
    return np.exp2(np.minimum(excess + np.minimum(excess, 0.0), 1000.0))


def arrhenius_rate(temperature_k: np.ndarray, frequency_factor: float,
                   activation_energy: float) -> np.ndarray:
    """dΩ/dt in 1/s: A·exp(−E_a/(R·T)); ``frequency_factor`` in 1/s, ``activation_energy`` in
    J/mol. Evaluated as exp(ln A − E_a/(R·T)), since A reaches 1e98."""
    t = np.asarray(temperature_k, dtype=float)
    exponent = np.log(frequency_factor) - activation_energy / (GAS_CONSTANT * t)
    return np.exp(np.minimum(exponent, 700.0))
