"""Masks stage: applying a trained mask model to every face of a faceset (learned mask PNGs).

Each mask is an 8-bit gray PNG at the crop's size beside the crop (ws.masks.learned_path), written
atomically; a batch's files are synced once and then recorded in one catalog transaction, so a kill
leaves at most a few orphan files and never a row pointing at a missing or half-written mask.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from engine.errors import Cancelled, EngineError
from engine.files import sync_folder_of
from engine.media.encode import write_image
from engine.models.checkpoint import has_checkpoint
from engine.models.segmenter import Segmenter, mask_model_dir  # noqa: F401 (mask_model_dir: the recipes' too)
from engine.workspace import Workspace

BATCH = 16


def apply_segmenter(ws: Workspace, model: str, faceset: str, report: Callable[[float, str, dict], None],
                    should_stop: Callable[[], bool], device: str = "auto") -> dict[str, Any]:
    """Predict and store a learned mask for every face of `faceset` (all people); {"faces", "model", ...}."""
    directory = mask_model_dir(ws, model)
    if not has_checkpoint(directory):
        raise EngineError("not_found", f"no mask model {model!r} in this workspace; train it first")
    records = ws.facesets.faces(faceset, everyone=True)
    if not records:
        raise EngineError("no_faces", f"faceset {faceset!r} has no faces to mask")
    segmenter = Segmenter.load(directory, device)
    started, done, missing = time.monotonic(), 0, 0
    for start in range(0, len(records), BATCH):
        if should_stop():
            raise Cancelled()  # the batches already recorded keep their masks
        batch = records[start:start + BATCH]
        crops = {r.id: cv2.imread(str(r.image)) for r in batch}
        items: list[tuple[int, Path]] = []
        # crops of one faceset share a size; grouping keeps a hand-resized one from failing the batch
        by_size: dict[tuple, list] = {}
        for r in batch:
            if crops[r.id] is None:
                missing += 1  # a crop deleted by hand: no mask, not fatal
                continue
            by_size.setdefault(crops[r.id].shape, []).append(r)
        for group in by_size.values():
            masks = segmenter.predict(np.stack([crops[r.id] for r in group]))
            for r, mask in zip(group, masks):
                path = ws.masks.learned_path(r)
                write_image(path, (mask * 255.0 + 0.5).astype(np.uint8), sync_folder=False)
                items.append((int(r.id), path))
        if items:
            sync_folder_of(items[0][1])
            ws.masks.set_learned(items, model)
        done += len(items)
        fraction = min(1.0, (start + len(batch)) / len(records))
        report(fraction, f"masked {done} of {len(records)} faces", {"faces": done})
    seconds = time.monotonic() - started
    report(1.0, f"masked {done} faces of {faceset!r} with {model!r}", {"faces": done})
    return {"faces": done, "model": model, "faceset": faceset, "missing": missing, "seconds": seconds,
            "model_iterations": segmenter.iterations}
