"""csale_app: ALE, C-SALE and MACM coordinate-based meta-analysis as a BIDS App."""

__version__ = "0.1.0"
