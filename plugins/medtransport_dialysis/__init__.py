"""medtransport's dialysis plugin: the dialyser (Michaels diffusion, convection, haemodiafiltration,
access recirculation), urea kinetic modelling (single pool with variable volume, two pools with
rebound) and drug removal by dialysis, each with its books kept session by session."""

__version__ = "0.1.0"
