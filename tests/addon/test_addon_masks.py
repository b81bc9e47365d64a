"""Masks in the add-on: polygon labels <-> Blender's Mask datablock (and where Blender draws it), the
Masks panel and its operators against a recording link, and the face matte on the timeline with a
grade masked by it, checked on rendered pixels."""

from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]


def test_polygons_round_trip_through_the_mask_datablock(run_scenario, tmp_path):
    out = run_scenario("masks_editor", tmp_path)
    assert out["fresh_layers"] == [["Include", "MERGE_ADD"], ["Exclude", "MERGE_SUBTRACT"]]
    for case in ("face_square", "face_any_size", "frame_wide", "frame_tall"):
        result = out[case]
        assert result["error"] < 1e-4, (case, result["error"])
        assert result["includes"] == [True, False, True] and result["counts"] == [4, 3, 3], case
        assert result["skipped"] == []
        assert [layer[:3] for layer in result["layers"]] == [["Include", "MERGE_ADD", 1], ["Exclude", "MERGE_SUBTRACT", 1],
                                                             ["Include 2", "MERGE_ADD", 1]], case
        assert all(layer[3] == [True] and layer[4] == ["VECTOR"] for layer in result["layers"]), "filled, cyclic polygons"
    # DESIGN.md: px = (x - 0.5) * max(W, H) + W / 2, y up
    assert np.allclose(out["corners_wide"], [[0.0, 0.75], [1.0, 0.25], [0.5, 0.5]])
    assert np.allclose(out["corners_tall"], [[0.25, 1.0], [0.75, 0.0]])
    assert out["exclude_first"] == [["Exclude", 1], ["Include", 1]] and out["exclude_first_back"] == [False, True]
    circle = out["circle"]
    assert circle["points"] == 32, "4 curved segments, 8 samples each"
    assert 0.249 < circle["min_r"] and circle["max_r"] < 0.251, "the samples lie on the drawn curve"
    assert out["sampled"] == [[0, 0], [3, 0]], "straight segments add only their ends"
    assert out["too_few"] == ["Include shape 1: fewer than 3 points"]


def test_blender_draws_the_mask_where_the_polygon_is(run_scenario, tmp_path):
    """A non-square frame: Blender's own mask rasteriser agrees with the polygon in frame pixels."""
    out = run_scenario("masks_editor", tmp_path)
    image = cv2.imread(out["render"], cv2.IMREAD_GRAYSCALE)
    assert image.shape == (64, 96)
    drawn = image > image.min() + 20
    expected = np.zeros(image.shape, np.uint8)
    points = np.array(out["frame_polygon"]) - 0.5  # continuous -> OpenCV pixel centres
    cv2.fillPoly(expected, [np.round(points * 16).astype(np.int32)], 1, shift=4)
    expected = expected.astype(bool)
    iou = (drawn & expected).sum() / (drawn | expected).sum()
    assert iou > 0.93, iou
    flipped = expected[::-1]
    assert (drawn & flipped).sum() / (drawn | flipped).sum() < 0.8, "y is not flipped"
