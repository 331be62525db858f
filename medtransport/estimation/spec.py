"""The scenario's ``estimate`` section: what a fit estimates, and how.

    estimate: {method: foce_i, parameters: [clearance, central_volume], variability: true,
               residual_error: true, evaluate_only: false, covariance: true}

Initial values are the scenario's own (``parameters``, ``population.variability``,
``residual_error``); items not listed stay fixed. ``evaluate_only`` is NONMEM's MAXEVAL=0.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["METHODS", "EstimateSpec"]

METHODS = ("map", "foce_i")


class EstimateSpec(BaseModel):
    """The scenario's ``estimate`` section: what a fit estimates and how."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["map", "foce_i"] = "map"
    #: the typical values estimated by FOCE-I (default: every structural parameter)
    parameters: list[str] | None = None
    variability: bool = True
    residual_error: bool = True
    #: the OFV at the given values, nothing moved (NONMEM's MAXEVAL=0)
    evaluate_only: bool = False
    covariance: bool = True
    max_iterations: Annotated[int, Field(ge=1, le=10_000)] = 200
