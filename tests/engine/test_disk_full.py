"""Disk full while writing: the write fails as `disk_full` with a message for a person, its temp file
goes, the file it would have replaced stays whole, and the job carries on from there once there is
room again (a real tiny training job and a real tiny merge, with the disk "filling" at the Nth write)."""

import errno
import json
import shutil

import cv2
import pytest

import engine.files
from engine.errors import EngineError
from engine.files import atomic_write
from engine.jobs import JobRunner
from engine.models.checkpoint import load_checkpoint
from engine.recipes import STAGES
from engine.workspace import Workspace

TINY = {"resolution": 32, "ae_dims": 32, "e_dims": 8, "d_dims": 8, "d_mask_dims": 4, "batch_size": 4,
        "workers": 0, "preview_every_s": 0.0}


class FullDisk:
    """engine.files' `open` whose writes of files named like `match` fail with ENOSPC from the
    `after`-th such write on (the earlier ones go through)."""

    def __init__(self, match: str, after: int = 1, code: int = errno.ENOSPC) -> None:
        self.match, self.after, self.code, self.seen = match, after, code, 0

    def __call__(self, path, mode="r", *args, **kwargs):
        f = open(path, mode, *args, **kwargs)
        if "w" not in mode or self.match not in str(path):
            return f
        self.seen += 1
        if self.seen < self.after:
            return f
        full = self

        class Half:  # writes half of the bytes, then the disk is full: a half file exists on disk
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                f.close()

            def write(self, data):
                f.write(bytes(data[: len(data) // 2]))
                f.flush()
                raise OSError(full.code, "No space left on device")

            def __getattr__(self, name):
                return getattr(f, name)

        return Half()


def leftovers(folder):
    return [p.name for p in folder.rglob("*") if p.name.endswith(".tmp")]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EFBIG])
def test_a_full_disk_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch, code):
    target = tmp_path / "out" / "state.json"
    atomic_write(target, b"old")
    monkeypatch.setattr(engine.files, "open", FullDisk("state.json", code=code), raising=False)
    with pytest.raises(EngineError) as err:
        atomic_write(target, b"new and longer")
    assert err.value.code == "disk_full"
    assert str(target.parent) in err.value.message and "state.json was not written" in err.value.message
    assert "free some space" in err.value.message
    assert target.read_bytes() == b"old" and leftovers(tmp_path) == []


def test_other_write_failures_stay_io_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(engine.files, "open", FullDisk("x.bin", code=errno.EIO), raising=False)
    with pytest.raises(EngineError) as err:
        atomic_write(tmp_path / "x.bin", b"data")
    assert err.value.code == "io_error" and leftovers(tmp_path) == []


def test_a_full_catalog_fails_the_change_and_keeps_the_rest(tmp_path):
    ws = Workspace(tmp_path)
    ws.record_model("kept", "a", "b", 1, 0.5)
    pages = ws._db.execute("PRAGMA page_count").fetchone()[0]
    ws._db.execute(f"PRAGMA max_page_count={pages}")  # SQLite's own "database or disk is full"
    with pytest.raises(EngineError) as err:
        with ws.transaction():
            for i in range(2000):
                ws.record_model(f"m{i}", "a" * 200, "b" * 200, i, 0.1)
    assert err.value.code == "disk_full" and "catalog" in err.value.message
    ws._db.execute("PRAGMA max_page_count=1073741823")
    assert [r["name"] for r in ws._q("SELECT name FROM models")] == ["kept"]
    assert ws._q("PRAGMA integrity_check")[0][0] == "ok"
    ws.record_model("after", "a", "b", 1, 0.5)  # room again: the catalog takes changes again


@pytest.fixture(scope="module")
def pair(tmp_path_factory, portrait_clips, wait_job):
    """A workspace with facesets src (hopper) and dst (astronaut) and model m trained 6 iterations."""
    ws = Workspace(tmp_path_factory.mktemp("disk_full") / "ws")
    runner = JobRunner(ws, STAGES)
    try:
        wait_job(runner, "extract", {"video": str(portrait_clips["hopper"]), "faceset": "src", "size": 64})
        wait_job(runner, "extract", {"video": str(portrait_clips["astronaut"]), "faceset": "dst", "size": 64})
        wait_job(runner, "train", {"model": "m", "source": "src", "destination": "dst", "iterations": 6, **TINY})
    finally:
        runner.shutdown()
    return ws


