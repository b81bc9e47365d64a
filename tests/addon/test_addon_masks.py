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


def _mattes(folder: Path) -> Path:
    """Frame f's matte is a 16 px wide white band at x = (f % 4) * 16, so frames can be told apart."""
    folder.mkdir()
    for f in range(40):
        image = np.zeros((48, 64), np.uint8)
        image[:, (f % 4) * 16:(f % 4) * 16 + 16] = 255
        cv2.imwrite(str(folder / f"matte_{f:06d}.png"), image)
    return folder


def test_face_matte_strip_and_masked_grade(run_scenario, tiny_clips, tmp_path):
    out = run_scenario("masks_matte", tiny_clips["a"], _mattes(tmp_path / "mattes"), tmp_path, timeout=180)
    assert "No active strip" in out["no_active"]
    assert out["add"] == ["FINISHED"]
    op, args, tag = out["sent"]
    assert op == "job.start" and args["kind"] == "mask_matte"
    params = args["params"]
    assert params["faceset"] == "destination" and params["video"] == str(tiny_clips["a"])
    assert (params["frame_start"], params["frame_end"]) == (5, 33), "the frames the trimmed shot shows"
    assert params["shape"] == {"erode": 0.02, "blur": 0.04, "top": -0.1, "bottom": 0.0, "left": 0.05, "right": 0.0}
    assert params["temporal"] == 1.5 and params["source"] == "auto"
    assert out["pending"] == [["j1", "Shot", False]] and out["pending_after"] == 0

    m = out["matte"]
    assert m["name"] == "Shot face matte" and m["type"] == "IMAGE" and m["job"] == "j1"
    assert m["mute"] and m["colorspace"] == "Non-Color"
    assert m["channel"] == 4, "channel 3 is taken inside the shot's range"
    assert (m["start"], m["end"]) == (15, 43)
    assert m["files"] == {"15": "matte_000005.png", "16": "matte_000006.png", "30": "matte_000020.png",
                          "42": "matte_000032.png"}, "timeline frame F shows the matte of source frame F - 10"

    assert out["grade"] == ["FINISHED"] and out["modifier"] == ["COLOR_BALANCE", "STRIP", "Shot face matte"]
    assert out["grade_again"] == ["FINISHED"] and out["modifiers"] == ["Face Grade"]

    # Pixels: against the same frame with the grade muted, only the band of source frame F - 10 changes
    for frame, paths in out["renders"].items():
        source = int(frame) - 10
        plain, graded = (cv2.imread(paths[k], cv2.IMREAD_GRAYSCALE).astype(float) for k in ("plain", "graded"))
        band = np.zeros(plain.shape, bool)
        band[:, (source % 4) * 16:(source % 4) * 16 + 16] = True
        inner = band & np.roll(band, 2, axis=1) & np.roll(band, -2, axis=1)  # away from the band's edges
        outside = ~(band | np.roll(band, 2, axis=1) | np.roll(band, -2, axis=1))
        change = graded - plain
        assert change[inner].min() > 20, (frame, change[inner].min())
        assert np.abs(change[outside]).max() <= 1, (frame, np.abs(change[outside]).max())
        assert plain.std() < 2, "the muted matte does not show in the picture"

    assert out["remade"] == [1, "j2", True], "a new matte replaces the old one and the grade follows it"
    assert out["grade_first"] == ["FINISHED"] and out["grade_first_sent"] == ["source", True, "Other"]
    assert out["graded_on_arrival"]
    assert "does not cover" in out["bad_result"]
