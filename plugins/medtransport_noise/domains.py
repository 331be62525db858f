"""Where the noise models count: the samples of a data array, or a window of the data plane.

- :class:`Samples` — the N places (pixels, voxels, cells) of an array, each weighing 1/N, so the
  framework's Σ w·u is the mean of u over the array (for u = x², the mean square m₂);
- :class:`Plane` — a square window of the (dimensionless) 2-D data plane in bins, weights the
  bin areas, so Σ w·density is the fraction of samples inside.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medtransport.domain import Domain

__all__ = ["Plane", "Samples"]


@dataclass(frozen=True)
class Samples(Domain):
    """N places (pixels, voxels, grid cells) of a data array, each weighing 1/N, so that
    Σ w·u is the mean of u over the array (dimensionless weights)."""

    dims: tuple[str, ...]  # type: ignore[misc]
    sizes: tuple[int, ...]
    coordinates: dict[str, Any] = field(default_factory=dict, compare=False)
    label: str = "data array"

    @property
    def weights(self) -> np.ndarray:
        n = int(np.prod(self.sizes))
        return np.full(self.sizes, 1.0 / n)

    @property
    def weights_units(self) -> str:  # type: ignore[override]
        return "dimensionless"

    @property
    def shape(self) -> tuple[int, ...]:
        return self.sizes

    def coords(self) -> dict[str, Any]:
        return dict(self.coordinates)

    def describe(self) -> str:
        size = " × ".join(f"{n} ({d})" for d, n in zip(self.dims, self.sizes, strict=True))
        return f"{self.label}: {size} samples, each weighing 1/N (means over the array)"


@dataclass(frozen=True)
class Plane(Domain):
    """A square window [−w, w]² of the (dimensionless) data plane in bins × bins cells."""

    half_width: float
    bins: int
    dims: tuple[str, ...] = ("y", "x")
    _cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def edges(self) -> np.ndarray:
        return np.linspace(-self.half_width, self.half_width, self.bins + 1)

    @property
    def centers(self) -> np.ndarray:
        e = self.edges
        return 0.5 * (e[1:] + e[:-1])

    @property
    def weights(self) -> np.ndarray:
        h = 2.0 * self.half_width / self.bins
        return np.full((self.bins, self.bins), h * h)

    @property
    def weights_units(self) -> str:  # type: ignore[override]
        return "dimensionless"

    def coords(self) -> dict[str, Any]:
        return {d: ((d,), self.centers, {"units": "dimensionless", "long_name": f"data {d}"})
                for d in self.dims}

    def describe(self) -> str:
        return (f"the data plane's window [−{self.half_width:g}, {self.half_width:g}]² in "
                f"{self.bins} × {self.bins} bins")
