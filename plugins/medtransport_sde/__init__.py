"""medtransport's stochastic-process plugin: named Itô SDEs with medical meaning (OU, GBM, CIR,
Jacobi mixing, stochastic one-compartment PK, Brownian motion with drift), run on the core's
SDE engine (:mod:`medtransport.numerics.sde`) and audited like every other model."""

__version__ = "0.1.0"
