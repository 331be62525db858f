"""medtransport's Fickian diffusion plugin: ∂c/∂t = ∇·(D∇c) − k·c + s."""

__version__ = "0.1.0"
