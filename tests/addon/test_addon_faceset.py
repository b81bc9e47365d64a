"""The faceset browser: hints, answers written into the view, thumbnails, and what each operator asks
the engine for (against a recording link), then the real thing against a real engine."""

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


def test_faceset_view_without_engine(run_scenario, tmp_path):
    out = run_scenario("faceset_view", tmp_path)
    for name in ("disconnected", "not_loaded", "loading", "missing", "ready"):
        assert out[name]["problems"] == [], (name, out[name]["problems"])
    assert "Connect the engine to browse the faceset" in out["disconnected"]["labels"]
    assert out["on_connect"] == [["faceset.list", True], ["faceset.tracks", True], ["faceset.faces", True]]
    assert "Press Refresh to load 'source'" in out["not_loaded"]["labels"]

    assert out["refresh"] == ["FINISHED"]
    assert out["refresh_sent"] == [
        ["faceset.list", {}], ["faceset.tracks", {"faceset": "source"}],
        ["faceset.faces", {"faceset": "source", "everyone": False, "sort": "frame", "limit": 48, "offset": 0}]]
    assert "Loading 'source'…" in out["loading"]["labels"]
    # not extracted yet: a hint, not an error
    assert out["missing_state"] == ["MISSING", "", 0]
    assert "No faces in 'source' yet: extract them first" in out["missing"]["labels"]

    assert out["one_per_tick"] == 1 and out["after_one_tick"] == 1
    ready = out["ready_state"]
    assert ready["state"] == "READY" and ready["counts"] == [7, 7, 2, 7]
    assert [f[3] for f in ready["faces"]] == ["LOADED"] * 6 + ["MISSING"]
    assert ready["tracks"] == [[1, 4, True, "LOADED"], [2, 3, False, "LOADED"]]
    assert ready["preview_sizes"] == [[40, 40]] * 6, "the JPGs were read into the preview collection"
    labels = out["ready"]["labels"]
    assert "7 faces · 7 frames · 2 tracks" in labels and "1–7 of 7" in labels and "0 selected" in labels
    assert out["ready"]["icons"] == 7 + 2, "a thumbnail (or placeholder) per face and per track"
    assert {"swapline.faceset_select", "swapline.faceset_delete", "swapline.faceset_best",
            "swapline.faceset_keep_chosen", "swapline.faceset_choose", "swapline.faceset_page",
            "swapline.faceset_sort", "swapline.faceset_show", "swapline.faceset_refresh"} <= set(out["ready"]["operators"])

    assert out["sort"] == ["FINISHED"] and out["stale_kept"] == 7
    assert out["sorted"] == ["sharpness", [99, 15]]
    assert out["selected"] == [13] and out["selected_page"] == 7
    assert "No faces selected" in out["delete_nothing"]
    assert out["delete"] == ["FINISHED"]
    assert out["delete_sent"] == ["faceset.delete", {"faceset": "source", "faces": [13, 14]}]
    assert out["after_delete"] == ["Deleted 2 faces", 0, ["faceset.list", "faceset.tracks", "faceset.faces"]]

    assert out["best"] == ["FINISHED"]
    assert out["best_sent"] == ["faceset.best", {"faceset": "source", "count": 3},
                                [["faceset.delete", {"faceset": "source", "faces": [15, 99]}]]]
    assert out["keep"] == ["FINISHED"]
    op, args, follow = out["keep_sent"]
    assert op == "faceset.faces" and args["everyone"] is True and args["limit"] >= 7
    assert follow == [["faceset.delete", {"faceset": "source", "faces": [11, 13, 15]}]], "only track 2's faces"

    assert out["choose_add"] == ["FINISHED"] and "at least one" in out["choose_none"]
    assert out["choose_auto"] == ["FINISHED"] and out["choose_person"] == ["FINISHED"]
    assert out["persons"] == [0, 2]  # track 1 was not recognised; track 2 is person 2
    assert out["choose_sent"] == [["faceset.choose", {"faceset": "source", "tracks": [1, 2]}],
                                  ["faceset.choose", {"faceset": "source", "tracks": None}],
                                  ["faceset.choose", {"faceset": "source", "tracks": [2]}]]
    assert out["after_choose"] == ["Chosen: track 1, track 2", ["faceset.list", "faceset.tracks", "faceset.faces"]]

    assert out["pages"] == [["FINISHED"], 48, ["FINISHED"], 96, ["CANCELLED"], 96]
    assert out["stepped_back"] == [48, [48]]

    assert "unknown_op!" in out["auto_failure"][0] and out["auto_failure"][1] == ""
    assert out["user_failure"] == "Faceset source failed: internal!"
    assert out["after_extract"] == [["faceset.list", True], ["faceset.tracks", True], ["faceset.faces", True]]
    assert out["remote"] == ["MISSING"]
    assert out["browse"] == ["FINISHED"]
    assert out["browse_sent"] == [["faceset.list", None], ["faceset.tracks", "destination"],
                                  ["faceset.faces", "destination"]]
    assert out["browse_view"] == ["destination", 0, 0, "LOADING"]
    assert out["late_answer"] == ["destination", "LOADING", ""]
    assert out["previews_left"] == [], "unregister releases the preview collections"


