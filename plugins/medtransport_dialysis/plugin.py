"""Entry point of the dialysis plugin: registers its models with medtransport.

Registered through the ``medtransport`` entry-point group in pyproject.toml, exactly as a
third party's plugin would be; the model classes are imported only when a scenario uses them.
"""

from __future__ import annotations

from medtransport.hookspecs import ModelSpec, hookimpl
from medtransport_dialysis import __version__

_TAGS = frozenset({"compartments", "deterministic"})


@hookimpl
def medtransport_models() -> list[ModelSpec]:
    return [
        ModelSpec(id="dialysis.urea_single_pool",
                  target="medtransport_dialysis.model:UreaSinglePool",
                  title="Urea kinetics, single pool with variable volume",
                  version=__version__, tags=_TAGS),
        ModelSpec(id="dialysis.urea_two_pool",
                  target="medtransport_dialysis.model:UreaTwoPool",
                  title="Urea kinetics, two pools (extracellular/intracellular) with rebound",
                  version=__version__, tags=_TAGS),
        ModelSpec(id="dialysis.drug", target="medtransport_dialysis.drug:DialysisDrug",
                  title="A drug in a dialysis patient", version=__version__, tags=_TAGS),
    ]
