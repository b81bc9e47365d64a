"""Scenario support, inside the Blender (bpy) process: enable the extension as Blender does, build
a sequencer scene, print the result line the test reads. Never imports torch or cv2."""

from __future__ import annotations

import importlib
import json
import os
import sys
import time

import addon_utils
import bpy

REPO_MODULE = "swapline_tests"
MODULE = f"bl_ext.{REPO_MODULE}.swapline"


def enable():
    """Enable the extension from the test's local repository; returns its addon.sync module."""
    directory = os.environ["SWAPLINE_TEST_EXTENSIONS"]
    repos = bpy.context.preferences.extensions.repos
    if not any(r.module == REPO_MODULE for r in repos):
        repos.new(name="Swapline tests", module=REPO_MODULE, custom_directory=directory, source="USER")
    errors = []
    if addon_utils.enable(MODULE, default_set=True, handle_error=errors.append) is None or errors:
        raise RuntimeError(f"enabling {MODULE} failed: {errors}")
    return importlib.import_module(f"{MODULE}.addon.sync")


def disable() -> None:
    addon_utils.disable(MODULE, default_set=True)


def preferences():
    return bpy.context.preferences.addons[MODULE].preferences


def submodule(name: str):
    return importlib.import_module(f"{MODULE}.addon.{name}")


def new_scene(fps: int = 30):
    scene = bpy.context.scene
    bpy.context.workspace.sequencer_scene = scene  # sequencer work needs it (DESIGN.md)
    scene.render.fps, scene.render.fps_base = fps, 1.0
    scene.sequence_editor_create()
    return scene


def new_shot(clip: str, workspace: str, fps: int):
    """A new scene at `fps` whose active strip is `clip`, a movie marked as the shot (DESTINATION) on
    channel 2 from frame 1, with the render at the clip's own size and the scene set to `workspace`:
    (scene, editor, shot)."""
    scene = new_scene(fps=fps)
    editor = scene.sequence_editor
    shot = editor.strips.new_movie(name="Shot", filepath=clip, channel=2, frame_start=1)
    shot.swapline_role = "DESTINATION"
    editor.active_strip = shot
    scene.swapline.workspace = workspace
    scene.render.resolution_x, scene.render.resolution_y = shot.elements[0].orig_width, shot.elements[0].orig_height
    return scene, editor, shot


def call(op, **kwargs) -> tuple[set | None, str]:
    """Run an operator; returns (result, error text). Background bpy raises reports of errors."""
    start = time.monotonic()
    try:
        return op(**kwargs), ""
    except RuntimeError as exc:
        return None, str(exc)
    finally:
        call.last_seconds = time.monotonic() - start


def drain_until(sync, predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sync.drain(budget=None)
        if predicate():
            return True
        time.sleep(0.02)
    return False


def emit(**data) -> None:
    print("SCENARIO_RESULT " + json.dumps(data, default=str), flush=True)


def check(condition: bool, message: str) -> None:
    if not condition:
        print(f"CHECK FAILED: {message}", file=sys.stderr, flush=True)
        raise SystemExit(1)