def test_training_fails_clearly_keeps_its_checkpoint_and_resumes_from_it(pair, monkeypatch, wait_job):
    model_dir = pair.model_dir("m")
    before = load_checkpoint(model_dir)[2]
    assert before["iteration"] == 6
    runner = JobRunner(pair, STAGES)
    try:
        monkeypatch.setattr(engine.files, "open", FullDisk("model.safetensors"), raising=False)
        params = {"model": "m", "source": "src", "destination": "dst", "iterations": 12, **TINY}
        job = wait_job(runner, "train", params, state="failed")
        assert job["error"]["code"] == "disk_full", job["error"]
        assert "is full" in job["error"]["message"] and "model.safetensors" in job["error"]["message"]
        _, _, state = load_checkpoint(model_dir)  # the last good checkpoint still loads, as it was
        assert state["iteration"] == 6 and state["history"] == before["history"]
        assert leftovers(model_dir) == []
        monkeypatch.undo()  # room again: the same job resumes from iteration 6, not from zero
        result = wait_job(runner, "train", params)["result"]
        _, _, state = load_checkpoint(model_dir)
        assert result["iterations"] == state["iteration"] == 12
        assert state["history"]["iterations"] == list(range(1, 13))
        assert state["history"]["src"][:6] == before["history"]["src"]
    finally:
        runner.shutdown()


def test_merge_fails_clearly_lists_only_whole_frames_and_finishes_after(pair, monkeypatch, portrait_clips, wait_job):
    out = pair.root / "renders" / "full"
    shutil.rmtree(out, ignore_errors=True)
    params = {"model": "m", "video": str(portrait_clips["astronaut"]), "faceset": "dst", "output": str(out),
              "outputs": ["layer", "matte"], "batch_size": 2}
    runner = JobRunner(pair, STAGES)
    try:
        monkeypatch.setattr(engine.files, "open", FullDisk("frame_", after=7), raising=False)
        job = wait_job(runner, "merge", params, state="failed")
        assert job["error"]["code"] == "disk_full", job["error"]
        assert str(out) in job["error"]["message"] and "frame_" in job["error"]["message"]
        state = json.loads((out / "merge.json").read_text())
        assert len(state["done"]) < 12 and not state["complete"]
        for i in state["done"]:  # every frame it lists is whole
            for name in ("layer", "matte"):
                assert cv2.imread(str(out / name / f"frame_{i:06d}.png"), cv2.IMREAD_UNCHANGED) is not None
        assert leftovers(out) == []
        kept = {i: (out / "layer" / f"frame_{i:06d}.png").stat().st_mtime_ns for i in state["done"]}
        monkeypatch.undo()
        result = wait_job(runner, "merge", params)["result"]
        assert result["merged"] == 12 - len(kept)  # only the missing frames were merged again
        state = json.loads((out / "merge.json").read_text())
        assert state["complete"] and state["done"] == list(range(12))
        for i in range(12):
            for name in ("layer", "matte"):
                assert cv2.imread(str(out / name / f"frame_{i:06d}.png"), cv2.IMREAD_UNCHANGED) is not None
        assert all((out / "layer" / f"frame_{i:06d}.png").stat().st_mtime_ns == t for i, t in kept.items())
    finally:
        runner.shutdown()


def test_extraction_fails_clearly_stores_only_whole_faces_and_finishes_after(pair, monkeypatch, portrait_clips,
                                                                              wait_job):
    runner = JobRunner(pair, STAGES)
    params = {"video": str(portrait_clips["hopper"]), "faceset": "full", "size": 64}
    try:
        monkeypatch.setattr(engine.files, "open", FullDisk("_f0000", after=5), raising=False)
        job = wait_job(runner, "extract", params, state="failed")
        assert job["error"]["code"] == "disk_full" and "was not written" in job["error"]["message"], job["error"]
        for face in pair.facesets.faces("full"):  # every stored face is whole
            assert cv2.imread(str(face.image)) is not None
        assert leftovers(pair.faceset_dir("full")) == []
        monkeypatch.undo()
        result = wait_job(runner, "extract", params)["result"]
        assert result["faces"] == 12 and [f.frame for f in pair.facesets.faces("full")] == list(range(12))
    finally:
        runner.shutdown()
