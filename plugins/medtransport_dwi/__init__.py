"""medtransport's MRI water diffusion (diffusion-weighted signal) plugin."""

__version__ = "0.1.0"
