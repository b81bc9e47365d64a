"""ShotMerger, the per-frame pipeline: steady placement, prediction cache, animated keys, mask
sources, temporal colour and the neighbours a preview fetches."""

import time

import cv2
import numpy as np
import pytest

from engine.errors import EngineError
from engine.media.decode import iter_frames
from engine.merge.frame import ShotMerger
from engine.merge.settings import MergeSettings
from engine.merge.temporal import flicker


@pytest.fixture(scope="module")
def shot(tiny_pair, portrait_clips):
    """A workspace with a tiny trained model, the destination clip and its decoded frames."""
    ws = tiny_pair
    frames = dict(iter_frames(portrait_clips["astronaut"]))
    yield ws, str(portrait_clips["astronaut"]), frames


def _merger(shot, model="m", **kw):
    ws, video, frames = shot
    return ShotMerger(ws, model, video, "dst", device="cpu", **kw)


def _jitter(series: dict) -> float:
    """Mean size of the second difference (acceleration) of the transforms: wobble, not motion."""
    keys = sorted(series)
    return float(np.mean([np.abs(series[a] - 2 * series[b] + series[c]).mean()
                          for a, b, c in zip(keys, keys[1:], keys[2:])]))


def test_smoothing_the_placement_reduces_its_frame_to_frame_jitter(shot):
    merger = _merger(shot)
    assert merger.frames_with_faces() == sorted(shot[2])
    track = merger.by_frame[0][0].track
    raw = merger.placements(MergeSettings(smooth_placement=0.0), track)
    steady = merger.placements(MergeSettings(smooth_placement=2.0), track)
    assert sorted(raw) == sorted(steady) == sorted(shot[2])
    assert _jitter(steady) < 0.5 * _jitter(raw)


def test_settings_changes_reuse_the_prediction_and_keys_animate_the_erosion(shot):
    ws, video, frames = shot
    merger = _merger(shot)
    items = [(i, frames[i]) for i in (3, 4)]
    s = MergeSettings(smooth_colour=0.0, blur=0.0)
    first = merger.merge_frames(items, s)
    assert merger.model_faces == 2 and [len(p) for p in first] == [1, 1]
    # erosion keyed from 0 at frame 3 to 0.2 at frame 4: the second face's alpha shrinks
    keyed = MergeSettings(smooth_colour=0.0, blur=0.0, keys={"erode": [[3, 0.0], [4, 0.2]]})
    patches = merger.merge_frames(items, keyed)
    assert merger.model_faces == 2, "a settings change with the same placement re-ran the model"
    area = [p[0].alpha.sum() for p in patches]
    plain = [p[0].alpha.sum() for p in merger.merge_frames(items, MergeSettings(smooth_colour=0.0, blur=0.0,
                                                                                  erode=0.0))]
    assert abs(area[0] - plain[0]) < 0.01 * plain[0] and area[1] < 0.7 * plain[1]
    # another placement smoothing moves the crop: the model runs again
    merger.merge_frames(items, MergeSettings(smooth_colour=0.0, smooth_placement=4.0))
    assert merger.model_faces == 4
    patch = first[0][0]
    x0, y0, x1, y1 = patch.box
    assert patch.rgb.shape == (y1 - y0, x1 - x0, 3) and patch.alpha.shape == (y1 - y0, x1 - x0)
    assert 0 <= x0 < x1 <= 320 and 0 <= y0 < y1 <= 240 and patch.alpha.max() > 0.99


def test_mask_sources_and_a_missing_segmentation_model(shot):
    ws, video, frames = shot
    merger = _merger(shot)
    items = [(5, frames[5])]
    area = {mask: merger.merge_frames(items, MergeSettings(mask=mask, smooth_colour=0.0))[0][0].alpha.sum()
            for mask in ("hull", "pred", "dst", "hull*pred")}
    assert area["hull*pred"] <= min(area["hull"], area["pred"]) + 1
    assert abs(area["dst"] - area["hull"]) < 1, "without a drawn mask the destination's mask is its hull"
    with pytest.raises(EngineError) as err:
        merger.merge_frames(items, MergeSettings(mask="hull*seg-dst", seg_model="xseg"))
    assert err.value.code == "not_found" and "'xseg'" in err.value.message


