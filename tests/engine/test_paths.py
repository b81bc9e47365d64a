"""Client paths: workspace-relative when relative; a confined engine keeps every one inside its workspace."""

import dataclasses
import os

import pytest

from bridge import BridgeError
from engine.errors import EngineError
from engine.faces.extract import ExtractParams
from engine.masks.matte import MatteParams
from engine.merge.shot import MergeParams
from engine.paths import ALWAYS_CONFINED, JOB_PATHS, OP_PATHS, client_path, confine_paths
from engine.recipes import STAGES
from engine.service import EngineService


@pytest.fixture
def root(tmp_path):
    ws = tmp_path / "ws"
    (ws / "media").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    return ws


def _refused(root, value, **kw):
    with pytest.raises(EngineError) as err:
        client_path(root, value, confine=True, **kw)
    assert err.value.code == "forbidden_path"
    return err.value.message


def test_relative_paths_are_workspace_relative_on_every_engine(root, monkeypatch):
    monkeypatch.chdir(root.parent / "outside")  # the engine's working folder plays no part
    for confine in (True, False):
        assert client_path(root, "media/clip.mp4", confine=confine) == root / "media" / "clip.mp4"
        assert client_path(root, "a.dfm", confine=confine, base="exports") == root / "exports" / "a.dfm"
        assert client_path(root, "renders/../media", confine=confine).resolve() == root / "media"


def test_a_confined_engine_refuses_paths_that_leave_the_workspace(root):
    outside = root.parent / "outside"
    assert "outside" in _refused(root, "../outside/clip.mp4")
    _refused(root, "media/../../outside")
    _refused(root, str(outside / "clip.mp4"))
    _refused(root, "/etc/passwd")
    assert client_path(root, str(root / "media" / "x.mp4"), confine=True) == root / "media" / "x.mp4"


def test_a_symlink_inside_the_workspace_that_points_out_is_refused(root):
    outside = root.parent / "outside"
    (outside / "secret.txt").write_text("no")
    os.symlink(outside, root / "link")
    _refused(root, "link/secret.txt")
    _refused(root, str(root / "link"))
    os.symlink(root / "media", root / "inner")  # a link that stays inside is fine
    assert client_path(root, "inner", confine=True) == root / "media"


def test_a_local_engine_keeps_absolute_paths(root):
    outside = root.parent / "outside" / "clip.mp4"
    assert client_path(root, str(outside), confine=False) == outside
    with pytest.raises(EngineError) as err:
        client_path(root, "", confine=False)
    assert err.value.code == "bad_request"


def test_confine_paths_rewrites_only_the_named_string_values(root):
    params = {"video": "media/a.mp4", "output": None, "faceset": "../x", "frame_end": 3}
    out = confine_paths(root, params, {"video": "", "output": ""}, confine=True)
    assert out == {**params, "video": str(root / "media" / "a.mp4")}
    assert params["video"] == "media/a.mp4"  # the caller's map is not changed


def test_every_op_and_job_kind_declares_its_paths(tmp_path):
    svc = EngineService(tmp_path / "ws")
    try:
        ops = svc._ops() | {"engine.info", "job.start", "job.get", "job.list", "job.cancel"}
        assert ops <= set(OP_PATHS), f"ops without a path declaration: {sorted(ops - set(OP_PATHS))}"
        assert set(STAGES) <= set(JOB_PATHS), f"job kinds without one: {sorted(set(STAGES) - set(JOB_PATHS))}"
        assert ALWAYS_CONFINED <= set(OP_PATHS)
    finally:
        svc.stop()
    # the declared keys are the params' real names
    for kind, cls in (("extract", ExtractParams), ("merge", MergeParams), ("mask_matte", MatteParams)):
        assert set(JOB_PATHS[kind]) <= {f.name for f in dataclasses.fields(cls)}


