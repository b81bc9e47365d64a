"""The sidebar panels draw in every state without errors and only use real properties and operators."""


def test_panels_draw(run_scenario, tiny_clips):
    out = run_scenario("panels", tiny_clips["a"])
    assert out["problems"] == []
    states = {d["state"]: d for d in out["draws"]}
    assert set(states) == {"empty", "failed", "jobs"}
    assert states["jobs"]["progress"] == 1, "one progress bar: the running training job"
    assert all(d["calls"] > 10 for d in out["draws"])
