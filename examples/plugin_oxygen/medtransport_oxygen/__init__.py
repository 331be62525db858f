"""medtransport-oxygen: oxygen delivery from a capillary into tissue (the Krogh cylinder).

A third-party plugin for medtransport, written against its public API only.
"""

__version__ = "0.1.0"
