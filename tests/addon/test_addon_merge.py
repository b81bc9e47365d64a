"""Merging in the add-on: the option table is the engine's MergeSettings; keyframed options become
keys; Merge Shot sends the job and its result lands as a face layer (Alpha Over) with its matte;
the live preview writes frames into the face layer strip and measures its latency, against a
recording link and against a real engine at 1080p."""

import importlib.util
import json
import statistics
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_option_table_is_the_engines_merge_settings():
    """Every MergeSettings field but `keys` has an option with the engine's default, range, choices and
    animatability; every choice is one the engine accepts."""
    from engine.merge import settings as ms

    options = _load(REPO / "addon" / "merge_options.py", "merge_options_under_test")  # no bpy in it
    fields = {f.name: f.default for f in ms.MergeSettings.__dataclass_fields__.values() if f.name != "keys"}
    assert [o.name for o in options.OPTIONS] == list(fields), "one option per field, in the engine's order"
    assert {o.name: o.default for o in options.OPTIONS} == fields
    assert all(type(o.default) is type(fields[o.name]) for o in options.OPTIONS)
    assert options.ANIMATABLE == ms.ANIMATABLE
    for name, low, high in ms.RANGES:
        extra = options.BY_NAME[name].extra
        assert (extra["min"], extra["max"]) == (low, high), name
    choices = {"mode": ms.MODES, "colour": ms.COLOUR_METHODS, "sharpen_mode": ms.SHARPEN_MODES}
    for name, allowed in choices.items():
        assert sorted(key for key, *_ in options.BY_NAME[name].extra["items"]) == sorted(allowed), name
    for key, *_ in options.BY_NAME["mask"].extra["items"]:
        if key != options.CUSTOM_MASK:
            ms.MergeSettings(mask=key, seg_model="xseg")  # raises on a mask the engine does not know
    assert options.MASK_TERMS == ms.MASK_TERMS
    assert {o.group for o in options.OPTIONS} == set(options.GROUPS)
    assert all(len(o.tip) > 30 for o in options.OPTIONS), "every option says what it does and when"
    assert all(len(item[2]) > 20 for o in options.OPTIONS for item in o.extra.get("items", ()))


def test_a_custom_mask_is_any_product_the_engine_takes():
    from engine.merge import settings as ms

    options = _load(REPO / "addon" / "merge_options.py", "merge_options_under_test")
    for text, seg in (("hull*pred", ""), (" pred * dst * hull ", ""), ("seg-pred*seg-dst*dst", "xseg"), ("hull", "")):
        mask = options.custom_mask(text, seg)
        assert ms.MergeSettings(mask=mask, seg_model=seg).mask == mask
    assert options.custom_mask(" pred * dst ", "") == "pred*dst"
    for text, seg, words in (("", "", "joined by '*'"), ("pred**dst", "", "joined by '*'"),
                             ("pred*nose", "", "unknown 'nose'"), ("seg-dst", "", "set Mask Model"),
                             ("custom", "", "unknown 'custom'")):
        with pytest.raises(ValueError, match=words):
            options.custom_mask(text, seg)


def test_samples_become_few_keys():
    options = _load(REPO / "addon" / "merge_options.py", "merge_options_under_test")
    linear = [[f, 0.1 + 0.01 * f] for f in range(10)] + [[f, 0.19] for f in range(10, 20)]
    assert options.simplify(linear) == [[0, 0.1], [9, 0.19], [19, 0.19]]
    assert options.simplify([[3, 1.0]]) == [[3, 1.0]]
    curved = [[f, float(f * f)] for f in range(5)]
    assert options.simplify(curved) == curved


