"""Add-on tests: each Blender scenario runs in its own Python process.

bpy can be imported once per process and must never share one with torch, so every test here
starts `scenarios/<name>.py` with this interpreter, lets it enable the extension the way Blender
does (a local extension repository whose `swapline` folder links to this checkout), and reads the
one JSON line the scenario prints. Pixel checks happen here, in the pytest process.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = Path(__file__).parent / "scenarios"
RESULT_PREFIX = "SCENARIO_RESULT "

if importlib.util.find_spec("bpy") is None:  # pragma: no cover - the Makefile installs bpy
    pytest.skip("bpy (Blender as a Python module) is not installed", allow_module_level=True)


class ScenarioFailed(AssertionError):
    pass


@pytest.fixture
def run_scenario(tmp_path):
    """run_scenario(name, *args, timeout=120, env=None) -> the scenario's JSON result (a dict)."""
    extensions = tmp_path / "extensions"
    extensions.mkdir()
    (extensions / "swapline").symlink_to(REPO, target_is_directory=True)

    def run(name: str, *args, timeout: float = 120, env: dict | None = None) -> dict:
        environment = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "blender_user"),
                           SWAPLINE_TEST_EXTENSIONS=str(extensions), PYTHONUNBUFFERED="1", **(env or {}))
        proc = subprocess.run([sys.executable, str(SCENARIOS / f"{name}.py"), *map(str, args)],
                              cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=timeout)
        output = f"--- stdout\n{proc.stdout[-6000:]}\n--- stderr\n{proc.stderr[-6000:]}"
        if proc.returncode != 0:
            raise ScenarioFailed(f"scenario {name} exited with {proc.returncode}\n{output}")
        lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
        if not lines:
            raise ScenarioFailed(f"scenario {name} printed no result\n{output}")
        result = json.loads(lines[-1][len(RESULT_PREFIX):])
        result["_output"] = output
        return result

    return run


def write_clip(path: Path, frames: int = 40, size: tuple[int, int] = (64, 48), fps: int = 30) -> Path:
    """An H.264 clip whose frame i is a flat grey of value 5 * i, so frames can be told apart."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            image = np.full((size[1], size[0], 3), (5 * i) % 256, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="session")
def tiny_clips(tmp_path_factory) -> dict[str, Path]:
    """Two 40-frame 64x48 clips (30 fps): 'a' and 'b'."""
    folder = tmp_path_factory.mktemp("addon_clips")
    return {"a": write_clip(folder / "a.mp4"), "b": write_clip(folder / "b.mp4")}


TINY_TRAIN = {"resolution": 32, "ae_dims": 32, "e_dims": 8, "d_dims": 8, "d_mask_dims": 4, "batch_size": 4,
              "iterations": 12, "workers": 0}


@pytest.fixture
def train_tiny_pair():
    """train(workspace, source, shot): faces of both clips (facesets 'src', 'dst') and a tiny model
    'm' trained on them, in an engine workspace built in-process, for tests against a real engine."""
    def train(workspace: Path, source: Path, shot: Path) -> None:
        from engine.errors import EngineError
        from engine.jobs import JobRunner
        from engine.recipes import STAGES
        from engine.workspace import Workspace

        ws = Workspace(workspace)
        runner = JobRunner(ws, STAGES, recover=False)
        try:
            for kind, params in (("extract", {"video": str(source), "faceset": "src", "size": 128}),
                                 ("extract", {"video": str(shot), "faceset": "dst", "size": 128}),
                                 ("train", {"model": "m", "source": "src", "destination": "dst", **TINY_TRAIN})):
                job = runner.wait(runner.submit(kind, params)["id"], timeout=600)
                if job["state"] != "done":
                    raise EngineError(job["error"]["code"], job["error"]["message"])
        finally:
            runner.shutdown()
            ws.close()
    return train
