"""medtransport's drug pharmacokinetics plugin: linear 1–3-compartment models with NONMEM-style
dosing (bolus, zero-order infusion, first-order absorption with lag and bioavailability,
additional doses and steady state), solved exactly."""

__version__ = "0.1.0"