def _layer_png(height: int, width: int, value: int) -> bytes:
    """An RGBA face layer: a square of grey `value` in the middle, transparent elsewhere (BGRA for cv2)."""
    image = np.zeros((height, width, 4), np.uint8)
    image[height // 4:3 * height // 4, width // 4:3 * width // 4] = (value, value, value, 255)
    return cv2.imencode(".png", image)[1].tobytes()


def _results(folder: Path, frames: int = 40, size=(64, 48)) -> dict:
    """A merge job's output folder as the engine writes it: layer/ (RGBA) and matte/ (grey)."""
    width, height = size
    for sub in ("layer", "matte"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for f in range(frames):
        (folder / "layer" / f"frame_{f:06d}.png").write_bytes(_layer_png(height, width, 100 + 3 * f))
        matte = np.zeros((height, width), np.uint8)
        matte[height // 4:3 * height // 4, width // 4:3 * width // 4] = 255
        cv2.imwrite(str(folder / "matte" / f"frame_{f:06d}.png"), matte)
    return {"directory": str(folder), "first_frame": 0, "count": frames, "swapped": frames,
            "layer": {"directory": str(folder / "layer"), "pattern": "frame_%06d.png"},
            "matte": {"directory": str(folder / "matte"), "pattern": "frame_%06d.png"},
            "frames": None, "video": None, "settings": "abc"}


def test_merge_panel_keys_result_and_preview_with_a_recording_link(run_scenario, tiny_clips, tmp_path):
    result = _results(tmp_path / "job")
    (tmp_path / "job" / "merge.json").write_text("{}")  # the job's resume record
    previews = tmp_path / "previews"
    previews.mkdir()
    for f in range(3):
        (previews / f"{f}.png").write_bytes(_layer_png(48, 64, 200 + f))
    preview_matte = np.zeros((48, 64), np.uint8)
    preview_matte[12:36, 16:48] = 77
    (previews / "matte.png").write_bytes(cv2.imencode(".png", preview_matte)[1].tobytes())
    out = run_scenario("merge_addon", tiny_clips["a"], json.dumps(result), previews, tmp_path, timeout=180)
    assert out["problems"] == [], out["problems"]

    # a keyframed erode is sent as keys in source frames; the rest as plain values
    op, args, tag = out["merge_sent"]
    assert op == "job.start" and args["kind"] == "merge" and tag["destination"] == "Shot"
    params = args["params"]
    assert (params["frame_start"], params["frame_end"]) == (5, 33)
    assert params["outputs"] == ["layer", "matte", "frames"]
    assert params["output"].endswith("merges/Scene_Shot")
    settings = params["settings"]
    assert settings["colour"] == "mkl" and settings["mode"] == "seamless" and settings["blur_top"] == 0.1
    erode = settings["keys"]["erode"]
    assert set(settings["keys"]) == {"erode"}
    # keys at timeline 20 (0.02) and 30 (0.2), linear: source 10 and 20, held before and after
    assert erode[0] == [5, pytest.approx(0.02)] and erode[-1] == [32, pytest.approx(0.2)]
    assert [10, pytest.approx(0.02)] in erode and [20, pytest.approx(0.2)] in erode and len(erode) == 4
    from engine.merge.settings import MergeSettings

    s = MergeSettings.from_dict(settings)
    assert s.at(15).erode == pytest.approx(0.11) and s.at(0).erode == pytest.approx(0.02)
    assert out["key_buttons"] == {"erode": "DECORATE_KEYFRAME", "blur": "DECORATE"}

    # the finished job: the face layer over the shot (Alpha Over), the matte muted and Non-Color
    layer, matte = out["layer"], out["matte"]
    assert layer["blend"] == "ALPHA_OVER" and layer["result_for"] == "Shot" and layer["job"] == "j1"
    assert (layer["start"], layer["end"]) == (15, 43) and layer["channel"] == 3
    assert layer["files"] == {"15": "frame_000005.png", "42": "frame_000032.png"}
    assert layer["directory"].rstrip("/").endswith("job/layer") and layer["offset_x"] == 8
    assert matte["found"] and matte["mute"] and matte["colorspace"] == "Non-Color" and matte["channel"] == 4
    assert matte["directory"].rstrip("/").endswith("job/matte") and (matte["start"], matte["end"]) == (15, 43)
    assert out["pending_merges"] == 0

    # rendered: the face layer's square over the shot, the shot itself around it
    frame = cv2.imread(out["render"])
    assert frame.shape == (48, 64, 3)
    # timeline 20 shows source frame 10: the layer's grey 130 in the middle, the shot's grey 50 around
    # it, both moved 8 px right (nothing left of x = 8)
    assert abs(frame[24, 32 + 8].astype(int).mean() - 130) < 6, frame[24, 40]
    assert abs(frame[2, 12].astype(int).mean() - 50) < 6, frame[2, 12]
    assert frame[24, 3].max() < 3

    # live preview: one request in flight, the latest frame asked next; files written into the strip
    assert out["preview_sent"][0] == ["merge.preview", 20 - 10, "mkl"]
    assert [r[1] for r in out["preview_sent"]] == [10, 14], "frames 11-13 coalesced into 14"
    assert out["preview_settings_keys"] == {}
    written = out["written"]
    assert [Path(p).name for p in written] == ["frame_000010.png", "frame_000014.png"]
    for path, value in zip(written, (200, 201)):
        image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        assert image.shape == (48, 64, 4) and image[24, 32, 0] == value
    assert out["latencies"] == 2 and out["median_ms"] > 0
    assert out["preview_range"] == [5, 33], "the source frames the shot shows"
    assert out["digests"][0] == out["digests"][1], "erode's curve is in the digest, not its value at the frame"
    # the matte is written with the layer, by source frame, into the job's matte folder
    written_matte = cv2.imread(out["matte_written"], cv2.IMREAD_UNCHANGED)
    assert out["matte_written"].startswith(str(tmp_path / "job" / "matte"))
    assert written_matte.shape == (48, 64) and written_matte[24, 32] == 77
    # the job's resume record stays; the frames the preview overwrote are listed for the job to redo
    assert (tmp_path / "job" / "merge.json").read_text() == "{}"
    previewed = json.loads((tmp_path / "job" / "previewed.json").read_text())["frames"]
    assert {10, 14, 11, 17} <= set(previewed) and previewed == sorted(set(previewed))
    assert out["after_change"] == ["merge.preview", 14, 0.3], "changing an option previews again"
    assert out["failure_message"].startswith("Preview failed: no model")
    assert out["last_error"] == "", "a failed preview is shown in the panel, not as an error"

    # a reply merged with options changed since is dropped; the newer one is sent and written
    assert out["stale"] == {"written": False, "sent_after": 1, "newer_strength": 0.6, "newer_written": True}
    # an F-curve edit re-asks through the depsgraph check; an update that changes nothing does not
    assert out["curve_edit"][0] == 1 and out["curve_edit"][2] == 0, out["curve_edit"]
    # while a merge job of the shot runs: nothing sent, the panel says why; asked again once it is done
    busy = out["busy"]
    assert busy["sent"] == 0 and "being merged" in busy["message"] and busy["panel"] and busy["after"] == 1
    # the shot moved 3 frames: both strips placed again over it, the files still named by source frame
    moved = out["moved"]
    assert moved["shot"] == [18, 46] and moved["layer"][:3] == [18, 46, "frame_000017.png"]
    assert moved["layer"][3].rstrip("/").endswith("job/layer") and moved["matte"] == [18, 46, "frame_000017.png"]
    # a Custom Mask: sent as the product; a bad one refused with why (preview, panel and Merge Shot)
    custom = out["custom"]
    assert "set Mask Model" in custom["refused_no_model"] and custom["sent"] == "hull*pred*seg-dst"
    assert "unknown 'nose'" in custom["bad_message"] and custom["panel"] and "unknown 'nose'" in custom["bad_merge"]
    # a remote engine's result folder is not here: no strip; the preview writes a local folder of its own
    assert "not on this machine" in out["remote_place"] and out["remote_strips_added"] == 0
    remote = out["remote_preview"]
    assert remote["directory"].rstrip("/") == str(Path(remote["folder"]) / "layer") and remote["file"]

    # a fresh shot without a result: the preview makes its face layer strip first
    fresh = out["fresh"]
    assert fresh["blend"] == "ALPHA_OVER" and fresh["result_for"] == "Fresh" and Path(fresh["file"]).is_file()
    assert fresh["missing_render_ok"]
    assert out["live_op"] == [["FINISHED"], True, 1] and out["live_off"] == [["FINISHED"], False]
    # timeline 25 of the shot moved 3 frames later: source frame 12
    assert out["preview_op"] == ["FINISHED"] and out["preview_op_sent"] == [1, "merge.preview", 12]
    assert out["reset_result"] == ["FINISHED"] and out["reset"] == [0.04, "overlay", 0]


PREVIEW_CHANGES = 50


@pytest.mark.skipif(not (REPO / ".venv" / "bin" / "python").is_file(), reason="no .venv with the engine")
def test_live_preview_and_merge_shot_against_the_engine_at_1080p(run_scenario, train_tiny_pair, tmp_path):
    from engine.media.synthetic import make_clip

    clips = tmp_path / "clips"
    clips.mkdir()
    workspace = tmp_path / "workspace"
    source = make_clip("hopper", clips / "hopper.mp4", seconds=1.0, fps=12, size=(320, 240))
    shot = make_clip("astronaut", clips / "shot_1080p.mp4", seconds=2.5, fps=24, size=(1920, 1080), seed=1)
    train_tiny_pair(workspace, source, shot)
    out = run_scenario("merge_engine", shot, workspace, PREVIEW_CHANGES, timeout=900)
    assert out["size"] == [1920, 1080]
    latencies = out["latencies_ms"]
    assert out["changes"] == PREVIEW_CHANGES and len(latencies) == PREVIEW_CHANGES
    median = statistics.median(latencies)
    print(f"live preview at 1080p, frame change to frame shown: median {median:.0f} ms, "
          f"p90 {np.percentile(latencies, 90):.0f} ms, min {min(latencies):.0f} ms, max {max(latencies):.0f} ms "
          f"over {len(latencies)} changes (first preview {out['first_preview_s']:.1f} s); the engine's own "
          f"median {statistics.median(out['engine_ms']):.0f} ms")
    assert out["median_ms"] == pytest.approx(median, rel=1e-3), "the panel shows the same median"
    layer = cv2.imread(out["layer_file"], cv2.IMREAD_UNCHANGED)
    assert layer.shape == (1080, 1920, 4), "a full-frame RGBA face layer"
    assert layer[..., 3].max() == 255 and layer[0, 0, 3] == 0, "opaque face, transparent elsewhere"
    preview_matte = cv2.imread(out["preview_matte_file"], cv2.IMREAD_UNCHANGED)
    assert preview_matte.shape == (1080, 1920) and np.array_equal(preview_matte, layer[..., 3]), \
        "the preview writes the matte with the layer"
    assert out["layer_frame"] in out["previewed"] and len(out["previewed"]) >= PREVIEW_CHANGES

    merged = out["merged"]
    assert out["merge"] == ["FINISHED"] and merged["state"] == "done", merged["error"]
    params = merged["params"]
    assert params["outputs"] == ["layer", "matte"] and params["output"] == str(workspace / "merges" / "Scene_Shot")
    assert params["settings"]["keys"]["erode"][0] == [0, pytest.approx(0.02)]
    assert out["layer"]["blend"] == "ALPHA_OVER" and (out["layer"]["start"], out["layer"]["end"]) == (1, 61)
    assert out["matte"]["mute"] and out["matte"]["colorspace"] == "Non-Color"
    layer = cv2.imread(out["layer"]["file"], cv2.IMREAD_UNCHANGED)
    matte = cv2.imread(out["matte"]["file"], cv2.IMREAD_UNCHANGED)
    assert layer.shape == (1080, 1920, 4) and matte.shape == (1080, 1920)
    assert np.array_equal(layer[..., 3], matte), "the matte is the face layer's alpha"
    assert out["last_error"] == ""
    assert not out["previewed_after"], "the merge job redid the previewed frames and dropped the list"
    print(f"merge shot: {out['merge_s']:.1f} s for 60 frames at 1080p through the add-on")
