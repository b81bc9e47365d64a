"""The add-on's link against a fake engine: token, re-attach, progress, stop, refusals, reconnects."""


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
    assert by_faceset["source"]["size"] == 512 and by_faceset["source"]["video"].endswith("a.mp4")
    assert by_faceset["source"]["face_type"] == "full"
    assert out["wait_again"] == []

    assert out["train"] == ["FINISHED"]
    assert "resolution must be a multiple of 16" in out["train_error"]
    assert "Train model failed: resolution must be a multiple of 16" == out["last_error"]

    assert out["closed"][0] == "DISCONNECTED" and "closed" in out["closed"][1].lower()
    assert ["old-merge", "done"] in out["reattached"]
    assert out["final"] == "DISCONNECTED"
