"""The histogram cells of a process's state: the domain on which its probability is counted.

Cells of width w_j (in the state's unit) over [lower, upper]; the density p_j (per state unit)
integrates to Σ p_j·w_j, a probability. The state may be a concentration, a fraction, a
position — whatever the process's unit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from medtransport.domain import Domain

__all__ = ["Bins"]


@dataclass(frozen=True)
class Bins(Domain):
    """``cells`` equal cells on [lower, upper] of a state measured in ``units``."""

    lower: float
    upper: float
    cells: int
    units: str
    long_name: str = "state"
    dims: tuple[str, ...] = ("state",)

    def __post_init__(self) -> None:
        if not (np.isfinite(self.lower) and np.isfinite(self.upper) and self.lower < self.upper):
            raise ValueError("histogram bounds must be finite with lower < upper")
        if self.cells < 1:
            raise ValueError("a histogram needs at least one cell")

    @property
    def edges(self) -> np.ndarray:
        return np.linspace(self.lower, self.upper, self.cells + 1)

    @property
    def centers(self) -> np.ndarray:
        e = self.edges
        return 0.5 * (e[1:] + e[:-1])

    @property
    def weights(self) -> np.ndarray:
        return np.diff(self.edges)

    @property
    def weights_units(self) -> str:  # type: ignore[override]
        return self.units

    def coords(self) -> dict[str, Any]:
        return {"state": (("state",), self.centers,
                          {"units": self.units, "long_name": f"{self.long_name} (cell centre)"})}

    def describe(self) -> str:
        return (f"{self.cells} histogram cells of the {self.long_name} on "
                f"[{self.lower:g}, {self.upper:g}] {self.units}")
