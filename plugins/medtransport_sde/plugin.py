"""Entry point of the stochastic-process plugin: registers its models with medtransport.

Registered through the ``medtransport`` entry-point group in pyproject.toml, exactly as a
third party's plugin would be; model classes are imported only when a scenario uses them.
"""

from __future__ import annotations

from medtransport.hookspecs import ModelSpec, hookimpl
from medtransport_sde import __version__

_MODELS = (
    ("sde.ornstein_uhlenbeck", "OrnsteinUhlenbeck", "Ornstein–Uhlenbeck: a signal reverting "
                                                    "to its set point"),
    ("sde.geometric_brownian", "GeometricBrownian", "Geometric Brownian motion: proportional "
                                                    "fluctuations"),
    ("sde.cox_ingersoll_ross", "CoxIngersollRoss", "Cox–Ingersoll–Ross: a level that cannot go "
                                                   "negative"),
    ("sde.jacobi_mixing", "JacobiMixing", "Jacobi mixing: a bounded mixture fraction"),
    ("sde.drifted_brownian", "DriftedBrownian", "Brownian motion with drift: a particle "
                                                "advected and diffusing"),
)


@hookimpl
def medtransport_models() -> list[ModelSpec]:
    specs = [ModelSpec(id=mid, target=f"medtransport_sde.processes:{cls}", title=title,
                       version=__version__, tags=frozenset({"stochastic"}))
             for mid, cls, title in _MODELS]
    specs.append(ModelSpec(id="sde.one_compartment_pk",
                           target="medtransport_sde.pk:StochasticOneCompartment",
                           title="One-compartment PK with system noise on elimination",
                           version=__version__, tags=frozenset({"stochastic", "compartments"})))
    return specs
