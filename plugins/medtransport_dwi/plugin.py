"""Entry point of the MRI water diffusion (diffusion-weighted signal) plugin: registers its
models with medtransport.

Registered through the ``medtransport`` entry-point group in pyproject.toml, exactly as a
third party's plugin would be; model classes are imported only when a scenario uses them.
"""

from __future__ import annotations

from medtransport.hookspecs import ModelSpec, hookimpl
from medtransport_dwi import __version__


@hookimpl
def medtransport_models() -> list[ModelSpec]:
    return [
        ModelSpec(
            id="dwi.signal",
            target="medtransport_dwi.model:DWISignal",
            title="Diffusion-weighted MRI signal of tissue compartments",
            version=__version__,
            tags=frozenset({"compartments", "deterministic", "stochastic", "series"}),
        ),
        ModelSpec(
            id="dwi.maps",
            target="medtransport_dwi.maps_model:DWIMaps",
            title="DWI parameter maps from image files",
            version=__version__,
            tags=frozenset({"compartments", "deterministic", "image"}),
        ),
    ]
