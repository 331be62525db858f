"""Entry point of the oxygen plugin: registers its model with medtransport.

Registered in this package's ``pyproject.toml`` under ``[project.entry-points.medtransport]``.
Only the cheap :class:`ModelSpec` is built here; the model class is imported when a scenario
uses it.
"""

from __future__ import annotations

from medtransport.hookspecs import ModelSpec, hookimpl

from medtransport_oxygen import __version__


@hookimpl
def medtransport_models() -> list[ModelSpec]:
    return [
        ModelSpec(
            id="oxygen.krogh",
            target="medtransport_oxygen.model:KroghCylinder",
            title="Oxygen diffusion from a capillary into tissue (Krogh cylinder)",
            version=__version__,
            tags=frozenset({"grid", "deterministic"}),
        )
    ]
