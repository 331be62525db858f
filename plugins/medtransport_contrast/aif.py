"""Arterial input functions (AIFs): the agent's concentration in the blood feeding a tissue.

Parker population AIF (Parker et al., *Magn Reson Med* 2006;56:993, Table 1), whole blood,
t in minutes, concentration in mM::

    C_b(t) = Σ_{n=1,2} A_n/(σ_n√(2π))·exp(−(t − T_n)²/(2σ_n²)) + α·e^{−βt}/(1 + e^{−s(t − τ)})

A1 0.809 mM·min, σ1 0.0563 min, T1 0.17046 min, A2 0.330 mM·min, σ2 0.132 min, T2 0.365 min,
α 1.050 mM, β 0.1685 /min, s 38.078 /min, τ 0.483 min (peak ≈ 6.07 mM at ≈ 10.4 s;
C_b(0) ≈ 0.080 mM).

The agent stays outside the red cells, so the plasma concentration is (Tofts & Kermode,
*Magn Reson Med* 1991;17:357)::

    C_p = C_b / (1 − Hct)

A bolus-arrival delay shifts the curve: C(t) = C(t − delay) for t ≥ delay and 0 before (the
OSIPI convention). A measured AIF is a table of (time, concentration) interpolated linearly,
0 before its first sample and held at its last value after the last one; it must say whether it
was measured in blood or in plasma (``medium``), because treating a blood curve as plasma
under-states C_p by the factor 1 − Hct.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from medtransport.errors import UnitError
from medtransport.units import Q_, Qty, to_canonical
from medtransport_contrast.quantities import Fraction
from medtransport_contrast.whole_body import WholeBodyParams

__all__ = ["PARKER", "MeasuredAIF", "ParkerAIF", "WholeBodyAIF", "delayed",
           "parker_blood", "plasma_from_blood"]

#: Parker 2006, Table 1 (units: mM·min, min, min, mM·min, min, min, mM, /min, /min, min).
PARKER = {"A1": 0.809, "sigma1": 0.0563, "T1": 0.17046, "A2": 0.330, "sigma2": 0.132,
          "T2": 0.365, "alpha": 1.050, "beta": 0.1685, "s": 38.078, "tau": 0.483}


def parker_blood(times: np.ndarray | float) -> np.ndarray:
    """Parker's whole-blood AIF in mM at ``times`` in seconds (formula in the module
    docstring; the formula's own value at t ≤ 0, e.g. 0.0804 mM at 0)."""
    t = np.asarray(times, dtype=float) / 60.0
    p = PARKER
    out = np.zeros_like(t)
    for a, sig, tn in ((p["A1"], p["sigma1"], p["T1"]), (p["A2"], p["sigma2"], p["T2"])):
        out += a / (sig * math.sqrt(2.0 * math.pi)) * np.exp(-((t - tn) ** 2) / (2 * sig ** 2))
    # e^{−βt}/(1 + e^{−s(t−τ)}), written to avoid overflow far before τ
    z = -p["s"] * (t - p["tau"])
    out += p["alpha"] * np.exp(-p["beta"] * t) * np.exp(-np.logaddexp(0.0, z))
    return out


def plasma_from_blood(blood: np.ndarray, hematocrit: float) -> np.ndarray:
    """C_p = C_b/(1 − Hct)."""
    if not 0.0 <= hematocrit < 1.0:
        raise ValueError(f"hematocrit must be in [0, 1), got {hematocrit}")
    return np.asarray(blood, dtype=float) / (1.0 - hematocrit)


def delayed(t_s: np.ndarray, times_s: np.ndarray, values: np.ndarray,
            delay_s: float = 0.0) -> np.ndarray:
    """A tabulated curve (linear interpolation) evaluated at ``t_s − delay_s``: 0 before the
    first sample, the last value after the last one."""
    t = np.asarray(t_s, dtype=float) - delay_s
    out = np.interp(t, times_s, values, left=0.0, right=float(values[-1]))
    return np.where(t < times_s[0], 0.0, out)


class _AIFSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    delay: Qty("s") = Q_(0.0, "s")
    #: Hct of the large vessels; the patient's (``patient.hematocrit``) or 0.42 if neither.
    hematocrit: Annotated[Fraction, Field(lt=1)] | None = None


class ParkerAIF(_AIFSpec):
    """Parker's population AIF (whole blood), shifted by ``delay``.

    The formula is non-zero at t = 0 (0.080 mM); OSIPI's delayed reference curves are 0 before
    the delay, and so are ours for delay > 0."""

    kind: Literal["parker"]

    def blood(self, t_s: np.ndarray) -> np.ndarray:
        d = float(self.delay.m_as("s"))
        if d == 0.0:
            return parker_blood(t_s)
        t = np.asarray(t_s, dtype=float)
        return np.where(t >= d, parker_blood(t - d), 0.0)


class MeasuredAIF(_AIFSpec):
    """A measured AIF: ``times`` in ``time_units``, ``concentrations`` in
    ``concentration_units``, measured in ``medium`` (blood or plasma)."""

    kind: Literal["measured"]
    medium: Literal["blood", "plasma"]
    time_units: str = "s"
    concentration_units: str = "mM"
    times: list[float] = Field(min_length=2)
    concentrations: list[float] = Field(min_length=2)

    @model_validator(mode="after")
    def _table(self) -> MeasuredAIF:
        for name, unit, target in (("time_units", self.time_units, "s"),
                                   ("concentration_units", self.concentration_units, "mM")):
            try:
                to_canonical(f"1 {unit}", target, field=name)
            except UnitError as exc:
                raise ValueError(str(exc)) from None
        if len(self.times) != len(self.concentrations):
            raise ValueError(f"'times' has {len(self.times)} values but 'concentrations' has "
                             f"{len(self.concentrations)}")
        t = np.asarray(self.times, dtype=float)
        if not np.all(np.isfinite(t)) or np.any(np.diff(t) <= 0):
            raise ValueError("'times' must be finite and strictly increasing")
        c = np.asarray(self.concentrations, dtype=float)
        if not np.all(np.isfinite(c)):
            raise ValueError("'concentrations' must be finite")
        return self

    def table(self) -> tuple[np.ndarray, np.ndarray]:
        """(times in s, concentrations in mM)."""
        ts = Q_(np.asarray(self.times, dtype=float), self.time_units).m_as("s")
        cs = Q_(np.asarray(self.concentrations, dtype=float),
                self.concentration_units).m_as("mM")
        return np.asarray(ts, dtype=float), np.asarray(cs, dtype=float)

    def curve(self, t_s: np.ndarray) -> np.ndarray:
        ts, cs = self.table()
        return delayed(t_s, ts, cs, float(self.delay.m_as("s")))


class WholeBodyAIF(_AIFSpec):
    """The arterial plasma concentration of ``contrast.whole_body`` for the scenario's patient
    and injection events (its physiology under ``physiology``; the hematocrit is the whole-body
    model's)."""

    kind: Literal["whole_body"]
    physiology: WholeBodyParams = Field(default_factory=WholeBodyParams)

