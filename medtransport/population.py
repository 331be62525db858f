"""Virtual patient populations: log-normal inter-individual variability, sampled reproducibly.

A parameter θ of patient i is θ_i = θ·exp(η_i), η_i ~ N(0, ω²) — the usual log-normal model of
inter-individual variability (Sheiner & Beal; the NONMEM "exponential" model); ω is the standard
deviation of ln θ (≈ the coefficient of variation for ω ≲ 0.3).

Sampling is reproducible patient by patient: η for patient i and parameter j comes from draw
number i·k + j of one PCG64 stream (k parameters), mapped to a normal by the inverse CDF. Each
uniform double consumes exactly one 64-bit draw, so a block of patients [a, b) can be sampled
on its own by advancing the stream by a·k — the same patient gets the same parameters whatever
the batching.
"""

from __future__ import annotations

import math
from typing import Annotated

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy.special import ndtri

__all__ = ["MAX_PATIENTS", "PopulationSpec", "sample_etas"]

MAX_PATIENTS = 10_000_000


class PopulationSpec(BaseModel):
    """The ``population`` section: ``size`` virtual patients with log-normal variability
    ``variability: {parameter: ω}`` on the model's parameters (ω = SD of the log)."""

    model_config = ConfigDict(extra="forbid")

    size: Annotated[int, Field(ge=1, le=MAX_PATIENTS, strict=True)]
    variability: dict[str, Annotated[float, Field(ge=0, le=3, allow_inf_nan=False)]] = \
        Field(default_factory=dict)


def sample_etas(seed: int, names: list[str], omegas: list[float], start: int,
                stop: int) -> dict[str, np.ndarray]:
    """η of patients ``start`` to ``stop − 1`` for each named parameter (ω·z, z standard
    normal), identical whatever block the patients are sampled in."""
    k = len(names)
    if k == 0 or stop <= start:
        return {n: np.zeros(max(stop - start, 0)) for n in names}
    bits = np.random.PCG64(seed)
    bits.advance(start * k)
    u = np.random.Generator(bits).random((stop - start, k))
    # keep away from 0, where the inverse CDF is −∞
    z = ndtri(np.clip(u, 2.0 ** -53, 1.0 - 2.0 ** -53))
    return {name: omega * z[:, j] for j, (name, omega) in enumerate(zip(names, omegas,
                                                                        strict=True))}


def lognormal_median_ratio(omega: float) -> float:
    """E[exp(η)] = exp(ω²/2): the mean of a log-normal parameter over its median."""
    return math.exp(0.5 * omega * omega)
