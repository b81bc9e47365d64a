"""`make demo`: the whole Swapline path, driven through the real add-on in headless Blender.

Two clips (made from bundled public-domain portraits unless --source/--destination are given) go on
the timeline as movie strips; the add-on launches a local engine, extracts both faces, trains for a
fixed time budget, merges the swap onto the timeline, presses Evaluate (the quality report's summary
sheet lands beside the MP4), and Blender renders the edit to an MP4 with
the destination's audio. Prints the MP4's path and one summary line.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_extension():
    """Import the repository root as the extension package, the way Blender loads it."""
    spec = importlib.util.spec_from_file_location("swapline", ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["swapline"] = module
    spec.loader.exec_module(module)
    return module


def make_clips(out: Path, seconds: float) -> tuple[Path, Path]:
    sys.path.insert(0, str(ROOT))
    from engine.media.synthetic import make_clip

    print("demo: making clips from bundled portraits (Grace Hopper → Eileen Collins)", flush=True)
    src = make_clip("hopper", out / "clips" / "hopper.mp4", seconds=seconds, fps=25)
    dst = make_clip("astronaut", out / "clips" / "astronaut.mp4", seconds=seconds, fps=25, audio=True, seed=1)
    return src, dst


def has_audio(path: Path) -> bool:
    import av

    with av.open(str(path)) as c:
        return bool(c.streams.audio)


def build_scene(src: Path, dst: Path):
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    bpy.context.workspace.sequencer_scene = scene  # without it sequencer work segfaults (DESIGN.md)
    ed = scene.sequence_editor_create()
    dst_strip = ed.strips.new_movie(name="Destination", filepath=str(dst), channel=1, frame_start=1)
    src_strip = ed.strips.new_movie(name="Source", filepath=str(src), channel=4, frame_start=1)
    src_strip.mute = True  # extracted from, never rendered
    if has_audio(dst):
        ed.strips.new_sound(name="Destination audio", filepath=str(dst), channel=2, frame_start=1)
    scene.render.fps = round(dst_strip.fps)
    scene.render.fps_base = round(dst_strip.fps) / dst_strip.fps
    scene.frame_start, scene.frame_end = dst_strip.frame_final_start, dst_strip.frame_final_end - 1
    elem = dst_strip.elements[0] if hasattr(dst_strip, "elements") and len(dst_strip.elements) else None
    w, h = (elem.orig_width, elem.orig_height) if elem and elem.orig_width else (640, 480)
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = w, h, 100
    # Blender 5's default AgX view transform would shift every pixel of the edit; a video edit wants
    # the footage's own colours back out.
    scene.view_settings.view_transform = "Standard"
    src_strip.swapline_role = "SOURCE"
    src_strip.swapline_likeness_confirmed = True  # public-domain portraits, or your own --source
    dst_strip.swapline_role = "DESTINATION"
    return scene, src_strip, dst_strip


def render(scene, out: Path) -> Path:
    """The edit through the add-on's Render Edit: H.264 with the audio, tagged, with its sidecar."""
    import bpy

    scene.render.ffmpeg.audio_channels = "MONO"
    target = out / "swapline_demo.mp4"
    scene.swapline_render.format = "H264"
    scene.swapline_render.output = str(target)
    with bpy.context.temp_override(scene=scene):
        if "FINISHED" not in bpy.ops.swapline.render():
            raise SystemExit("demo: Render Edit failed")
    if not target.is_file():
        raise SystemExit("demo: Blender rendered no MP4")
    return target


def compare_sheet(dst: Path, video: Path, out: Path, frame: int) -> Path:
    """Destination frame beside the rendered frame, for a person to look at."""
    import cv2
    import numpy as np

    def grab(path):
        cap = cv2.VideoCapture(str(path))
        cap.set(cv2.CAP_PROP_POS_FRAMES, frame)
        ok, img = cap.read()
        cap.release()
        return img if ok else None

    a, b = grab(dst), grab(video)
    sheet = out / "compare.png"
    if a is not None and b is not None:
        cv2.imwrite(str(sheet), np.hstack([a, cv2.resize(b, (a.shape[1], a.shape[0]))]))
    return sheet


