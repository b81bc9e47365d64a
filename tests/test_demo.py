"""The demo path end to end at tiny settings: clips → Blender timeline → engine → rendered MP4."""

import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def test_demo_end_to_end(tmp_path):
    run = subprocess.run(
        [sys.executable, "tools/demo.py", "--out", str(tmp_path), "--minutes", "0.3", "--clip-seconds", "1.2"],
        cwd=ROOT, capture_output=True, text=True, timeout=480,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    lines = run.stdout.strip().splitlines()
    video = Path(lines[-2])
    assert video.is_file() and video.suffix == ".mp4"
    summary = lines[-1]
    assert re.search(r"\d+ frames, \d+ faces found, \d+ iterations, loss [\d.]+", summary), summary
    assert "quality report" in lines[-3] and "flicker_ratio" in lines[-3], lines[-3]  # Evaluate ran on the shot
    sheet = cv2.imread(str(tmp_path / "quality_summary.png"))
    assert sheet is not None and sheet.shape[1] >= 1200

    import av

    with av.open(str(video)) as c:
        assert c.streams.video and c.streams.audio, "the render lost the destination's audio"
    cap_out, cap_dst = cv2.VideoCapture(str(video)), cv2.VideoCapture(str(tmp_path / "clips" / "astronaut.mp4"))
    n_out, n_dst = int(cap_out.get(cv2.CAP_PROP_FRAME_COUNT)), int(cap_dst.get(cv2.CAP_PROP_FRAME_COUNT))
    assert n_out == n_dst
    ok1, out = cap_out.read()
    ok2, dst = cap_dst.read()
    assert ok1 and ok2 and out.shape == dst.shape
    diff = np.abs(out.astype(int) - dst.astype(int)).mean(axis=2)
    # the face region (centre-top of the astronaut clip) changed; the frame's corners did not
    h, w = diff.shape
    assert diff[int(h * 0.15):int(h * 0.55), int(w * 0.35):int(w * 0.65)].mean() > 4.0
    assert diff[: h // 8, : w // 8].mean() < 3.0 and diff[-h // 8 :, -w // 8 :].mean() < 3.0
