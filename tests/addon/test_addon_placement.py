"""A finished merge lands as an image strip above the destination, frame for frame, trims included."""

import cv2
import numpy as np


def test_merge_result_strip_placement(run_scenario, tiny_clips, tmp_path):
    frames = tmp_path / "render"
    frames.mkdir()
    for i in range(40):
        cv2.imwrite(str(frames / f"frame_{i:06d}.png"), np.full((48, 64, 3), i, np.uint8))
    out = run_scenario("placement", tiny_clips["a"], frames)

    assert out["pending_before_done"] == ["m1"]
    assert out["mirror_running"] == [["m1", "running", 0.5, True]]
    assert out["pending_after_done"] == 0
    [first] = out["first"]
    assert first["name"] == "Dst swap" and first["type"] == "IMAGE" and first["job"] == "m1"
    assert first["channel"] == 4, "channel 3 is taken inside the destination's range, 4 is free there"
    assert (first["start"], first["end"]) == (15, 43)
    assert first["elements"] == 28
    assert first["scale"] == [0.5, 0.75], "the result copies the destination's transform"
    # timeline frame F shows destination source frame F - 10, and so does the result
    assert first["files"] == {"15": "frame_000005.png", "16": "frame_000006.png",
                              "30": "frame_000020.png", "42": "frame_000032.png"}

    [second] = out["second"]
    assert second["job"] == "m2" and second["channel"] == 4 and (second["start"], second["end"]) == (15, 43)
    assert out["mirror_m2"] == ["done"]
    assert out["after_joblist"] == ["m2"] and out["mirrored_old"]
    assert out["after_failure"] == ["m2"]
    assert "no faces here" in out["last_error"] and "Merge model failed" in out["last_error"]
    assert out["pending_after_failure"] == 0
    assert out["after_bad_result"] == ["m2"]
    assert "does not cover" in out["bad_result_error"]
