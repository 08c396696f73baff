"""Sluice: a self-hosted recommendation platform (the domain library)."""

__version__ = "0.1.0"
