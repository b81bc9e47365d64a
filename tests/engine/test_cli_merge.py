"""`python -m engine merge`: every merge setting by --set (animation keys as JSON), outputs by --outputs."""

import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import build_parser, main
from engine.cli_merge import merge_params
from engine.errors import EngineError
from engine.merge.settings import MergeSettings

ROOT = Path(__file__).resolve().parents[2]
BASE = ["merge", "--workspace", "w", "--model", "m", "--video", "clip.mp4", "--faceset", "dst"]


def _params(*extra):
    return merge_params(build_parser().parse_args([*BASE, *extra]))


def test_settings_are_parsed_like_the_train_command():
    p = _params("--set", "mode=seamless", "--set", "erode=0.08", "--set", "colour_bits=6",
                "--set", "hist_masked=false", "--set", "mask=pred*dst", "--set", "colour=lct",
                "--start", "3", "--end", "40", "--output", "out")
    assert p["settings"] == {"mode": "seamless", "erode": 0.08, "colour_bits": 6, "hist_masked": False,
                             "mask": "pred*dst", "colour": "lct"}
    assert (p["frame_start"], p["frame_end"], p["output"]) == (3, 40, "out")
    assert p["model"] == "m" and p["faceset"] == "dst" and Path(p["video"]).is_absolute()
    assert "outputs" not in p  # the job's default (layer and matte)
    s = MergeSettings.from_dict(p["settings"])
    assert s.mode == "seamless" and s.colour_bits == 6 and s.mask_terms == ("pred", "dst")


def test_animation_keys_come_as_json():
    p = _params("--set", 'keys={"erode": [[0, 0], [50, 0.1]], "blur": [[10, 0.2]]}')
    assert p["settings"]["keys"] == {"erode": [[0, 0], [50, 0.1]], "blur": [[10, 0.2]]}
    s = MergeSettings.from_dict(p["settings"])
    assert s.at(25).erode == pytest.approx(0.05) and s.at(99).blur == pytest.approx(0.2)


def test_outputs_are_a_checked_list():
    assert _params("--outputs", "layer,video")["outputs"] == ["layer", "video"]
    assert _params("--outputs", " frames , matte,frames")["outputs"] == ["frames", "matte"]
    with pytest.raises(EngineError) as err:
        _params("--outputs", "layer,gif")
    assert err.value.code == "bad_request" and "gif" in err.value.message
    with pytest.raises(EngineError):
        _params("--outputs", ",")


@pytest.mark.parametrize("option, words", [
    ("mode=blend", "mode must be one of"),
    ("erode=2", "erode must be between"),
    ("smudge=1", "smudge"),
    ('keys={"mode": [[0, 1]]}', "cannot be animated"),
    ("erode", "KEY=VALUE"),
])
def test_bad_settings_are_refused_before_any_job(option, words):
    with pytest.raises(EngineError) as err:
        _params("--set", option)
    assert err.value.code == "bad_request" and words in err.value.message


def test_a_bad_setting_is_a_readable_error_from_the_command_line(tmp_path, capsys):
    assert main([*BASE[:2], str(tmp_path / "ws"), *BASE[3:], "--set", "erode=9"]) == 2
    err = capsys.readouterr().err
    assert "erode must be between" in err and "[bad_request]" in err
    assert not (tmp_path / "ws").exists()  # refused before a workspace or job was made


def test_merge_help_names_the_options():
    run = subprocess.run([sys.executable, "-m", "engine", "merge", "--help"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0 and "--set" in run.stdout and "--outputs" in run.stdout