@pytest.fixture(scope="module")
def two_people_clip(tmp_path_factory):
    """Ten frames of two bundled portraits side by side: two people, two tracks."""
    cv2 = pytest.importorskip("cv2")
    from engine.media.encode import write_video
    from engine.media.synthetic import camera_frames, portrait

    left = camera_frames(portrait("hopper"), 10, (320, 320), centre=(0.5, 0.36))
    right = camera_frames(portrait("astronaut"), 10, (240, 240), seed=1, centre=(0.45, 0.24))
    frames = (np.hstack([a, cv2.copyMakeBorder(b, 0, 80, 0, 0, cv2.BORDER_REPLICATE)]) for a, b in zip(left, right))
    return write_video(tmp_path_factory.mktemp("faceset_clip") / "two.mp4", frames, 10)


@pytest.mark.skipif(not (REPO / ".venv" / "bin" / "python").is_file(), reason="no .venv with the engine")
def test_faceset_browser_against_the_engine(run_scenario, two_people_clip, tmp_path):
    out = run_scenario("faceset_engine", two_people_clip, tmp_path / "workspace", timeout=600)
    for name in ("disconnected", "before_extract", "ready", "final"):
        assert out[name]["problems"] == [], (name, out[name]["problems"])
    assert "Connect the engine to browse the faceset" in out["disconnected"]["labels"]
    # connecting looked the faceset up by itself: not there yet, a hint and no error
    assert out["before_extract_state"] == ["source", "MISSING", ""]
    assert "No faces in 'source' yet: extract them first" in out["before_extract"]["labels"]

    # the finished extraction filled the view by itself
    extracted, view, engine = out["extracted"], out["view"], out["engine_after_extract"]
    assert extracted["state"] == "done" and extracted["faces"] == engine["everyone"]
    assert view["state"] == "READY"
    faces, frames, tracks, shown = view["counts"]
    assert faces == engine["everyone"] and frames == 10 and tracks == len(engine["people"]) >= 2
    assert shown == engine["person"] == len(view["faces"]) < faces, "the page shows the chosen person"
    assert [[t, chosen] for t, _, chosen, _ in view["tracks"]] == [[int(t), c] for t, c in engine["people"].items()]
    assert sum(chosen for _, _, chosen, _ in view["tracks"]) == 1
    assert {t[3] for t in view["tracks"]} == {f[2] for f in view["faces"]} == {"LOADED"}
    assert view["preview_sizes"] == [[64, 64]], "every face's JPG was read into the preview collection"
    assert view["people_previews"] == [[64, 64]] * tracks
    ready = out["ready"]
    assert f"{faces} faces · 10 frames · {tracks} tracks" in ready["labels"]
    assert len(ready["icons"]) == len(view["faces"]) + tracks

    pages = out["pages"]
    assert out["everyone"] == out["next"] == ["FINISHED"]
    assert pages["offset"] == 4 and pages["total"] == faces
    assert len(pages["first"]) == 4 and pages["second"] == pages["expected"] and not set(pages["first"]) & set(pages["second"])
    assert out["sort"] == ["FINISHED"] and out["sorted"]["offset"] == 0
    assert out["sorted"]["view"] == out["sorted"]["engine"]

    chosen = out["chosen_at_first"]
    choose, people, view_people = out["choose"]
    assert choose == ["FINISHED"] and sum(people.values()) == 2 and view_people == people
    unchoose, people, view_people = out["unchoose"]
    assert unchoose == ["FINISHED"] and not people[str(chosen[0])] and sum(people.values()) == 1
    assert view_people == people
    automatic, people = out["automatic"]
    assert automatic == ["FINISHED"] and [int(t) for t, c in people.items() if c] == chosen
    explicit, people = out["explicit"]
    assert explicit == ["FINISHED"] and [int(t) for t, c in people.items() if c] == chosen

    deleted = out["deleted"]
    assert out["delete"] == ["FINISHED"] and deleted["gone"]
    assert deleted["after"] == {"everyone": deleted["before"]["everyone"] - 2, "person": deleted["before"]["person"] - 2}
    assert deleted["view"] == [deleted["before"]["everyone"] - 2, deleted["before"]["person"] - 2, 0]
    assert deleted["message"] == "Deleted 2 faces"

    best = out["after_best"]
    assert out["best"] == ["FINISHED"] and best["person"] == best["view_total"] == 3
    assert best["everyone"] == 3 + (deleted["after"]["everyone"] - deleted["after"]["person"]), "other tracks kept"
    keep = out["after_keep"]
    assert out["keep"] == ["FINISHED"] and keep["person"] == keep["everyone"] == 3
    assert list(keep["people"].values()) == [True] and keep["view"] == [3, 1, 1]
    assert "3 faces · 3 frames · 1 track" in out["final"]["labels"] and "Deleted 10 faces" in out["final"]["labels"]
    assert out["last_error"] == ""
    assert out["previews_left"] == []
