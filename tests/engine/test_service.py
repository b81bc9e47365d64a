"""The engine as a real subprocess behind the bridge: jobs, events, errors, re-attaching."""

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bridge import PROTOCOL_VERSION, BridgeClient, BridgeError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def engine(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "serve", "--workspace", str(tmp_path / "ws"), "--port", "0", "--token", "tok"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    line = proc.stdout.readline()
    match = re.search(r"listening on ([\d.]+):(\d+)", line)
    assert match, f"engine did not start: {line!r}"
    yield proc, int(match.group(2))
    proc.terminate()
    proc.wait(timeout=20)


def _client(port, token="tok"):
    c = BridgeClient("127.0.0.1", port, token)
    c.connect()
    c.start()
    return c


def _wait_done(client, job_id, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.call("job.get", {"id": job_id})
        if job["state"] not in ("queued", "running"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish")


def test_extract_job_over_the_bridge_streams_events(engine, portrait_clips):
    proc, port = engine
    client = _client(port)
    info = client.call("engine.info")
    assert info["protocol"] == PROTOCOL_VERSION
    assert info["device"].startswith("CPU") or "GiB" in info["device"]
    job = client.call("job.start", {"kind": "extract", "params": {
        "video": str(portrait_clips["hopper"]), "faceset": "src", "size": 128}})
    done = _wait_done(client, job["id"])
    assert done["state"] == "done" and done["result"]["faces"] == 12
    events = []
    while not client.inbox.empty():
        events.append(client.inbox.get())
    states = [m.payload["job"]["state"] for m in events if m.kind == "event" and m.payload.get("event") == "job"]
    assert states[0] == "queued" and states[-1] == "done"
    assert client.call("faceset.list")["facesets"][0]["faces"] == 12
    client.close()


def test_errors_cross_as_codes_and_the_engine_survives(engine, tmp_path):
    proc, port = engine
    client = _client(port)
    with pytest.raises(BridgeError) as err:
        client.call("job.start", {"kind": "paint", "params": {}})
    assert err.value.code == "bad_request"
    with pytest.raises(BridgeError) as err:
        client.call("no.such.op")
    assert err.value.code == "unknown_op"
    job = client.call("job.start", {"kind": "extract", "params": {"video": str(tmp_path / "nope.mp4"), "faceset": "x"}})
    failed = _wait_done(client, job["id"])
    assert failed["state"] == "failed" and failed["error"]["code"] == "not_found"
    assert "nope.mp4" in failed["error"]["message"]
    assert client.call("engine.info")["protocol"] == PROTOCOL_VERSION
    client.close()


def test_jobs_outlive_their_client_and_can_be_cancelled(engine, portrait_clips):
    proc, port = engine
    first = _client(port)
    job = first.call("job.start", {"kind": "extract", "params": {
        "video": str(portrait_clips["astronaut"]), "faceset": "dst", "size": 128}})
    first.close()  # the client goes away mid-job
    second = _client(port)
    listed = second.call("job.list")["jobs"]
    assert job["id"] in [j["id"] for j in listed]
    assert _wait_done(second, job["id"])["state"] == "done"
    slow = second.call("job.start", {"kind": "extract", "params": {
        "video": str(portrait_clips["astronaut"]), "faceset": "dst2", "size": 128}})
    second.call("job.cancel", {"id": slow["id"]})
    assert _wait_done(second, slow["id"])["state"] == "cancelled"
    second.close()


def test_wrong_token_is_refused(engine):
    proc, port = engine
    with pytest.raises(BridgeError) as err:
        BridgeClient("127.0.0.1", port, "wrong").connect()
    assert err.value.code == "unauthorized"
