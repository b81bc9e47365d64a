"""Shared piece: write frames (PNG, atomically) and videos with audio (PyAV's bundled FFmpeg)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np

from ..errors import EngineError
from ..files import atomic_write


def write_image(path: Path, image: np.ndarray, sync_folder: bool = True) -> None:
    """Encode by extension (.png, .jpg) and write atomically (see `atomic_write` for `sync_folder`)."""
    ext = Path(path).suffix.lower()
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if ext in (".jpg", ".jpeg") else [cv2.IMWRITE_PNG_COMPRESSION, 1]
    ok, buf = cv2.imencode(ext, image, params)
    if not ok:
        raise EngineError("io_error", f"could not encode {path}")
    atomic_write(path, buf.tobytes(), sync_folder)


def write_video(
    path: Path, frames: Iterable[np.ndarray], fps: float, audio: np.ndarray | None = None, sample_rate: int = 48000
) -> Path:
    """Encode BGR frames as H.264 (yuv420p) in an MP4, with optional mono float audio as AAC."""
    import av  # only the demo and exports need it

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(tmp), "w") as container:
        vstream = None
        astream = container.add_stream("aac", rate=sample_rate, layout="mono") if audio is not None else None
        for frame in frames:
            if vstream is None:
                vstream = container.add_stream("libx264", rate=rate)
                vstream.height, vstream.width = frame.shape[0] // 2 * 2, frame.shape[1] // 2 * 2
                vstream.pix_fmt = "yuv420p"
                vstream.options = {"crf": "18", "preset": "veryfast"}
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[: vstream.height, : vstream.width]), format="bgr24")
            container.mux(vstream.encode(vf))
        if vstream is None:
            raise EngineError("bad_request", "no frames to encode")
        container.mux(vstream.encode())
        if astream is not None:
            samples = np.asarray(audio, np.float32).reshape(1, -1)
            step = 1024
            for i in range(0, samples.shape[1], step):
                af = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, i : i + step]), format="fltp", layout="mono")
                af.sample_rate = sample_rate
                af.pts = i
                container.mux(astream.encode(af))
            container.mux(astream.encode())
    tmp.replace(path)
    return path
