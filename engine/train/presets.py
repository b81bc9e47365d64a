"""Train stage: named starting points for a training run (each a partial TrainSettings dict).

A preset fills in the model's shape and the run's pace; anything the user sets on top wins.
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    # a first look at a pair on a laptop CPU: minutes, not hours; blurry but shows the swap working
    "quick": {"resolution": 64, "arch": "df-ud", "ae_dims": 128, "e_dims": 32, "d_dims": 16, "d_mask_dims": 8,
              "batch_size": 8, "face_type": "full"},
    "128": {"resolution": 128, "arch": "liae-ud", "ae_dims": 256, "e_dims": 64, "d_dims": 64, "d_mask_dims": 16,
            "batch_size": 8, "face_type": "full"},
    "192": {"resolution": 192, "arch": "liae-ud", "ae_dims": 256, "e_dims": 64, "d_dims": 64, "d_mask_dims": 22,
            "batch_size": 8, "face_type": "full"},
    "256_wf": {"resolution": 256, "arch": "liae-udt", "ae_dims": 256, "e_dims": 64, "d_dims": 64,
               "d_mask_dims": 22, "batch_size": 8, "face_type": "whole_face"},
}
