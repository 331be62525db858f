"""Entry point of the tissue heat (Pennes bioheat) plugin: registers its models with medtransport.

Registered through the ``medtransport`` entry-point group in pyproject.toml, exactly as a
third party's plugin would be; model classes are imported only when a scenario uses them.
"""

from __future__ import annotations

from medtransport.hookspecs import ModelSpec, hookimpl
from medtransport_bioheat import __version__


@hookimpl
def medtransport_models() -> list[ModelSpec]:
    return [
        ModelSpec(
            id="bioheat.pennes",
            target="medtransport_bioheat.model:PennesBioheat",
            title="Pennes bioheat with thermal dose",
            version=__version__,
            tags=frozenset({"grid", "deterministic"}),
        )
    ]
