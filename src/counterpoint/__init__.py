"""Counterpoint: omnichannel engagement between life-sciences companies and HCPs."""

__all__ = ["__version__"]

__version__ = "0.1.0"
