"""Shared piece: faces a model never trains on, so a quality report can measure how well it
reconstructs faces it has not seen (`train --holdout SHARE`, `evaluate --model`).

The held-back faces are the last SHARE of each faceset in frame order: one block at the end of the
clip. Picking every Nth face instead would hold back near copies of neighbours the model learned, and
the "unseen" figure would read as well as the seen one. The choice is written once, beside the model's
weights, and a resumed run keeps it, so later faces added to a faceset are trained on.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from .errors import EngineError
from .files import atomic_write

HOLDOUT_FILE = "holdout.json"
MAX_SHARE = 0.5


def check_share(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_SHARE:
        raise EngineError("bad_request", f"'holdout' must be a share of the faces from 0 to {MAX_SHARE}, got {value!r}")
    return float(value)


def last_share(face_ids: list[int], share: float) -> list[int]:
    """The ids in the last `share` of a list in frame order (none when share is 0; never all)."""
    if share <= 0 or len(face_ids) < 2:
        return []
    count = min(len(face_ids) - 1, math.ceil(share * len(face_ids)))
    return list(face_ids[len(face_ids) - count:])


def read_holdout(model_dir: Path) -> dict | None:
    """{"share", "source": {"faceset", "faces"}, "destination": {...}} or None when nothing was held back."""
    path = Path(model_dir) / HOLDOUT_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        for side in ("source", "destination"):
            data[side]["faces"] = [int(i) for i in data[side]["faces"]]
            if not isinstance(data[side]["faceset"], str):
                raise TypeError(f"{side} faceset is not a name")
    except (ValueError, KeyError, TypeError) as exc:
        raise EngineError("corrupt_checkpoint", f"{path} is damaged ({exc}); delete it to choose again") from None
    return data


def held_back(ws, model_dir: Path, source: str, destination: str, share: float) -> dict | None:
    """The model's held-back faces: chosen now (and written) on its first run, read on later ones.

    A resumed run with another share, or other facesets, keeps the first choice: changing it would
    let the model train on faces a report then calls unseen.
    """
    existing = read_holdout(model_dir)
    if existing is not None:
        return existing
    if share <= 0:
        return None
    data = {"share": share}
    for side, name in (("source", source), ("destination", destination)):
        ids = [r.id for r in ws.facesets.faces(name)]
        data[side] = {"faceset": name, "faces": last_share(ids, share)}
    Path(model_dir).mkdir(parents=True, exist_ok=True)
    atomic_write(Path(model_dir) / HOLDOUT_FILE, json.dumps(data, indent=1).encode())
    return data
