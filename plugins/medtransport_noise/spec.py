"""The ``schedule`` section shared by the noise models, and how they read the time grid."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from medtransport.domain import NotBool
from medtransport.errors import ScenarioError
from medtransport_noise.schedules import Schedule

__all__ = ["ScheduleSpec", "check_clock", "output_steps"]

Fraction = Annotated[float, Field(gt=0, lt=1)]


class ScheduleSpec(BaseModel):
    """A DDPM noise schedule as diffusers' ``DDPMScheduler`` builds it (see
    :mod:`medtransport_noise.schedules`)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid", "user"] = "linear"
    timesteps: Annotated[int, Field(ge=2, le=100_000), NotBool] = 1000
    beta_start: Fraction = 1e-4
    beta_end: Fraction = 0.02
    betas: list[Annotated[float, Field(gt=0, le=1)]] | None = None
    rescale_zero_terminal_snr: bool = False

    @field_validator("betas")
    @classmethod
    def _finite(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and not all(math.isfinite(b) for b in v):
            raise ValueError("every beta must be finite")
        return v

    @model_validator(mode="after")
    def _user(self) -> ScheduleSpec:
        if self.kind == "user":
            if not self.betas or len(self.betas) < 2:
                raise ValueError("a user schedule needs 'betas' (at least two, each in (0, 1])")
            if "timesteps" in self.model_fields_set and self.timesteps != len(self.betas):
                raise ValueError(f"'timesteps' ({self.timesteps}) differs from the number of "
                                 f"betas ({len(self.betas)})")
            self.timesteps = len(self.betas)
        elif self.betas is not None:
            raise ValueError("'betas' is only for kind: user")
        return self

    def build(self) -> Schedule:
        return Schedule.build(self.kind, self.timesteps, self.beta_start, self.beta_end,
                              None if self.betas is None else np.asarray(self.betas),
                              self.rescale_zero_terminal_snr)


def check_clock(model: Any, timesteps: int) -> float:
    """The scenario's time grid is the VP-SDE clock: T steps of Δt. Returns Δt in seconds."""
    tg = model.scenario.time
    if tg.n_steps != timesteps:
        raise ScenarioError([("time.step", f"the schedule has {timesteps} steps, so 'stop' − "
                                           f"'start' must be {timesteps} steps of 'step' (got "
                                           f"{tg.n_steps}); e.g. stop: 1 s, step: "
                                           f"{1000 / timesteps:g} ms")])
    return tg.dt


def output_steps(model: Any, requested: list[int] | None, timesteps: int,
                 field: str = "parameters.output_steps") -> list[int]:
    """Sorted output steps, always with 0 (the data) and from the time grid by default."""
    if requested is None:
        return [int(k) for k in model.scenario.time.output_steps()]
    bad = [k for k in requested if not 0 <= k <= timesteps]
    if bad:
        raise ScenarioError([(field, f"steps must lie in 0 … {timesteps}; got {bad}")])
    return sorted({0, *requested})