def evaluate(shot, out: Path, timeout: float = 600.0) -> str:
    """Press Evaluate on the merged shot and wait for the quality report; the summary sheet is
    copied beside the MP4. Headless Blender runs no timers, so this drives the add-on's drain."""
    import bpy
    from swapline.addon import evaluate_drain, evaluate_state, sync

    bpy.ops.swapline.evaluate()
    evaluation = shot.swapline_evaluation
    deadline = time.monotonic() + timeout
    while evaluation.state in evaluate_state.PENDING:
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: the evaluation did not finish in {timeout:.0f} s")
        sync.drain(budget=None)
        evaluate_drain.drain()
        time.sleep(0.05)
    if evaluation.state != "DONE":
        raise SystemExit(f"demo: the evaluation ended {evaluation.state}: {evaluation.message}")
    shutil.copyfile(evaluation.sheet, out / "quality_summary.png")
    figures = evaluate_state.headline(evaluation)
    shown = ", ".join(f"{k} {v:.3g}" for k, v in figures.items() if isinstance(v, (int, float)))
    return f"{out / 'quality_summary.png'} ({shown})"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", type=Path, help="clip of the face to put in")
    p.add_argument("--destination", type=Path, help="the shot to change")
    p.add_argument("--out", type=Path, default=ROOT / "demo_out")
    p.add_argument("--minutes", type=float, default=4.0, help="training time budget")
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--clip-seconds", type=float, default=4.0, help="length of the generated clips")
    args = p.parse_args(argv)
    t0 = time.monotonic()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    # Each demo is its own project: facesets gather every clip extracted into them and a model
    # resumes its checkpoint, so a workspace left by an earlier demo would mix people.
    shutil.rmtree(out / "workspace", ignore_errors=True)
    if bool(args.source) != bool(args.destination):
        raise SystemExit("demo: give both SRC and DST, or neither")
    src, dst = (args.source.resolve(), args.destination.resolve()) if args.source else make_clips(out, args.clip_seconds)
    for clip in (src, dst):
        if not clip.is_file():
            raise SystemExit(f"demo: no such clip: {clip}")

    import bpy

    ext = load_extension()
    ext.register()
    from swapline.addon import sync

    scene, src_strip, dst_strip = build_scene(src, dst)
    settings = scene.swapline
    settings.workspace = str(out / "workspace")
    settings.time_budget = args.minutes
    settings.iterations = 1_000_000
    settings.resolution = args.resolution

    try:
        bpy.ops.swapline.connect()
        engine = sync.wait_for_connection()
        print(f"demo: engine {engine.get('name')} on {engine.get('device')}", flush=True)
        bpy.ops.swapline.extract()
        extracted = sync.wait_for_jobs("extract", timeout=600)
        print(f"demo: extracted {[j['result'] for j in extracted]}", flush=True)
        bpy.ops.swapline.train()
        trained = sync.wait_for_jobs("train", timeout=args.minutes * 60 + 300)[0]
        print(f"demo: trained {trained['result']}", flush=True)
        for name in ("preview.png", "loss.png"):  # the training pictures the add-on showed, kept beside the MP4
            picture = out / "workspace" / "models" / settings.model / name
            if picture.is_file():
                shutil.copyfile(picture, out / f"training_{name}")
        bpy.ops.swapline.merge_shot()
        merged = sync.wait_for_jobs("merge", timeout=600)[0]
        sync.drain(budget=None)
        result = [s for s in scene.sequence_editor.strips if s.swapline_result_for == dst_strip.name]
        if not result:
            raise SystemExit("demo: the merge finished but no result strip is on the timeline")
        print(f"demo: result strip {result[0].name!r} on channel {result[0].channel}", flush=True)
        evaluation = evaluate(dst_strip, out)
        video = render(scene, out)
    finally:
        bpy.ops.swapline.disconnect()
        sync.drain(budget=None)
    sheet = compare_sheet(dst, video, out, frame=merged["result"]["count"] // 2)
    faces = sum(j["result"]["faces"] for j in extracted)
    frames = sum(j["result"]["frames"] for j in extracted)
    print(f"swapline demo: quality report {evaluation}")
    print(video)
    print(f"swapline demo: {frames} frames, {faces} faces found, {trained['result']['iterations']} iterations, "
          f"loss {trained['result']['loss']:.4f}, {merged['result']['count']} frames merged, "
          f"wall time {time.monotonic() - t0:.0f} s (side by side: {sheet})")

    ext.unregister()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
