"""Reflection-table statistics for DIALS users, as DIALS programs."""

__version__ = "0.1.0"
