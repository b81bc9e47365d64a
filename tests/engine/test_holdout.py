"""Held-back faces: the last share of each faceset, never trained on, kept across resumed runs."""

import json

import pytest

from engine.errors import EngineError
from engine.holdout import HOLDOUT_FILE, check_share, last_share, read_holdout
from engine.jobs import JobRunner
from engine.recipes import STAGES
from engine.workspace import Workspace

TINY = {"resolution": 32, "arch": "df", "ae_dims": 32, "e_dims": 8, "d_dims": 8, "d_mask_dims": 4,
        "batch_size": 2, "workers": 0}


def test_last_share_is_one_block_at_the_end_and_never_everything():
    assert last_share(list(range(20)), 0.1) == [18, 19]
    assert last_share(list(range(20)), 0.0) == []
    assert last_share([1, 2], 0.5) == [2]
    assert last_share([7], 0.5) == []  # one face: training needs it


@pytest.mark.parametrize("bad", [-0.1, 0.6, "0.1", True, None])
def test_bad_shares_are_refused(bad):
    with pytest.raises(EngineError, match="holdout"):
        check_share(bad)


def test_training_leaves_the_held_back_faces_out_and_a_resume_keeps_the_choice(tmp_path, fill_faceset):
    ws = Workspace(tmp_path / "ws")
    src = fill_faceset(ws, "src", frames=10, people=1)
    dst = fill_faceset(ws, "dst", frames=10, people=1)
    runner = JobRunner(ws, STAGES, recover=False)
    try:
        job = runner.wait(runner.submit("train", {"model": "m", "source": "src", "destination": "dst",
                                                  "iterations": 2, "holdout": 0.2, **TINY})["id"])
        assert job["state"] == "done", job["error"]
        held = read_holdout(ws.model_dir("m"))
        assert held["source"] == {"faceset": "src", "faces": [r.id for r in src[-2:]]}
        assert held["destination"]["faces"] == [r.id for r in dst[-2:]]
        first = (ws.model_dir("m") / HOLDOUT_FILE).read_text()
        job = runner.wait(runner.submit("train", {"model": "m", "source": "src", "destination": "dst",
                                                  "iterations": 4, "holdout": 0.5, **TINY})["id"])
        assert job["state"] == "done", job["error"]
        assert (ws.model_dir("m") / HOLDOUT_FILE).read_text() == first
        assert json.loads(first)["share"] == 0.2
    finally:
        runner.shutdown()
        ws.close()


def test_training_without_a_holdout_writes_none(tmp_path, fill_faceset):
    ws = Workspace(tmp_path / "ws")
    fill_faceset(ws, "src", frames=4, people=1)
    runner = JobRunner(ws, STAGES, recover=False)
    try:
        job = runner.wait(runner.submit("pretrain", {"model": "m", "source": "src", "iterations": 1, **TINY})["id"])
        assert job["state"] == "done", job["error"]
        assert read_holdout(ws.model_dir("m")) is None
    finally:
        runner.shutdown()
        ws.close()


def test_a_damaged_holdout_file_is_refused_clearly(tmp_path):
    (tmp_path / HOLDOUT_FILE).write_text(json.dumps({"share": 0.1, "source": {"faceset": 3, "faces": [1]},
                                                     "destination": {"faceset": "d", "faces": [2]}}))
    with pytest.raises(EngineError, match="damaged"):
        read_holdout(tmp_path)
