"""medtransport's contrast dye (DCE-MRI / CT tracer kinetics) plugin."""

__version__ = "0.1.0"