def test_a_trained_segmentation_model_masks_the_face(shot):
    from engine.masks.learn import SegTrainSettings, train_segmenter
    from engine.models.segmenter import mask_model_dir

    ws, video, frames = shot
    crops = np.stack([np.full((64, 64, 3), 90, np.uint8)] * 4)
    ellipse = np.zeros((64, 64), np.float32)
    ellipse[16:48, 20:44] = 1
    train_segmenter(crops, np.repeat(ellipse[None], 4, axis=0), mask_model_dir(ws, "seg"),
                    SegTrainSettings(resolution=64, width=4, iterations=2, device="cpu"), lambda *a: None,
                    lambda: False)
    merger = _merger(shot)
    hull = merger.merge_frames([(5, frames[5])], MergeSettings(mask="hull", smooth_colour=0.0))[0][0]
    for mask in ("hull*seg-dst", "hull*seg-pred"):
        patches = merger.merge_frames([(5, frames[5])], MergeSettings(mask=mask, seg_model="seg", smooth_colour=0.0))
        assert len(patches[0]) == 1 and patches[0][0].alpha.sum() <= hull.alpha.sum() + 1
    assert list(merger._segmenters) == ["seg"] and merger.model_faces == 1


def test_temporal_colour_steadies_the_face_and_the_preview_fetches_neighbours(shot, about_equal):
    ws, video, frames = shot
    items = sorted(frames.items())
    flick = {}
    for sigma in (0.0, 3.0):
        merger = _merger(shot)
        patches = merger.merge_frames(items, MergeSettings(smooth_colour=sigma, smooth_placement=0.0))
        means = []
        for (_, frame), (patch,) in zip(items, patches):
            x0, y0, x1, y1 = patch.box
            inside = patch.alpha > 0.9
            means.append(patch.rgb[inside].astype(np.float64).mean(0))
        flick[sigma] = np.mean(np.abs(np.diff(np.array(means), axis=0)))
    assert flick[3.0] < flick[0.0], flick
    # the preview merges one frame and fetches the neighbours its smoothing reads (+-3 frames)
    asked = []
    merger = _merger(shot, frame_at=lambda n: asked.append(n) or frames.get(n))
    merger.merge_frames([(5, frames[5])], MergeSettings(smooth_colour=1.0))
    assert sorted(asked) == [2, 3, 4, 6, 7, 8] and merger.model_faces == 7
    merger.merge_frames([(6, frames[6])], MergeSettings(smooth_colour=1.0))
    assert asked[6:] == [9], "known neighbours are not fetched again"
    # the whole window is read, inside the shot's bounds only
    near = _merger(shot, frame_at=lambda n: asked.append(n) or frames.get(n))
    asked.clear()
    (alone,) = near.merge_frames([(5, frames[5])], MergeSettings(smooth_colour=1.0), bounds=(3, 7))
    assert sorted(asked) == [3, 4, 6] and near.model_faces == 4
    # and it is what a merge of the whole shot gives that frame (the job's way: every frame, in order)
    shot_patches = _merger(shot).merge_frames([(i, frames[i]) for i in range(3, 7)], MergeSettings(smooth_colour=1.0))
    assert alone[0].box == shot_patches[2][0].box
    assert about_equal(alone[0].rgb, shot_patches[2][0].rgb)
    assert about_equal(alone[0].alpha * 255, shot_patches[2][0].alpha * 255)


def test_the_same_frame_merges_the_same_whatever_was_merged_before(shot, about_equal):
    ws, video, frames = shot
    s = MergeSettings(smooth_colour=2.0)
    fresh = _merger(shot, frame_at=frames.get).merge_frames([(6, frames[6])], s, bounds=(0, 12))[0][0]
    merger = _merger(shot, frame_at=frames.get)
    for index in (0, 11, 5, 7):  # scrubbing elsewhere first fills the means around frame 6 unevenly
        merger.merge_frames([(index, frames[index])], s, bounds=(0, 12))
    again = merger.merge_frames([(6, frames[6])], s, bounds=(0, 12))[0][0]
    # up to a rounding: the model's float results vary by the last bit with the batch a face ran in
    assert again.box == fresh.box and about_equal(again.rgb, fresh.rgb)
    assert about_equal(again.alpha * 255, fresh.alpha * 255)