def test_the_service_confines_op_args_and_job_params(tmp_path):
    outside = tmp_path / "outside.mp4"
    outside.write_bytes(b"x")
    svc = EngineService(tmp_path / "ws", confine=True)
    try:
        for op, args in (("job.start", {"kind": "extract", "params": {"video": str(outside), "faceset": "f"}}),
                         ("job.start", {"kind": "merge", "params": {"model": "m", "video": "media/a.mp4",
                                                                     "faceset": "f", "output": "../renders"}}),
                         ("job.start", {"kind": "import_faceset", "params": {"folder": "/", "faceset": "f"}}),
                         ("job.start", {"kind": "export_dfm", "params": {"model": "m", "output": "../../m.dfm"}}),
                         ("merge.preview", {"model": "m", "video": "../outside.mp4", "faceset": "f", "frame": 0})):
            with pytest.raises(BridgeError) as err:
                svc.handle(op, args, None)
            assert err.value.code == "forbidden_path", (op, args)
        assert svc.jobs.list() == []  # nothing was queued
        args = svc.client_paths("job.start", {"kind": "merge", "params": {
            "model": "m", "video": "media/a.mp4", "faceset": "f", "output": "renders/shot"}})
        assert args["params"]["video"] == str(svc.workspace.root / "media" / "a.mp4")
        assert args["params"]["output"] == str(svc.workspace.root / "renders" / "shot")
        args = svc.client_paths("job.start", {"kind": "export_dfm", "params": {"model": "m", "output": "m.dfm"}})
        assert args["params"]["output"] == str(svc.workspace.root / "exports" / "m.dfm")
    finally:
        svc.stop()


def test_a_local_engine_takes_absolute_paths_but_reads_files_only_in_its_workspace(tmp_path):
    outside = tmp_path / "clip.mp4"
    outside.write_bytes(b"x")
    svc = EngineService(tmp_path / "ws")
    try:
        assert not svc.confine
        args = svc.client_paths("job.start", {"kind": "extract", "params": {"video": str(outside), "faceset": "f"}})
        assert args["params"]["video"] == str(outside)
        args = svc.client_paths("job.start", {"kind": "extract", "params": {"video": "clip.mp4", "faceset": "f"}})
        assert args["params"]["video"] == str(svc.workspace.root / "clip.mp4")
        for op in ("files.manifest", "files.read"):  # files.* serve the workspace, even to a local client
            with pytest.raises(BridgeError) as err:
                svc.handle(op, {"path": str(outside)}, None)
            assert err.value.code == "forbidden_path"
    finally:
        svc.stop()


def test_a_confined_engine_refuses_an_op_that_declared_no_paths(tmp_path, monkeypatch):
    svc = EngineService(tmp_path / "ws", confine=True)
    try:
        monkeypatch.delitem(OP_PATHS, "faceset.list")
        with pytest.raises(BridgeError) as err:
            svc.handle("faceset.list", {}, None)
        assert err.value.code == "forbidden_path" and "declared" in err.value.message
        with pytest.raises(BridgeError) as err:
            svc.handle("no.such.op", {}, None)
        assert err.value.code == "unknown_op"
    finally:
        svc.stop()


def test_no_client_path_names_the_engines_own_files(root):
    (root / "tls").mkdir()
    for value in ("tls/engine-key.pem", "tls", "catalog.sqlite", str(root / "jobs.lock"), "media/../tls/x",
                  # the same files on a case-insensitive disk (macOS, Windows), and Windows' trailing dots
                  "TLS/engine-key.pem", "Catalog.SQLite", "JOBS.LOCK", "tls./engine-key.pem", "tls /k"):
        assert "own files" in _refused(root, value)
    assert client_path(root, "exports/catalog.sqlite", confine=True) == root / "exports" / "catalog.sqlite"
    assert client_path(root, str(root / "tls" / "k"), confine=False) == root / "tls" / "k"  # a local engine's user


def test_a_merge_job_names_its_model_by_plain_name_on_every_engine(tmp_path):
    # the merge reads models/<model>: "../../elsewhere" would load weights from outside the workspace
    for confine in (True, False):
        svc = EngineService(tmp_path / f"ws{confine}", confine=confine)
        try:
            for model in ("../../outside", "a/b", "a\\b", "..", "", "x\0y"):
                with pytest.raises(BridgeError) as err:
                    svc.handle("job.start", {"kind": "merge", "params": {"model": model, "video": "media/a.mp4",
                                                                         "faceset": "f"}}, None)
                assert err.value.code == "bad_request" and "plain name" in err.value.message, model
            assert svc.jobs.list() == []
            args = svc.client_paths("job.start", {"kind": "merge", "params": {"model": "m-1", "video": "a.mp4",
                                                                              "faceset": "f"}})
            assert args["params"]["model"] == "m-1"
        finally:
            svc.stop()
