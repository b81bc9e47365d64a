"""Fixtures shared by the engine's tests: a faceset of synthetic faces in a real workspace catalog."""

import time

import cv2
import numpy as np
import pytest

from engine.errors import Cancelled
from engine.facesets import FaceRecord
from engine.geometry.align import FACE_TYPES, align_transform, template_points
from engine.workspace import Workspace

SIZE = 64


def _fill(ws: Workspace, name: str = "f", frames: int = 5, people: int = 2) -> list[FaceRecord]:
    """A faceset of synthetic faces (a bright ellipse on noise), `people` tracks per frame."""
    rng = np.random.default_rng(0)
    video = ws.root / "clip.mp4"
    video.write_bytes(b"clip")
    media = ws.register_media(video, 320, 240, 25.0, frames)
    fs = ws.facesets.ensure(name, "full", SIZE)
    tpl = template_points(100, FACE_TYPES["full"])
    for frame in range(frames):
        for person in range(people):
            lm = tpl + [100 + 3 * frame + 150 * person, 60]
            img = rng.integers(0, 120, (SIZE, SIZE, 3)).astype(np.uint8)
            cv2.ellipse(img, (SIZE // 2, SIZE // 2), (SIZE // 4, SIZE // 3), 0, 0, 360, (90, 140, 200), -1)
            path = ws.faceset_dir(name) / f"m{media}_f{frame:06d}_{person}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), img)
            ws.facesets.add(fs, FaceRecord(
                media_id=media, frame=frame, face_index=person, box=(0, 0, 1, 1), score=0.9,
                landmarks=np.zeros((468, 2), np.float32), landmarks68=lm.astype(np.float32),
                transform=align_transform(lm, SIZE, "full"), image=path, track=1 + person, face_type="full",
                size=SIZE))
    return ws.facesets.faces(name, everyone=True)


@pytest.fixture
def fill_faceset():
    """fill_faceset(ws, name="f", frames=5, people=2) -> the faces of a new synthetic faceset."""
    return _fill


def _wait_job(runner, kind: str, params: dict, state: str = "done", timeout: float = 300) -> dict:
    """Submit a job to `runner`, wait for it and assert it ended in `state`; the finished job."""
    job = runner.wait(runner.submit(kind, params)["id"], timeout=timeout)
    assert job["state"] == state, job["error"]
    return job


@pytest.fixture(scope="session")
def wait_job():
    """wait_job(runner, kind, params, state="done", timeout=300) -> the job, asserted to end in `state`."""
    return _wait_job


# the commands that end obedient_stage's job: the tests' ways to finish it
ENDING_COMMANDS = ("finish", "backup", "whatever")


def _obedient_stage(ws, params, ctx):
    """A stage that takes commands the way training does (pause and resume change the job's state),
    reports with training's stats while it runs, and returns the commands it saw."""
    seen, paused = [], False
    while True:
        for command in ctx.commands():
            seen.append(command)
            if command["command"] in ("pause", "resume"):
                paused = command["command"] == "pause"
                ctx.set_paused(paused)
            if command["command"] in ENDING_COMMANDS:
                return {"seen": seen}
        if ctx.should_stop():
            raise Cancelled()
        if not paused:
            ctx.report(0.5, "working", {"eta_s": 12.0, "iteration": 7, "preview_version": 2, "paused": False})
        time.sleep(0.01)


@pytest.fixture
def obedient_stage():
    """The stage function above, for JobRunners built by the tests of jobs and training ops."""
    return _obedient_stage
