"""Tests for engine.train.distributed: two CPU processes on gloo train one model in step."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import safetensors.torch
import torch

from engine.train import distributed

SCRIPT = Path(__file__).with_name("ddp_train.py")
ROOT = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_without_torchrun_everything_is_one_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    assert distributed.world_size() == 1 and distributed.is_main_process()
    assert not distributed.is_distributed()
    cpu = torch.device("cpu")
    assert distributed.setup(cpu) == cpu and distributed.from_main(("x", 1)) == ("x", 1)
    module = torch.nn.Linear(2, 2)
    assert distributed.wrap(module, cpu) is module and distributed.data_seed(5) == 5


def test_two_gloo_processes_keep_equal_weights_and_one_writes(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           str(SCRIPT), str(tmp_path)]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    info = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [i["world"] for i in info] == [2, 2] and [i["iterations"] for i in info] == [4, 4]
    assert info[0]["saves"] >= 1 and info[1]["saves"] == 0  # the first process alone writes
    assert info[0]["reports"] >= 1 and info[1]["reports"] == 0
    a, b = (safetensors.torch.load_file(str(tmp_path / f"rank{r}.safetensors")) for r in (0, 1))
    assert a.keys() == b.keys() and any(k.startswith("d.") for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    model_dir = tmp_path / "model"
    assert (model_dir / "model.safetensors").is_file() and (model_dir / "preview.png").is_file()
