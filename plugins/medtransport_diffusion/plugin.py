"""Entry point of the diffusion plugin: registers its models with medtransport.

Registered through the ``medtransport`` entry-point group in pyproject.toml, exactly as a
third party's plugin would be; the model class is imported only when a scenario uses it.
"""

from __future__ import annotations

from medtransport.hookspecs import ModelSpec, hookimpl
from medtransport_diffusion import __version__


@hookimpl
def medtransport_models() -> list[ModelSpec]:
    return [
        ModelSpec(
            id="diffusion.fick",
            target="medtransport_diffusion.model:FickDiffusion",
            title="Fickian diffusion with first-order decay",
            version=__version__,
            tags=frozenset({"grid", "deterministic", "stochastic", "series"}),
        )
    ]
