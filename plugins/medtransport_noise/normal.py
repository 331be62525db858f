"""Seeded standard-normal noise and the fused closed-form noising, from the core generator.

The generator lives in :mod:`medtransport.numerics.normal` (shared by every plugin that needs
normals); this module keeps the plugin's import path. :func:`add_noise` is the closed-form
marginal of the forward process (REFERENCES §5),

    x_t = √ᾱ_t·x₀ + √(1 − ᾱ_t)·ε,

per row, with the coefficients given in float64 and cast to the data's dtype last.

Seeding: the guarantee is unchanged — an array is bitwise reproducible from its seed (an int or a
``numpy.random.SeedSequence``) whatever the number of threads. The values are not those of
earlier versions (which drew Box–Muller pairs from 8 SFC64 streams spawned from the seed): the
same seed now gives a different, equally valid draw, element ``g`` of the core's counter-based
stream, so an array is also the same however it is split into pieces (``offset``).
"""

from __future__ import annotations

from medtransport.numerics.normal import add_noise, fill_standard_normal, standard_normal

__all__ = ["add_noise", "fill_standard_normal", "standard_normal"]
