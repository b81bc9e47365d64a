"""Service layer: recipes of the mask jobs (train the segmenter, apply it, render a shot's matte).

Kept beside recipes.py, which merges MASK_STAGES into its STAGES table.
"""

from __future__ import annotations

from .jobs import JobContext
from .workspace import Workspace

# --- mask_train and mask_apply (segmentation network) -----------------------------------------

# --- mask_matte (a shot's matte as an image sequence) -----------------------------------------

MASK_STAGES: dict = {}
