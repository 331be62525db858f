"""Entry point of the generative noise plugin (DDPM forward process and analytic reverse):
registers its models with medtransport.

Registered through the ``medtransport`` entry-point group in pyproject.toml, exactly as a
third party's plugin would be; model classes are imported only when a scenario uses them.
"""

from __future__ import annotations

from medtransport.hookspecs import ModelSpec, hookimpl
from medtransport_noise import __version__


@hookimpl
def medtransport_models() -> list[ModelSpec]:
    return [
        ModelSpec(
            id="noise.forward",
            target="medtransport_noise.forward:ForwardDiffusion",
            title="DDPM forward diffusion of a data array",
            version=__version__,
            tags=frozenset({"stochastic", "image"}),
        ),
        ModelSpec(
            id="noise.reverse",
            target="medtransport_noise.reverse_model:ReverseDiffusion",
            title="Analytic reverse diffusion of Gaussian-mixture data",
            version=__version__,
            tags=frozenset({"stochastic", "samples"}),
        ),
    ]
