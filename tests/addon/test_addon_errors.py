"""Operators report what is wrong at once; engine failures become a clear status, never a freeze."""

import os
import stat

import pytest

FAKES = {
    "crash.sh": "#!/bin/sh\necho 'engine: cannot import torch (boom)' >&2\nexit 3\n",
    # argv: -m engine serve --workspace DIR ...: the pid goes to DIR so the test can check it ended
    "wrong_port.sh": "#!/bin/sh\necho $$ > \"$5/wrong_port.pid\"\necho 'swapline-engine listening on 127.0.0.1:1'\n"
                     "exec sleep 60\n",
    "hang.sh": "#!/bin/sh\necho $$ > \"$5/hang.pid\"\nexec sleep 60\n",
}


@pytest.fixture
def fake_engines(tmp_path):
    folder = tmp_path / "fakes"
    folder.mkdir()
    for name, text in FAKES.items():
        path = folder / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return folder


@pytest.mark.skipif(os.name == "nt", reason="the fake engines are shell scripts")
def test_error_paths(run_scenario, tiny_clips, fake_engines):
    out = run_scenario("launch_errors", tiny_clips["a"], fake_engines)
    # no operator call blocks Blender, whatever happens to the engine
    assert max(out["seconds"].values()) < 0.5, out["seconds"]

    assert "No Source strip marked" in out["extract_unmarked"]
    assert "No Destination strip marked" in out["merge_unmarked"]
    assert "No training job is running" in out["stop_idle"]
    assert "No Destination strip marked" in out["extract_no_destination"]
    assert out["state_after_validation"] == "DISCONNECTED"

    assert "Engine Python not found" in out["missing_python"]
    assert out["state_after_missing_python"] == "DISCONNECTED"

    state, message, last_error = out["crash"]
    assert state == "FAILED" and "exited (code 3)" in message and "cannot import torch (boom)" in message
    assert last_error == message

    assert out["extract_wrong_port"] == ["FINISHED"]
    assert "unreachable" in out["wait_wrong_port"].lower()
    assert out["wrong_port_state"][0] == "FAILED" and "unreachable" in out["wrong_port_state"][1].lower()
    assert out["wrong_port_engine_alive"] is False, "a local engine we could not reach must be stopped"

    assert "Launching" in out["hang_connecting"]
    assert out["hang_state"] == "DISCONNECTED"
    assert out["hang_engine_alive"] is False

    state, message, port = out["remote"]
    assert state == "FAILED" and "unreachable" in message.lower() and f"127.0.0.1:{port}" in message
