"""Edges of the add-on's engine link (engine_link.py) against a fake engine in the Blender process."""


def test_a_disconnect_during_a_reconnect_handshake_sends_nothing_queued(run_scenario):
    out = run_scenario("reconnect_disconnect", timeout=120)
    # the user asked to disconnect: the link ends without ever saying it is connected again
    assert "CONNECTED" not in out["states"] and out["states"][-1] == "DISCONNECTED", out["states"]
    # the request queued while the engine was away never reached the engine that came back...
    assert [number for number, op in out["received"] if op == "job.start"] == [], out["received"]
    assert not [r for r in out["received"] if r[0] == 2], out["received"]
    # ...and is answered once, as not sent
    assert len(out["failed"]) == 1 and out["failed"][0][1] == "job.start", out["seen"]
    assert out["pending"] == []


def test_a_request_waiting_for_its_upload_is_answered_once_on_disconnect(run_scenario, tiny_clips):
    out = run_scenario("reconnect_upload_disconnect", tiny_clips["a"], timeout=120)
    assert out["state"] == "DISCONNECTED" and out["pending"] == []
    assert len(out["failed"]) == 1, out["seen"]
