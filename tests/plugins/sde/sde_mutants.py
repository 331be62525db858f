"""Broken SDE models shared by the audit tests of the path and in-kernel engines."""

from __future__ import annotations

from typing import Any

from medtransport.numerics import sde as engine


def half_noise(cls: Any) -> Any:
    """``cls`` whose particles get half the declared noise amplitude (a quarter of the
    variance): the Fokker–Planck test must see the narrower density."""

    class HalfNoise(cls):  # type: ignore[misc, valid-type]
        def simulate(self, progress: Any = None) -> Any:
            declared = self.sde
            right = declared()
            self.sde = lambda: engine.AffineSDE.scalar(  # type: ignore[method-assign]
                float(right.drift_constant[0]), 0.0, c0=0.5 * float(right.noise[0, 0]))
            try:
                return super().simulate(progress)
            finally:
                self.sde = declared  # type: ignore[method-assign]

    return HalfNoise
