"""The likeness consent when a strip is marked as Source (real bpy)."""


def test_source_asks_for_likeness_consent_once_per_strip(run_scenario, tiny_clips):
    out = run_scenario("consent_source", tiny_clips["a"])
    assert out["fresh"] == [False, False]
    assert "Confirm that you have the right to use the likeness" in out["unconfirmed"]
    assert out["unconfirmed_role"] == "NONE", "refused: nothing marked"
    invoked, _, role, stored = out["invoke_unconfirmed"]
    assert "FINISHED" not in invoked and role == "NONE" and stored is False, "invoke opens the dialog, marks nothing"
    assert out["confirmed"] == ["FINISHED"] and out["after_confirm"] == ["SOURCE", True]
    assert out["destination_no_ask"] == [["FINISHED"], "DESTINATION"]
    assert out["asked_once"] == [["FINISHED"], "SOURCE"]
    assert out["invoke_confirmed"][0] == ["FINISHED"] and out["invoke_confirmed"][2] == "SOURCE"
    assert "likeness" in out["other_strip"][0] and out["other_strip"][1:] == ["NONE", "SOURCE"]
    assert out["question"] == "I have the right to use this person's likeness"
    assert out["animatable"] is False, "the answer cannot be keyed to change over the timeline"