def test_finish_only_settings_reuse_the_prepared_faces_and_means(shot):
    ws, video, frames = shot
    asked = []
    merger = _merger(shot, frame_at=lambda n: asked.append(n) or frames.get(n))
    base = MergeSettings(smooth_colour=1.0)
    merger.merge_frames([(5, frames[5])], base)
    assert merger.model_faces == 7 and len(asked) == 6
    sharper = MergeSettings(smooth_colour=1.0, sharpen=0.5, denoise=0.2, face_scale=0.05)
    assert merger.prepare_digest(sharper) == merger.prepare_digest(base) != merger.prepare_digest(
        MergeSettings(smooth_colour=1.0, erode=0.1))
    # a wider colour smoothing reuses the means it has and prepares only the new neighbours
    assert merger.prepare_digest(MergeSettings(smooth_colour=2.0)) == merger.prepare_digest(base)
    merger.merge_frames([(5, frames[5])], sharper)
    assert len(asked) == 6, "a sharpening change prepared neighbours again"
    merger.merge_frames([(5, frames[5])], MergeSettings(smooth_colour=2.0))
    assert sorted(asked[6:]) == [0, 1, 9, 10, 11]  # the window grew from 2..8 to 0..11 (12 frames)


def test_drawn_exclusion_zones_stay_out_of_every_mask_source(shot):
    ws, video, frames = shot
    face = next(f for f in ws.facesets.faces("dst") if f.frame == 7)
    s = MergeSettings(mask="hull", smooth_colour=0.0, erode=0.0, blur=0.0)
    before = _merger(shot).merge_frames([(7, frames[7])], s)[0][0]
    shaped = {mask: MergeSettings(mask=mask, smooth_colour=0.0, erode=-0.05, blur=0.05)
              for mask in ("hull", "pred", "dst")}
    # how strong each source is unlabelled: the fixture's tiny model predicts a faint mask of its own
    strongest = {mask: _merger(shot).merge_frames([(7, frames[7])], shaped[mask])[0][0].alpha.max() for mask in shaped}
    # a drawn zone over the left half of the stored crop: an occluder the merge must keep in front
    ws.masks.set_label(face.id, [{"include": True, "points": [[0, 0], [1, 0], [1, 1], [0, 1]]},
                                 {"include": False, "points": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}])
    try:
        for mask in ("hull", "pred", "dst"):
            patch = _merger(shot).merge_frames([(7, frames[7])], shaped[mask])[0][0]
            # the zone in frame pixels: the stored crop's left half mapped back through the face's transform
            inv = cv2.invertAffineTransform(face.transform)
            size = face.size
            zone = cv2.warpAffine(np.ones((size, size // 2), np.uint8), inv, (320, 240))
            alpha = np.zeros((240, 320), np.float32)
            x0, y0, x1, y1 = patch.box
            alpha[y0:y1, x0:x1] = patch.alpha
            deep = cv2.erode(zone, np.ones((5, 5), np.uint8)) > 0
            assert deep.sum() > 100 and alpha[deep].max() < 0.05, mask  # dilation and feathering stay out
            assert strongest[mask] > 0.2 and alpha[zone == 0].max() > 0.9 * strongest[mask], mask  # the rest stays
        # without the label the same face covers the zone
        hull = np.zeros((240, 320), np.float32)
        x0, y0, x1, y1 = before.box
        hull[y0:y1, x0:x1] = before.alpha
        assert (hull[deep] > 0.9).sum() > 100
    finally:
        ws.masks.set_label(face.id, [])


def test_flicker_of_a_merge_stays_near_the_destinations(shot):
    ws, video, frames = shot
    merger = _merger(shot)
    items = sorted(frames.items())
    from engine.merge.compose import apply_patches

    patches = merger.merge_frames(items, MergeSettings())
    merged = [apply_patches(frame, p) for (_, frame), p in zip(items, patches)]
    regions = []
    for p in patches:
        region = np.zeros((240, 320), bool)
        x0, y0, x1, y1 = p[0].box
        region[y0:y1, x0:x1] = p[0].alpha > 0
        regions.append(region)
    original = flicker([f for _, f in items], regions)
    assert flicker(merged, regions) < 3 * original + 2


def test_a_grayscale_models_brightness_is_stabilised_over_the_shot(shot):
    ws, video, frames = shot
    items = sorted(frames.items())
    lightness = {}
    # stabilising is its own switch: with smooth_colour at 0 it smooths over its own default width
    for stabilise, sigma in ((False, 3.0), (True, 3.0), (True, 0.0)):
        merger = _merger(shot, "gray")
        assert merger.swapper.gray
        s = MergeSettings(stabilise_brightness=stabilise, smooth_colour=sigma, smooth_placement=0.0, colour="rct")
        assert merger.window(s) == (9 if stabilise else 0)
        patches = merger.merge_frames(items, s)
        lightness[stabilise, sigma] = [cv2.cvtColor(p.rgb, cv2.COLOR_BGR2LAB)[..., 0][p.alpha > 0.9].mean()
                                       for (p,) in patches]
    jumps = {k: np.abs(np.diff(v)).mean() for k, v in lightness.items()}
    assert jumps[True, 3.0] < jumps[False, 3.0] and jumps[True, 0.0] < jumps[False, 3.0], jumps
    merger.close()
    assert merger.merge_frames(items[:1], MergeSettings())[0], "a closed merger's caches fill again"


def test_more_frames_than_the_cache_holds_merge_the_same(shot, about_equal):
    ws, video, frames = shot
    items = sorted(frames.items())
    roomy, tight = _merger(shot), _merger(shot)
    tight.set_capacity(8)  # 12 frames: the first ones are pushed out before they are finished
    a, b = roomy.merge_frames(items, MergeSettings()), tight.merge_frames(items, MergeSettings())
    # a face prepared again runs through the model in another batch
    for (p,), (q,) in zip(a, b):
        assert p.box == q.box and about_equal(p.rgb, q.rgb) and about_equal(p.alpha * 255, q.alpha * 255)
    assert roomy.model_faces == 12 < tight.model_faces


def test_hist_match_is_steadied_over_time_too(shot):
    ws, video, frames = shot
    items = sorted(frames.items())
    flick = {}
    for sigma in (0.0, 3.0):
        patches = _merger(shot).merge_frames(items, MergeSettings(mode="hist-match", smooth_colour=sigma,
                                                                  smooth_placement=0.0))
        means = [p.rgb[p.alpha > 0.9].astype(np.float64).mean(0) for (p,) in patches]
        flick[sigma] = np.mean(np.abs(np.diff(np.array(means), axis=0)))
    # histogram matching runs before the mean is measured: smoothing is not undone by a later match
    assert flick[3.0] < 0.8 * flick[0.0], flick


def test_the_faceset_change_stamp_follows_faces_people_and_masks(shot):
    ws, video, frames = shot
    first = ws.facesets.change_stamp("dst")
    assert ws.facesets.change_stamp("dst") == first and first[0] == len(ws.facesets.faces("dst", everyone=True))
    face = ws.facesets.faces("dst")[0]
    ws.masks.set_label(face.id, [{"include": True, "points": [[0.2, 0.2], [0.8, 0.2], [0.5, 0.9]]}])
    labelled = ws.facesets.change_stamp("dst")
    assert labelled != first
    time.sleep(0.01)
    ws.masks.set_label(face.id, [{"include": True, "points": [[0.1, 0.1], [0.9, 0.1], [0.5, 0.9]]}])
    assert ws.facesets.change_stamp("dst") not in (first, labelled)  # a redrawn label
    ws.masks.set_label(face.id, [])
    assert ws.facesets.change_stamp("dst") == first  # back to no label: what a merge reads is as it was
    tracks = [t["track"] for t in ws.facesets.tracks("dst")]
    ws.facesets.choose_people("dst", tracks)
    chosen = ws.facesets.change_stamp("dst")
    ws.facesets.choose_people("dst", None)
    assert chosen != ws.facesets.change_stamp("dst")
    with pytest.raises(EngineError) as err:
        ws.facesets.change_stamp("nobody")
    assert err.value.code == "not_found"
