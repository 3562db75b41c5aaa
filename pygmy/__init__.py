"""Pygmy: a replicated online bookstore (frontend, catalog and order tiers)."""

__version__ = "0.1.0"
