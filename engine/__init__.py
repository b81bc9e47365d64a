"""Swapline engine: the out-of-process worker that extracts, trains and merges faces.

Layering (imports point downward only): cli/service → stages (faces, train, merge) →
shared pieces (media, workspace, geometry, models, errors).
"""

__version__ = "0.1.0"
