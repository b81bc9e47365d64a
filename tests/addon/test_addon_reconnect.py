"""The add-on reconnects by itself: a local engine killed mid-job is relaunched and re-attached."""

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _facesets(workspace: Path) -> None:
    spec = importlib.util.spec_from_file_location("engine_conftest_for_reconnect", REPO / "tests" / "engine" / "conftest.py")
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    from engine.workspace import Workspace

    ws = Workspace(workspace)
    conftest._fill(ws, "src", frames=4, people=1)
    conftest._fill(ws, "dst", frames=4, people=1)
    ws.close()


@pytest.mark.skipif(not (REPO / ".venv" / "bin" / "python").is_file(), reason="no .venv with the engine")
@pytest.mark.parametrize("mode", ["LOCAL", "REMOTE"])
def test_a_killed_engine_comes_back_and_its_job_is_mirrored_again(run_scenario, tmp_path, mode):
    """LOCAL: the link relaunches the engine; REMOTE: it is started again by hand, the link keeps trying."""
    workspace = tmp_path / "workspace"
    _facesets(workspace)
    out = run_scenario("reconnect_engine", workspace, mode, timeout=600)
    job_id, state = out["before"]
    assert state == "running"
    states = [s for s, _ in out["states"]]
    assert "CONNECTING" in states and states[-1] == "CONNECTED", out["states"]
    lost = next(m for s, m in out["states"] if s == "CONNECTING")
    assert lost.startswith("Engine connection lost:") and "reconnecting in" in lost, lost
    assert "FAILED" not in states and "DISCONNECTED" not in states
    assert out["relaunched"]
    if mode == "REMOTE":  # over TLS, the engine's certificate pinned, before and after the restart
        assert len(out["fingerprint"]) == 64 and out["engine_tls"], (out["fingerprint"], out["engine_tls"])
    # the new engine took the job up again under its id (FAULTS: re-queued on restart)
    assert out["after"][:2] == [job_id, "running"], out["after"]
    assert out["probe_answered"], "the request made while the engine was gone went out after the reconnect"
    print(f"{mode}: drain while the engine was gone and came back: max {out['drain_max_s'] * 1000:.1f} ms "
          f"over {out['drains']} calls")
    assert out["drain_max_s"] < 0.05
    assert out["ended"] == "cancelled" and out["final"] == "DISCONNECTED"
