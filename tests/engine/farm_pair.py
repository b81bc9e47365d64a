"""Shared by the bundle and farm tests: one tiny trained pair (built once per test run), a merge of
it run in-process, and the comparison of two merged folders."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np

from engine.jobs import JobRunner
from engine.recipes import STAGES
from engine.workspace import Workspace

TINY = {"resolution": 32, "ae_dims": 32, "e_dims": 8, "d_dims": 8, "d_mask_dims": 4, "batch_size": 4}
_BUILT: dict[str, Path] = {}


def run_job(ws: Workspace, kind: str, params: dict) -> dict:
    runner = JobRunner(ws, STAGES)
    try:
        job = runner.wait(runner.submit(kind, params)["id"], timeout=300)
    finally:
        runner.shutdown()
    assert job["state"] == "done", job["error"]
    return job["result"]


def tiny_pair(tmp_path_factory, clips: dict[str, Path]) -> Path:
    """A workspace with facesets "src" (hopper) and "dst" (astronaut, the shot) and a model "m"
    trained 12 iterations at 32 px; built on the first call, then the same folder (copy it to edit)."""
    if "pair" not in _BUILT:
        root = tmp_path_factory.mktemp("farm_pair") / "ws"
        ws = Workspace(root)
        try:
            run_job(ws, "extract", {"video": str(clips["hopper"]), "faceset": "src", "size": 128})
            run_job(ws, "extract", {"video": str(clips["astronaut"]), "faceset": "dst", "size": 128})
            run_job(ws, "train", {"model": "m", "source": "src", "destination": "dst", "iterations": 12, **TINY})
        finally:
            ws.close()
        _BUILT["pair"] = root
    return _BUILT["pair"]


def copy_of(root: Path, dest: Path) -> Path:
    shutil.copytree(root, dest)
    return dest


def read_sequence(folder: Path) -> dict[str, np.ndarray]:
    """Every frame PNG of a merged folder's layer/ and matte/, by "layer/frame_000001.png"."""
    return {f"{seq}/{p.name}": cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
            for seq in ("layer", "matte") for p in sorted((Path(folder) / seq).glob("frame_*.png"))}


def about_equal(a, b) -> bool:
    """Equal up to the model's rounding (as tests/engine/merge/conftest.py's about_equal): its float
    results vary by the last bit with the batch a face ran in."""
    diff = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    return diff.max() <= 3 and diff.mean() < 0.05
