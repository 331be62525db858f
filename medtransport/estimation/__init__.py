"""Estimation: residual error models, likelihoods, MAP individualisation and FOCE-I.

Statistics only — generic over any model that returns predictions at records; the core knows
no physics. Submodules are imported when used, so ``import medtransport`` stays fast.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ResidualError", "ResidualErrorSpec"]


def __getattr__(name: str) -> Any:
    # lazily: the CLI registers the estimation commands at start-up, and pint (which the
    # residual error model needs) is not needed for `--help` or `models`
    if name in __all__:
        from medtransport.estimation import residual

        return getattr(residual, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
