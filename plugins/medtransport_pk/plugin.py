"""Entry point of the pharmacokinetics plugin: registers its models with medtransport.

Registered through the ``medtransport`` entry-point group in pyproject.toml, exactly as a
third party's plugin would be; the model classes are imported only when a scenario uses them.
"""

from __future__ import annotations

from medtransport.hookspecs import ModelSpec, hookimpl
from medtransport_pk import __version__

_TAGS = frozenset({"compartments", "deterministic"})


@hookimpl
def medtransport_models() -> list[ModelSpec]:
    return [
        ModelSpec(id="pk.one_compartment", target="medtransport_pk.model:OneCompartment",
                  title="One-compartment pharmacokinetics", version=__version__, tags=_TAGS),
        ModelSpec(id="pk.two_compartment", target="medtransport_pk.model:TwoCompartment",
                  title="Two-compartment pharmacokinetics", version=__version__, tags=_TAGS),
        ModelSpec(id="pk.three_compartment", target="medtransport_pk.model:ThreeCompartment",
                  title="Three-compartment pharmacokinetics", version=__version__, tags=_TAGS),
    ]
