"""medtransport's generative noise (DDPM forward process and analytic reverse) plugin."""

__version__ = "0.1.0"
