"""Roles are marked on the active strip, are exclusive, and trims pick the source frames."""


def test_roles_and_source_range(run_scenario, tiny_clips):
    out = run_scenario("roles", tiny_clips["a"], tiny_clips["b"])
    assert "No active strip" in out["no_active"]
    assert "not a movie strip" in out["not_movie"]
    assert out["mark_a_source"] == ["FINISHED"]
    assert out["after_b_source"] == {"A": "NONE", "B": "SOURCE"}
    assert out["after_a_destination"] == {"A": "DESTINATION", "B": "SOURCE"}
    assert out["found"] == {"SOURCE": "B", "DESTINATION": "A"}
    # A starts at frame 10 with 5 frames trimmed in front and 7 behind: 40 - 12 = 28 frames shown
    assert out["timeline_a"] == [15, 43]
    assert out["range_a"] == [5, 33]
    assert out["video_a"] == str(tiny_clips["a"])
    assert out["after_clear"] == {"A": "DESTINATION", "B": "NONE"}
