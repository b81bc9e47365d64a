"""Train stage: backups of a model directory (checkpoint, discriminators, previews), oldest pruned.

A backup is a folder `backups/<UTC time>-<iteration>/` holding copies of the files a training run
writes; the names sort by time, so the oldest are the first in a sorted listing.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from engine.errors import EngineError
from engine.files import disk_full, is_disk_full

BACKUP_FILES = ("model.safetensors", "discriminators.safetensors", "preview.png", "loss.png")


def make_backup(model_dir: Path, iteration: int, keep: int) -> Path:
    """Copy the model's current files into a new backup folder; delete all but the newest `keep`."""
    model_dir = Path(model_dir)
    root = model_dir / "backups"
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    folder = root / f"{stamp}-{iteration:08d}"
    partial = root / f".{folder.name}.partial"
    try:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        for name in BACKUP_FILES:
            if (model_dir / name).is_file():
                shutil.copy2(model_dir / name, partial / name)
        shutil.rmtree(folder, ignore_errors=True)  # two backups in the same second at the same count
        partial.rename(folder)  # a half-copied backup never looks like a whole one
    except OSError as e:
        shutil.rmtree(partial, ignore_errors=True)  # a full disk gets its space back; the model is untouched
        if is_disk_full(e):
            raise disk_full(root, f"the backup {folder.name}") from e
        raise EngineError("io_error", f"could not back up the model to {folder}: {e.strerror or e}") from e
    for old in list_backups(model_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return folder


def list_backups(model_dir: Path) -> list[Path]:
    """The model's backup folders, oldest first."""
    root = Path(model_dir) / "backups"
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
