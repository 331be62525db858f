"""medtransport's tissue heat (Pennes bioheat) plugin."""

__version__ = "0.1.0"
