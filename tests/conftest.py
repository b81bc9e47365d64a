"""Shared fixtures: tiny clips made from bundled portraits, and the shared real clips when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_FACES = ROOT.parent / "shared" / "data" / "faces"


@pytest.fixture(scope="session")
def portrait_clips(tmp_path_factory) -> dict[str, Path]:
    """One-second clips of the two bundled portraits (the destination one carries audio)."""
    from engine.media.synthetic import make_clip

    d = tmp_path_factory.mktemp("clips")
    return {
        "hopper": make_clip("hopper", d / "hopper.mp4", seconds=1.0, fps=12, size=(320, 240)),
        "astronaut": make_clip("astronaut", d / "astronaut.mp4", seconds=1.0, fps=12, size=(320, 240), audio=True, seed=1),
    }


@pytest.fixture(scope="session")
def shared_clip():
    """Path of a real talking-head clip from ../shared, or a skip with the reason."""
    def get(name: str) -> Path:
        path = SHARED_FACES / "train" / name
        if not path.is_file():
            pytest.skip(f"real test clips are not here ({path}); they live in ../shared/data/faces")
        return path
    return get
