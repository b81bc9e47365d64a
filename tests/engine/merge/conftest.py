"""Shared by the merge tests: one tiny trained pair, built once and copied per test module (tests draw
labels and merge into it), and the comparison of pixels merged in different model batches."""

import shutil

import numpy as np
import pytest

from engine.jobs import JobRunner
from engine.recipes import STAGES
from engine.workspace import Workspace

TINY = {"resolution": 32, "ae_dims": 32, "e_dims": 8, "d_dims": 8, "d_mask_dims": 4, "batch_size": 4}


@pytest.fixture(scope="session")
def _tiny_pair(tmp_path_factory, portrait_clips, wait_job):
    root = tmp_path_factory.mktemp("merge_pair") / "ws"
    ws = Workspace(root)
    runner = JobRunner(ws, STAGES)
    try:
        wait_job(runner, "extract", {"video": str(portrait_clips["hopper"]), "faceset": "src", "size": 128})
        wait_job(runner, "extract", {"video": str(portrait_clips["astronaut"]), "faceset": "dst", "size": 128})
        wait_job(runner, "train", {"model": "m", "source": "src", "destination": "dst", "iterations": 12, **TINY})
        wait_job(runner, "train", {"model": "gray", "source": "src", "destination": "dst", "iterations": 12,
                                   "grayscale": True, **TINY})
    finally:
        runner.shutdown()
        ws.close()
    return root


@pytest.fixture(scope="module")
def tiny_pair(_tiny_pair, tmp_path_factory):
    """A workspace of this module's own: facesets "src" (hopper) and "dst" (astronaut, the shot), and
    models "m" and "gray" (grayscale) trained 12 iterations at 32 px."""
    copy = tmp_path_factory.mktemp("ws") / "ws"
    shutil.copytree(_tiny_pair, copy)
    return Workspace(copy)


@pytest.fixture(scope="session")
def about_equal():
    def close(a, b) -> bool:
        """Equal up to the model's rounding: its float results vary by the last bit with the batch a face
        ran in, and colour transfer's scaling can carry that to a level or two here and there."""
        diff = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
        return diff.max() <= 3 and diff.mean() < 0.05
    return close
