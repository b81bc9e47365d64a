"""The extension registers and unregisters cleanly when enabled the way Blender enables extensions."""

import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_enable_disable_enable(run_scenario, tmp_path):
    result = run_scenario("register")
    reg = result["registered"]
    assert reg["panel"] and (reg["panel_space"], reg["panel_region"], reg["panel_category"]) == (
        "SEQUENCE_EDITOR", "UI", "Swapline")
    assert {"connect", "disconnect", "mark_role", "extract", "train", "train_stop", "merge_shot", "render"} <= set(reg["operators"])
    assert reg["strip_role"] and reg["timer"]
    assert reg["connection"] == "DISCONNECTED"
    assert reg["defaults"] == {"source_faceset": "source", "destination_faceset": "destination", "model": "model",
                               "resolution": 64, "batch_size": 8, "iterations": 2000}
    assert reg["engine_mode"] == "LOCAL"
    assert reg["fallback_prefs"] == {"engine_mode": "LOCAL", "python_path": "", "launch_timeout": 120.0,
                                     "host": "127.0.0.1", "port": 5573, "token": "", "use_tls": False,
                                     "tls_fingerprint": "", "use_discovery": False}
    assert reg["default_python"] == str(REPO / ".venv" / "bin" / "python")
    # bridge/ is reached relatively, inside the extension package, as in the built zip
    assert reg["bridge_module"] == "bl_ext.swapline_tests.swapline.bridge.client"
    assert reg["heavy_modules"] == [], "the add-on must not pull torch, cv2 or the engine into Blender"
    assert reg["drained"] == 0
    assert result["after_disable"] == {"panel": False, "strip_role": False, "scene_settings": False, "timer": False}
    assert result["again"] == {"panel": True, "timer": True}

    ws = result["workspaces"]
    assert ws["unsaved"] == str(Path(tempfile.gettempdir()) / f"swapline-unsaved-{ws['pid']}")
    assert ws["saved"] == str(tmp_path / "shot_swapline")
    assert ws["override"] == str(tmp_path / "elsewhere")
    assert ws["config"] == ["LOCAL", str(REPO / ".venv" / "bin" / "python"), str(tmp_path / "elsewhere"), str(REPO)]
