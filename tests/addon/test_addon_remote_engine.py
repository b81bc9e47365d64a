"""The add-on's link against a fake engine: token, re-attach, progress, stop, refusals, reconnects."""

import re


def test_remote_engine_round_trip(run_scenario, tiny_clips):
    out = run_scenario("remote_engine", tiny_clips["a"])
    assert max(out["seconds"]) < 0.5, out["seconds"]
    assert out["wrong_token"][0] == "FAILED" and "refused the token" in out["wrong_token"][1]

    assert out["engine"]["name"] == "fake@test"
    assert out["status"] == ["CONNECTED", "fake@test", "cpu", "/nowhere", ""]
    # re-attach: every engine job is mirrored, none counts as ours, an old failure is not reported
    assert out["mirror"] == [
        ["old-extract", "extract", "done", False, -1, -1.0, "Extract source"],
        ["old-merge", "merge", "failed", False, -1, -1.0, "Merge"],
        ["old-train", "train", "running", False, 120, 0.0456, "Train model"],
    ]
    assert out["stop"] == ["FINISHED"] and out["cancelled"] == ["old-train"]

    assert out["extract"] == ["FINISHED"]
    assert sorted(out["extract_jobs"]) == [["done", "destination"], ["done", "source"]]
    by_faceset = {p["faceset"]: p for p in out["extract_params"]}
    # Src: frame_start 1, 4 frames trimmed at the front; Dst: 10 trimmed at the end of 40
    assert (by_faceset["source"]["frame_start"], by_faceset["source"]["frame_end"]) == (4, 40)
    assert (by_faceset["destination"]["frame_start"], by_faceset["destination"]["frame_end"]) == (0, 30)
    # a remote engine gets the clip by content hash: its path in the engine's workspace
    assert by_faceset["source"]["size"] == 512 and re.fullmatch(r"media/[0-9a-f]{64}\.mp4", by_faceset["source"]["video"])
    assert by_faceset["source"]["face_type"] == "full"
    assert out["wait_again"] == []

    assert out["train"] == ["FINISHED"]
    assert "resolution must be a multiple of 16" in out["train_error"]
    assert "Train model failed: resolution must be a multiple of 16" == out["last_error"]

    # the engine went away: reconnecting, not given up; the drain stays quick meanwhile
    assert out["closed"][0] == "CONNECTING", out["closed"]
    assert out["closed"][1].startswith("Engine connection lost:") and "reconnecting in" in out["closed"][1]
    assert out["drain_max_s"] < 0.05, out["drain_max_s"]
    assert out["expired"].startswith("Doomed request failed: The engine has been unreachable for"), out["expired"]
    assert out["expired"].endswith("Doomed request was not sent")
    assert "probe" in out["queued"] and out["infos_while_gone"] == 0
    # back: connected by itself, re-attached, the queued request sent
    assert out["reconnected"][0] == "CONNECTED", out["reconnected"]
    assert ["old-merge", "done"] in out["reattached"]
    assert out["infos_after"] == 1
    # back with another token: FAILED and stays so
    assert out["refused"][0] == "FAILED" and "refused the token" in out["refused"][1], out["refused"]
    assert out["after_refusal"] == "FAILED"
