"""Grade Face: the grading stack on a merge result strip, masked by the face matte, checked on pixels
that Blender rendered."""

from pathlib import Path

import cv2
import numpy as np

FACE = (slice(12, 36), slice(16, 48))   # the face layer's opaque block (rows, columns)
MATTE = (slice(12, 36), slice(16, 32))  # the matte: the left half of the face


def _layers(folder: Path) -> Path:
    folder.mkdir()
    for f in range(40):
        image = np.zeros((48, 64, 4), np.uint8)
        image[FACE] = (60, 120, 200, 255)  # BGRA: an orange-ish face, opaque
        cv2.imwrite(str(folder / f"frame_{f:06d}.png"), image)
    return folder


def _mattes(folder: Path) -> Path:
    folder.mkdir()
    for f in range(40):
        image = np.zeros((48, 64), np.uint8)
        image[MATTE] = 255
        cv2.imwrite(str(folder / f"matte_{f:06d}.png"), image)
    return folder


def test_face_grade_stack_masked_by_the_matte(run_scenario, tiny_clips, tmp_path):
    out = run_scenario("grade_stack", tiny_clips["a"], _layers(tmp_path / "layers"), _mattes(tmp_path / "mattes"),
                       tmp_path / "renders", timeout=180)
    assert out["grade"] == ["FINISHED"]
    assert out["stack"] == [["Face Grade", "COLOR_BALANCE", "STRIP", "Shot face matte"],
                            ["Face Curves", "CURVES", "STRIP", "Shot face matte"],
                            ["Face Hue", "HUE_CORRECT", "STRIP", "Shot face matte"]]
    assert out["shot_untouched"] == 0, "Grade Face on the shot grades its merge result (the face layer), not the shot"
    assert out["grade_again"] == ["FINISHED"] and out["kept"] == [3, [2.0, 2.0, 2.0], 0.4]

    images = {k: cv2.imread(p).astype(int) for k, p in out["renders"].items()}
    none = images["none"]
    assert np.abs(none[20, 40] - [60, 120, 200]).max() < 12, "the face layer is over the shot"
    inside = np.zeros(none.shape[:2], bool)
    inside[MATTE] = True
    edge = cv2.dilate(inside.astype(np.uint8), np.ones((3, 3), np.uint8)) > cv2.erode(
        inside.astype(np.uint8), np.ones((3, 3), np.uint8))  # one pixel either side of the matte's edge
    for name in ("balance", "curves", "hue", "all"):
        diff = np.abs(images[name] - none).max(axis=2)
        assert (diff[~inside & ~edge] == 0).all(), f"{name}: pixels outside the matte are unchanged"
        assert (diff[inside & ~edge] > 20).all(), f"{name}: the face inside the matte is graded"
    core = (slice(14, 34), slice(18, 30))
    assert (images["balance"][core].mean() > none[core].mean() + 20), "gain 2 brightens"
    assert (images["curves"][core].mean() < none[core].mean() - 20), "the pulled-down curve darkens"
    hue = images["hue"][core]
    assert (hue.max(axis=2) - hue.min(axis=2)).max() < 8 < (none[core].max(axis=2) - none[core].min(axis=2)).min(), \
        "saturation 0 turns the face grey"

    assert out["same_names"] == {
        "modifiers": [["Face Curves", "BRIGHT_CONTRAST"], ["Face Curves.001", "CURVES"], ["Face Grade", "CURVES"],
                      ["Face Grade.001", "COLOR_BALANCE"], ["Face Hue", "HUE_CORRECT"]],
        "returned": ["COLOR_BALANCE", "COLOR_BALANCE", True]}, "no pile-up beside same-named modifiers"

    assert out["no_matte"] == ["FINISHED"]
    assert out["no_matte_sent"] == ["job.start", "mask_matte", "Other", True, "Other swap"]
    assert out["on_arrival"] == {"result": [["COLOR_BALANCE", True], ["CURVES", True], ["HUE_CORRECT", True]],
                                 "shot": 0}, "the matte lands and the result strip gets the grade"
