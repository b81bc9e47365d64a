"""Shared piece: colour statistics and colour transfer between face crops (training and merging)."""

from .transfer import METHODS, transfer_colour

__all__ = ["METHODS", "transfer_colour"]
