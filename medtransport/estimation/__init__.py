"""Estimation: residual error models, likelihoods, MAP individualisation and FOCE-I.

Statistics only — generic over any model that returns predictions at records; the core knows
no physics. Submodules are imported when used, so ``import medtransport`` stays fast.
"""

from __future__ import annotations

from medtransport.estimation.residual import ResidualError, ResidualErrorSpec

__all__ = ["ResidualError", "ResidualErrorSpec"]
