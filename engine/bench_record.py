"""Service layer: the JSON record of a `python -m engine bench` run, that `bench compare` reads back.

A figure alone says little across commits: the machine, its load and the code all move. So a run
is recorded with what it ran on (the commit, whether the tree had changes, the CPU, cores, memory,
Python, torch, GPU), the arguments, every bench's full result and its headline (engine/benchstats.py:
figure, reference measured in the same run, ratio), so that `bench compare OLD NEW`
(engine/bench_tables.py) can set two runs' headlines side by side.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import EngineError
from .files import atomic_write

SCHEMA = 1
RECORDS_DIR = "bench_records"
REPO = Path(__file__).resolve().parents[1]


def git_state(repo: Path = REPO) -> dict[str, Any]:
    """{"commit": full hash, "dirty": tracked files changed} of the code being measured; both None
    when it is not a git checkout (an installed wheel, a copied folder) or git is missing."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=30,
                              check=True).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gb() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):  # not a POSIX system
        return None


def machine_info() -> dict[str, Any]:
    """What the figures were measured on: enough to tell two machines (or one machine's upgrade) apart."""
    info: dict[str, Any] = {"cpu": _cpu_model(), "cores": os.cpu_count(), "memory_gb": _memory_gb(),
                            "python": platform.python_version(), "platform": platform.platform(),
                            "torch": None, "gpu": None}
    try:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def new_record(args: dict[str, Any], created: datetime | None = None) -> dict[str, Any]:
    """An empty record of a run about to start; add_result fills it in bench by bench."""
    created = created or datetime.now(timezone.utc)
    return {"schema": SCHEMA, "created": created.isoformat(timespec="seconds"), **git_state(),
            "machine": machine_info(), "args": args, "results": {}, "headlines": {}}


def add_result(record: dict[str, Any], name: str, result: dict[str, Any]) -> None:
    """One bench's full result (carrying its "headline") into the record."""
    record["results"][name] = result
    record["headlines"][name] = result["headline"]


def default_path(record: dict[str, Any], folder: Path | None = None) -> Path:
    """bench_records/<UTC yyyymmdd-hhmmss>-<short commit>.json under the current folder."""
    created = datetime.fromisoformat(record["created"]).astimezone(timezone.utc)
    short = (record.get("commit") or "nogit")[:10]
    return (folder or Path.cwd() / RECORDS_DIR) / f"{created:%Y%m%d-%H%M%S}-{short}.json"


def _plain(value: Any) -> Any:
    """JSON has no NaN or infinity: they become null (a figure that was not measured)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # a numpy scalar
        return _plain(value.item())
    return value


def write_record(record: dict[str, Any], path: Path) -> Path:
    """Write the record atomically (a run cut short leaves the last whole one), making the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(_plain(record), indent=2, default=str).encode())
    return path


def read_record(path: Path) -> dict[str, Any]:
    """A record written by write_record; a clear error for anything else."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise EngineError("not_found", f"no bench record at {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EngineError("bad_request", f"{path} is not a readable bench record: {exc}") from None
    if not isinstance(record, dict) or not isinstance(record.get("headlines"), dict):
        raise EngineError("bad_request", f"{path} is not a bench record (no headlines): "
                                         "write one with `python -m engine bench --record PATH`")
    if record.get("schema") != SCHEMA:
        raise EngineError("bad_request", f"{path} is a bench record of schema {record.get('schema')!r}; "
                                         f"this engine reads schema {SCHEMA}")
    return record
