"""Training in the add-on: the option table matches the engine's settings, and the Train panel
drives a real engine subprocess (presets, Start, progress and pictures, pause/resume, Apply, Save,
Backup, Stop, Export .dfm, Hold Back)."""

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_option_table_is_the_engines_settings():
    """Every TrainSettings field has an option, with the engine's default; Apply sends exactly the
    soft options; every preset maps onto options and back to valid settings."""
    from engine.train.presets import PRESETS
    from engine.train.settings import SOFT_OPTIONS, TrainSettings

    options = _load(REPO / "addon" / "train_options.py", "train_options_under_test")  # no bpy in it
    defaults = {o.name: o.default for o in options.OPTIONS}
    assert options.to_settings(defaults) == TrainSettings().to_dict()
    assert set(options.to_settings(defaults, soft_only=True)) == set(SOFT_OPTIONS)
    assert {key for key, *_ in options.PRESET_ITEMS} == set(PRESETS)
    for name, preset in PRESETS.items():
        values = {**defaults, **options.from_settings(preset)}
        assert TrainSettings.from_dict(options.to_settings(values)) == TrainSettings.from_preset(name), name
    assert all(len(o.tip) > 30 for o in options.OPTIONS), "every option says what it does and when"
    assert {o.group for o in options.OPTIONS} == set(options.GROUPS)
    # Hold Back is a param of the train job, not a setting: every face trains unless asked, up to the
    # share the engine takes, and pretraining holds nothing back
    from engine.holdout import MAX_SHARE

    assert options.BY_NAME["holdout"].default == 0.0 and options.BY_NAME["holdout"].extra["max"] == MAX_SHARE
    assert options.job_options(defaults, pretrain=False) == {}
    assert options.job_options(dict(defaults, holdout=0.05), pretrain=False) == {"holdout": 0.05}
    assert options.job_options(dict(defaults, holdout=0.05), pretrain=True) == {}


def _facesets(workspace: Path) -> None:
    conftest = _load(REPO / "tests" / "engine" / "conftest.py", "engine_conftest_under_test")
    from engine.workspace import Workspace

    ws = Workspace(workspace)
    conftest._fill(ws, "src", frames=4, people=1)
    conftest._fill(ws, "dst", frames=4, people=1)
    ws.close()


@pytest.mark.skipif(not (REPO / ".venv" / "bin" / "python").is_file(), reason="no .venv with the engine")
def test_training_panel_against_the_engine(run_scenario, tmp_path):
    workspace = tmp_path / "workspace"
    _facesets(workspace)
    out = run_scenario("train_engine", workspace, tmp_path / "m.dfm", timeout=400)
    assert out["problems"] == []
    assert "No training is running" in out["start_unconnected_job"]
    assert out["preset"] == ["FINISHED"]
    assert out["after_preset"] == [64, "df", True, True, False, 128, "full", "quick", "train.presets"]
    assert out["preset_again"] == [["FINISHED"], 1, 256, True, "whole_face"], "presets asked for once"
    assert "swapline.train" in out["idle_buttons"] and "swapline.train_command" not in out["idle_buttons"]

    assert out["start"] == ["FINISHED"]
    op, args = out["start_sent"]
    assert op == "job.start" and args["kind"] == "train"
    params = args["params"]
    assert {k: params[k] for k in ("model", "source", "destination", "resolution", "arch", "ae_dims",
                                   "batch_size", "iterations", "max_seconds", "face_type", "seed",
                                   "auto_phases", "workers")} == {
        "model": "m", "source": "src", "destination": "dst", "resolution": 32, "arch": "df", "ae_dims": 32,
        "batch_size": 2, "iterations": 100_000, "max_seconds": 180.0, "face_type": "", "seed": 0,
        "auto_phases": False, "workers": 0}
    from engine.holdout import read_holdout
    from engine.train.settings import TrainSettings

    assert set(params) - {"model", "source", "destination"} == set(TrainSettings().to_dict()), \
        "every training setting is sent (Hold Back 0: nothing held back, no param)"
    assert read_holdout(workspace / "models" / "m") is None

    preview, graph, icon, asked = out["images"]
    assert preview[0] > 32 and preview[1] > 32 and graph == [640, 240] and icon == preview and asked
    labels = " | ".join(out["running_labels"])
    for words in ("Iteration ", "Loss ", "samples/s", "to the target", "Phase: warp (manual)"):
        assert words in labels, (words, labels)
    buttons = out["running_buttons"]
    for command in ("pause", "save", "backup"):
        assert ["swapline.train_command", {"command": command}] in buttons
    assert ["swapline.train_show_image", {"which": "PREVIEW"}] in buttons and out["running_icons"] == 2

    moved, eta, paused_buttons = out["paused"]
    assert moved == 0 and eta == -1.0, "a paused job does not step and has no ETA"
    assert "swapline.train_apply" in paused_buttons
    assert out["resumed"] == "running"
    assert out["apply"] == ["FINISHED"]
    op, args = out["apply_sent"]
    assert op == "job.control" and args["command"] == "set"
    assert args["options"]["learning_rate"] == pytest.approx(1e-4) and args["options"]["phase"] == "refine"
    assert "resolution" not in args["options"] and "arch" not in args["options"]
    assert out["save"] == out["backup"] == ["FINISHED"]
    assert out["commands_sent"] == ["pause", "resume", "set", "save", "backup"]
    assert out["newer_pictures"][0]
    assert out["show"] == ["FINISHED"] and out["editor"] == ["Swapline Loss Graph"]
    assert out["stop"] == ["FINISHED"] and out["stopped"][:2] == ["cancelled", "cancelled"]
    assert (workspace / "models" / "m" / "preview.png").is_file()
    assert list((workspace / "models" / "m" / "backups").iterdir())

    assert out["export"] == ["FINISHED"]
    assert out["export_sent"] == ["job.start", {"kind": "export_dfm", "params": {
        "model": "m", "output": str(tmp_path / "m.dfm")}}]
    [(state, result, error)] = out["exported"]
    assert state == "done", error
    assert (tmp_path / "m.dfm").stat().st_size > 1000 and result["output"] == str(tmp_path / "m.dfm")

    # Hold Back on a new model reaches the engine: it keeps the last of each faceset's 4 faces unseen
    op, args = out["held_sent"]
    assert op == "job.start" and args["params"]["holdout"] == pytest.approx(0.25)
    [(state, error)] = out["held_trained"]
    assert state == "done", error
    held = read_holdout(workspace / "models" / "h")
    assert held["share"] == pytest.approx(0.25)
    assert held["source"]["faceset"] == "src" and held["destination"]["faceset"] == "dst"
    assert len(held["source"]["faces"]) == len(held["destination"]["faces"]) == 1
