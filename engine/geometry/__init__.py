"""Shared piece: face geometry (landmark layout, alignment, hull masks) used by every stage."""
