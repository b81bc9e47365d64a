"""Tests for engine.masks.occlusion and its benchmark: occluders land on the face, the truth is the
hull minus exactly the occluders' pixels, test sets never reuse training frames, and the benchmark
skips clearly without the shared clips."""

import numpy as np
import pytest

from engine.geometry.align import FACE_TYPES, template_points
from engine.geometry.hull import hull_mask
from engine.masks import occlusion_bench
from engine.masks.occlusion import OCCLUDERS, face_region, iou, occlude, skin_colour

S = 128


def face(seed: int = 0):
    rng = np.random.default_rng(seed)
    lm = template_points(S, FACE_TYPES["full"]) + rng.normal(0, 0.5, (68, 2))
    img = np.full((S, S, 3), 40, np.uint8)
    img[face_region(lm, S) > 0] = (90, 140, 200)
    return img, lm.astype(np.float32)


@pytest.mark.parametrize("kind", sorted(OCCLUDERS))
def test_each_occluder_covers_part_of_the_face_and_the_truth_excludes_it(kind):
    img, lm = face()
    rng = np.random.default_rng(1)
    for _ in range(5):
        o = occlude(img, lm, rng, [kind])
        assert o.image.shape == img.shape and o.image.dtype == np.uint8 and o.kinds == [kind]
        assert np.array_equal(o.hull, face_region(lm, S))
        assert np.array_equal(o.truth, o.hull * (o.alpha < 0.5))
        covered = 1 - o.truth.sum() / o.hull.sum()
        assert 0.002 < covered < 0.8  # some of the face is hidden, not all of it
        changed = np.abs(o.image.astype(int) - img.astype(int)).max(axis=2) > 2
        assert not changed[o.alpha == 0].any()  # nothing is drawn outside the occluder's alpha
        assert changed[o.alpha > 0.9].mean() > 0.5


def test_random_kinds_and_skin_colour():
    img, lm = face()
    rng = np.random.default_rng(2)
    kinds = {k for _ in range(20) for k in occlude(img, lm, rng).kinds}
    assert kinds == set(OCCLUDERS)
    assert np.allclose(skin_colour(img, lm), (90, 140, 200), atol=1)


def test_iou_and_face_region():
    a = np.zeros((10, 10), np.float32)
    b = a.copy()
    a[:5] = 1
    b[:, :5] = 1
    assert iou(a, b) == pytest.approx(25 / 75) and iou(a, a) == 1.0 and iou(a * 0, b * 0) == 1.0
    img, lm = face()
    assert np.array_equal(face_region(lm, S), (hull_mask(lm, (S, S)) >= 0.5).astype(np.float32))


def test_benchmark_sets_keep_training_and_test_faces_apart(monkeypatch):
    monkeypatch.setattr(occlusion_bench, "TEST_PER_CLIP", 3)
    faces = {}
    for k, name in enumerate(occlusion_bench.TRAIN_CLIPS + occlusion_bench.UNSEEN_CLIPS):
        imgs, lms = zip(*(face(100 * k + i) for i in range(40)))
        faces[name] = (np.stack(imgs), np.stack(lms))
    sets = occlusion_bench.build_sets(faces, seed=0)
    images, truths, hulls = sets["train"]
    assert len(images) == occlusion_bench.LABELLED == 20
    assert len(sets["seen_people"][0]) == 3 * len(occlusion_bench.TRAIN_CLIPS)
    assert len(sets["unseen_people"][0]) == 3 * len(occlusion_bench.UNSEEN_CLIPS)
    assert (truths.sum(axis=(1, 2)) < hulls.sum(axis=(1, 2))).all()
    picks = sets["picks"]
    assert not set(picks["train"]) & set(picks["seen_people"])
    assert {c for c, _ in picks["unseen_people"]}.isdisjoint(c for c, _ in picks["train"])
    last_train = {c: max(i for cc, i in picks["train"] if cc == c) for c, _ in picks["train"]}
    assert all(i >= last_train[c] + 10 for c, i in picks["seen_people"])


def test_benchmark_skips_without_the_shared_clips(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(occlusion_bench, "SHARED_FACES", tmp_path / "nowhere")
    r = occlusion_bench.bench_occlusion(1.0, extract=lambda *a: pytest.fail("nothing to extract"))
    assert r["skipped"].startswith("skipped") and "nowhere" in r["skipped"]
    assert "skipped" in capsys.readouterr().out


def test_the_benchmark_is_registered(monkeypatch, tmp_path):
    from engine import bench

    monkeypatch.setattr(occlusion_bench, "SHARED_FACES", tmp_path / "nowhere")
    assert "skipped" in bench.BENCHMARKS["occlusion"](1.0)
