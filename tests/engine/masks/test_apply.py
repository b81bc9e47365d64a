"""Tests for engine.masks.apply: a trained mask model writes a learned mask for every face of a
faceset, which mask_of then returns; progress, cancel and a missing model."""

import cv2
import numpy as np
import pytest

from engine.errors import Cancelled, EngineError
from engine.masks.apply import apply_segmenter, mask_model_dir
from engine.masks.learn import SegTrainSettings, train_segmenter
from engine.workspace import Workspace

SIZE = 64  # the side fill_faceset (tests/engine/conftest.py) draws its crops at


@pytest.fixture
def trained(tmp_path, fill_faceset):
    ws = Workspace(tmp_path / "ws")
    faces = fill_faceset(ws)
    crops = np.stack([cv2.imread(str(f.image)) for f in faces[:4]])
    ys, xs = np.mgrid[0:SIZE, 0:SIZE]
    ellipse = (((xs - SIZE / 2) / (SIZE / 4)) ** 2 + ((ys - SIZE / 2) / (SIZE / 3)) ** 2 < 1).astype(np.float32)
    settings = SegTrainSettings(resolution=32, width=4, iterations=30, batch_size=4, learning_rate=3e-3, seed=0)
    train_segmenter(crops, np.repeat(ellipse[None], 4, axis=0), mask_model_dir(ws, "xseg"), settings,
                    lambda *a: None, lambda: False)
    yield ws, faces
    ws.close()


def test_every_face_of_every_person_gets_a_learned_mask(trained):
    ws, faces = trained
    reports = []
    r = apply_segmenter(ws, "xseg", "f", lambda f, text, stats: reports.append(f), lambda: False)
    assert r["faces"] == len(faces) == 10 and r["model"] == "xseg" and r["missing"] == 0
    assert reports[-1] == 1.0 and reports == sorted(reports)
    for face in faces:
        path = ws.masks.learned(face.id)
        assert path is not None and path.parent == face.image.parent
        assert cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).shape == (SIZE, SIZE)
        mask, source = ws.masks.mask_of(face)
        assert source == "learned" and mask.shape == (SIZE, SIZE)
        assert ws.masks.learned_model(face.id) == "xseg"
    # applied again: the same files are replaced, not duplicated
    apply_segmenter(ws, "xseg", "f", lambda *a: None, lambda: False)
    assert len(list(faces[0].image.parent.glob("*_learned.png"))) == 10
    assert ws.masks.remove_learned("f") == 10 and ws.masks.mask_of(faces[0])[1] == "hull"


def test_cancel_and_missing_model_or_faces(trained):
    ws, faces = trained
    with pytest.raises(Cancelled):
        apply_segmenter(ws, "xseg", "f", lambda *a: None, lambda: True)
    assert all(ws.masks.learned(f.id) is None for f in faces)
    with pytest.raises(EngineError) as e:
        apply_segmenter(ws, "other", "f", lambda *a: None, lambda: False)
    assert e.value.code == "not_found"
    with pytest.raises(EngineError) as e:
        apply_segmenter(ws, "../up", "f", lambda *a: None, lambda: False)
    assert e.value.code == "bad_request"
    faces[0].image.unlink()
    r = apply_segmenter(ws, "xseg", "f", lambda *a: None, lambda: False)
    assert r["faces"] == 9 and r["missing"] == 1
