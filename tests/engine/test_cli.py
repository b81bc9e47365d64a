"""The engine's command line runs the same jobs as the server, with a progress bar."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _engine(*args):
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_extract_from_the_command_line(tmp_path, portrait_clips):
    run = _engine("extract", "--workspace", str(tmp_path), "--video", str(portrait_clips["hopper"]),
                  "--faceset", "src", "--end", "6", "--size", "128")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.strip().splitlines()[-1])["faces"] == 6
    assert "100.0%" in run.stderr  # the progress bar reached the end


def test_command_line_errors_are_readable(tmp_path):
    run = _engine("extract", "--workspace", str(tmp_path), "--video", str(tmp_path / "missing.mp4"), "--faceset", "s")
    assert run.returncode == 1
    assert "video file not found" in run.stderr and "[not_found]" in run.stderr
    assert "Traceback" not in run.stderr


def test_faceset_export_and_import_from_the_command_line(tmp_path, portrait_clips):
    ws = str(tmp_path / "ws")
    run = _engine("extract", "--workspace", ws, "--video", str(portrait_clips["hopper"]), "--faceset", "src",
                  "--end", "4", "--size", "128", "--face-type", "whole_face")
    assert run.returncode == 0, run.stderr
    run = _engine("faceset", "--workspace", ws, "export", "src", str(tmp_path / "out"), "--dfl")
    assert run.returncode == 0, run.stderr
    assert len(list((tmp_path / "out").glob("*.jpg"))) == 4
    run = _engine("faceset", "--workspace", ws, "import", str(tmp_path / "out"), "again", "--dfl")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.strip().splitlines()[-1])["faces"] == 4
    listed = json.loads(_engine("faceset", "--workspace", ws, "list").stdout)
    assert {f["name"]: f["face_type"] for f in listed["facesets"]} == {"again": "whole_face", "src": "whole_face"}


def test_train_arguments_become_job_params():
    from engine.cli import build_parser
    from engine.cli_train import train_params

    args = build_parser().parse_args([
        "train", "--workspace", "w", "--model", "m", "--source", "s", "--destination", "d", "--preset", "quick",
        "--minutes", "2", "--set", "gan_power=0.1", "--set", "optimizer=adabelief", "--set", "random_warp=false",
        "--set", "seed=null", "--set", "iterations=50", "--phase", "refine"])
    assert train_params(args) == ("train", {
        "model": "m", "source": "s", "destination": "d", "preset": "quick", "max_seconds": 120.0, "phase": "refine",
        "gan_power": 0.1, "optimizer": "adabelief", "random_warp": False, "seed": None, "iterations": 50})
    pre = build_parser().parse_args(["train", "--workspace", "w", "--model", "m", "--source", "s", "--pretrain"])
    assert train_params(pre) == ("pretrain", {"model": "m", "source": "s"})


def test_bad_train_options_are_readable(tmp_path):
    run = _engine("train", "--workspace", str(tmp_path), "--model", "m", "--source", "s", "--destination", "d",
                  "--set", "nonsense")
    assert run.returncode == 2 and "KEY=VALUE" in run.stderr and "Traceback" not in run.stderr
    run = _engine("train", "--workspace", str(tmp_path), "--model", "m", "--source", "s", "--destination", "d",
                  "--set", "colour=1")
    assert run.returncode == 1 and "unknown training setting" in run.stderr and "[bad_request]" in run.stderr
    run = _engine("export-dfm", "--workspace", str(tmp_path), "--model", "m", "--out", str(tmp_path / "m.dfm"))
    assert run.returncode == 1 and "no checkpoint" in run.stderr


TINY = ["--set", "resolution=32", "--set", "arch=df", "--set", "ae_dims=32", "--set", "e_dims=8", "--set", "d_dims=8",
        "--set", "d_mask_dims=4", "--set", "workers=0", "--set", "batch_size=2", "--set", "device=cpu"]


def _pair(tmp_path, fill_faceset) -> str:
    from engine.workspace import Workspace

    ws = Workspace(tmp_path / "ws")
    fill_faceset(ws, "src", frames=4, people=1)
    fill_faceset(ws, "dst", frames=4, people=1)
    ws.close()
    return str(tmp_path / "ws")


def test_train_with_a_preset_and_settings_then_export_dfm(tmp_path, fill_faceset):
    ws = _pair(tmp_path, fill_faceset)
    run = _engine("train", "--workspace", ws, "--model", "m", "--source", "src", "--destination", "dst",
                  "--preset", "quick", *TINY, "--iterations", "3", "--phase", "refine")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["iterations"] == 3 and result["phase"] == "refine"
    assert {"model.safetensors", "preview.png", "loss.png"} <= {p.name for p in (tmp_path / "ws" / "models" / "m").iterdir()}
    run = _engine("export-dfm", "--workspace", ws, "--model", "m", "--out", str(tmp_path / "m.dfm"))
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.strip().splitlines()[-1])["output"] == str(tmp_path / "m.dfm")
    assert (tmp_path / "m.dfm").stat().st_size > 1000


def test_train_under_torchrun_unchanged(tmp_path, fill_faceset):
    """Two CPU processes (gloo): the same command, one result line, one catalog row."""
    import sqlite3

    ws = _pair(tmp_path, fill_faceset)
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "engine",
                          "train", "--workspace", ws, "--model", "m", "--source", "src", "--destination", "dst",
                          *TINY, "--iterations", "2"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    results = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert len(results) == 1 and results[0]["iterations"] == 2
    with sqlite3.connect(tmp_path / "ws" / "catalog.sqlite") as db:
        assert db.execute("SELECT name, iterations FROM models").fetchall() == [("m", 2)]


def test_serve_confine_flags_parse_to_the_services_setting():
    from engine.cli import build_parser

    base = ["serve", "--workspace", "w"]
    assert build_parser().parse_args(base).confine is None  # automatic: confined beyond loopback
    assert build_parser().parse_args(base + ["--confine"]).confine is True
    assert build_parser().parse_args(base + ["--no-confine"]).confine is False


def test_serve_tls_prints_the_fingerprint_clients_pin(tmp_path):
    import re

    import pytest

    from bridge import BridgeClient, BridgeError
    from bridge.tls import TLSConfig, certificate_fingerprint

    proc = subprocess.Popen([sys.executable, "-m", "engine", "serve", "--workspace", str(tmp_path / "ws"),
                             "--port", "0", "--token", "tok", "--tls", "--confine"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        first, second = proc.stdout.readline(), proc.stdout.readline()
        fingerprint = re.fullmatch(r"tls fingerprint: ([0-9a-f]{64})\n", first)
        port = re.search(r"listening on [\d.]+:(\d+)", second)
        assert fingerprint and port, (first, second)
        cert = tmp_path / "ws" / "tls" / "engine-cert.pem"
        assert certificate_fingerprint(str(cert)) == fingerprint.group(1)
        client = BridgeClient("127.0.0.1", int(port.group(1)), "tok", timeout=30,
                              tls=TLSConfig(fingerprint=fingerprint.group(1)))
        info = client.call("engine.info") if client.connect() else None
        assert info["tls"] is True and info["confined"] is True
        client.close()
        with pytest.raises(BridgeError) as caught:
            BridgeClient("127.0.0.1", int(port.group(1)), "tok", timeout=30).connect()
        assert caught.value.code == "tls_required"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_serve_refuses_a_tls_key_without_its_certificate(tmp_path):
    run = _engine("serve", "--workspace", str(tmp_path), "--tls-key", str(tmp_path / "k.pem"))
    assert run.returncode == 2 and "[bad_request]" in run.stderr and "Traceback" not in run.stderr
