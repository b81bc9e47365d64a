"""What a killed job leaves behind (files written after its last commit, temp files of writes cut
short) is never taken for finished work, and a resumed job clears it away."""

import os

import cv2
import numpy as np
import pytest

from engine.errors import Cancelled
from engine.faces.extract import ExtractParams, extract_faces
from engine.files import atomic_write, remove_stale_temps
from engine.workspace import Workspace


def test_stale_temps_of_other_processes_go_and_this_ones_stay(tmp_path):
    other = tmp_path / f".a.png.{os.getpid() + 1}.1.tmp"
    mine = tmp_path / f".b.png.{os.getpid()}.1.tmp"
    kept = [tmp_path / "frame.png", tmp_path / ".hidden", tmp_path / "x.tmp"]
    for path in (other, mine, *kept):
        path.write_bytes(b"half")
    assert remove_stale_temps(tmp_path) == 1
    assert not other.exists() and mine.exists() and all(p.exists() for p in kept)
    assert remove_stale_temps(tmp_path / "missing") == 0


def test_a_resumed_extraction_clears_what_the_killed_one_left(tmp_path, portrait_clips):
    ws = Workspace(tmp_path)
    clip = str(portrait_clips["hopper"])
    calls = []

    def stop_after_four():
        calls.append(1)
        return len(calls) > 4

    with pytest.raises(Cancelled):
        extract_faces(ws, ExtractParams(video=clip, faceset="src", size=64), lambda *a: None, stop_after_four)
    committed = {f.frame for f in ws.facesets.faces("src")}
    folder = ws.faceset_dir("src")
    media = ws.media_id(clip)
    # as a SIGKILL after the crops were written and before their rows were committed would leave them
    orphan = folder / f"m{media}_f000010_3.jpg"
    atomic_write(orphan, cv2.imencode(".jpg", np.zeros((64, 64, 3), np.uint8))[1].tobytes())
    temp = folder / f".m{media}_f000011_0.jpg.{os.getpid() + 1}.7.tmp"
    temp.write_bytes(b"half a jpeg")
    assert 10 not in committed and 11 not in committed
    extract_faces(ws, ExtractParams(video=clip, faceset="src", size=64), lambda *a: None, lambda: False)
    faces = ws.facesets.faces("src")
    assert [f.frame for f in faces] == list(range(12))
    assert not orphan.exists() and not temp.exists()
    assert sorted(p.name for p in folder.iterdir()) == sorted(f.image.name for f in faces)


def test_training_clears_the_checkpoint_a_killed_run_was_writing(tmp_path):
    from engine.geometry.align import face_type, template_points
    from engine.models.checkpoint import load_checkpoint
    from engine.train.loop import train_pair
    from engine.train.samples import FaceSamples
    from engine.train.settings import TrainSettings

    rng = np.random.default_rng(0)
    lm = np.stack([template_points(64, face_type("full"))] * 4).astype(np.float32)
    faces = FaceSamples(rng.integers(0, 255, (4, 64, 64, 3), np.uint8), lm)
    half = tmp_path / f".model.safetensors.{os.getpid() + 1}.1.tmp"
    half.parent.mkdir(parents=True, exist_ok=True)
    half.write_bytes(b"half a checkpoint")
    settings = TrainSettings.from_dict({"resolution": 32, "ae_dims": 32, "e_dims": 8, "d_dims": 8, "d_mask_dims": 4,
                                        "batch_size": 2, "workers": 0, "preview_every_s": 0.0, "iterations": 2})
    train_pair(faces, faces, tmp_path, settings, lambda *a: None, lambda: False)
    assert not half.exists() and load_checkpoint(tmp_path)[2]["iteration"] == 2
