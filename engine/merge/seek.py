"""Merge stage: read a video forward from any frame, exactly, for the live preview's frame cache.

Frame numbers are the order frames come out of a sequential decode (engine.media.decode.iter_frames,
which the merge job and Blender's strips follow). OpenCV's own seek guesses a frame number from
timestamps and can land a frame or more off, so it is not used: the reader demuxes the video once
(packets only, no decoding) to learn every frame's presentation timestamp in order and which
packets are keyframes, then seeks (PyAV) to the keyframe at or before the wanted frame and decodes
forward, naming each decoded frame by its timestamp's rank. Pixels are converted the way OpenCV
converts them (BT.601, limited range unless the format is full-range yuvj), so a frame read here is
bit for bit the one iter_frames yields; a video where that does not hold on its first frame, or
whose frame count disagrees, is read with OpenCV from the start instead (slow, but never wrong).
"""

from __future__ import annotations

import bisect
import threading
from pathlib import Path

import cv2
import numpy as np

from ..errors import EngineError
from ..media.decode import VideoInfo


class FrameIndex:
    """Presentation timestamps of every frame of a video's first video stream, in frame order, and
    those of its keyframes; `exact` is False when PyAV cannot name frames as iter_frames does."""

    def __init__(self, info: VideoInfo) -> None:
        self.pts: list[int] = []
        self.keys: list[int] = []
        self.rank: dict[int, int] = {}
        self.exact = False
        try:
            import av

            with av.open(str(info.path)) as container:
                stream = container.streams.video[0]
                pts, keys = [], []
                for packet in container.demux(stream):
                    if packet.size == 0:  # the demuxer's flush packet
                        continue
                    if packet.pts is None:  # no timestamps: frames cannot be named
                        return
                    if packet.is_discard:  # dropped by an edit list: no decoder shows it
                        continue
                    pts.append(packet.pts)
                    if packet.is_keyframe:
                        keys.append(packet.pts)
        except Exception:  # noqa: BLE001 - PyAV missing or the file unreadable by it: OpenCV reads it
            return
        self.pts, self.keys = sorted(pts), sorted(keys)
        self.rank = {p: i for i, p in enumerate(self.pts)}
        self.exact = bool(self.keys) and len(self.rank) == len(self.pts) == info.frames

    def keyframe_before(self, index: int, back: int = 0) -> int:
        """The timestamp of the keyframe at or before frame `index`, `back` keyframes earlier still."""
        k = bisect.bisect_right(self.keys, self.pts[index]) - 1 - back
        return self.keys[max(k, 0)]


def _bgr(frame) -> np.ndarray:
    """A PyAV frame as OpenCV's FFmpeg backend converts it: BT.601 matrix, the format's own range."""
    full = frame.format.name.startswith("yuvj")
    return frame.to_ndarray(format="bgr24", src_colorspace="ITU601", src_color_range="JPEG" if full else "MPEG")


class FrameReader:
    """Reads one video forward from any frame: `open(index)`, then `read()` returns (index, frame)
    for index, index + 1, ... (frame None when `convert` is False: decoded, not converted). Not
    thread-safe: one reader per thread."""

    def __init__(self, info: VideoInfo, index: FrameIndex) -> None:
        self.info, self.index = info, index
        self.next = 0  # the frame read() returns next
        self._container = None
        self._frames = None  # PyAV: the decode generator; OpenCV: a VideoCapture
        self._checked = False

    def open(self, index: int) -> None:
        if not 0 <= index < self.info.frames:
            raise EngineError("bad_request", f"frame {index} is outside {self.info.path.name} ({self.info.frames} frames)")
        if self.index.exact and not self._checked:
            self._check()
        if self.index.exact:
            self._open_av(index)
        else:
            self._open_cv(index)

    def read(self, convert: bool = True) -> tuple[int, np.ndarray | None]:
        if self._frames is None:
            raise EngineError("bad_media", f"could not decode frame {self.next} of {self.info.path.name}")
        if isinstance(self._frames, cv2.VideoCapture):
            ok, frame = self._frames.read() if convert else (self._frames.grab(), None)
            if not ok:
                raise EngineError("bad_media", f"could not decode frame {self.next} of {self.info.path.name}")
            self.next += 1
            return self.next - 1, frame
        for frame in self._frames:
            i = self.index.rank.get(frame.pts)
            if i is None or i < self.next:  # a leading frame of an open GOP, before the wanted one
                continue
            if i != self.next:
                raise EngineError("bad_media", f"frame {self.next} of {self.info.path.name} did not decode")
            self.next += 1
            return i, _bgr(frame) if convert else None
        raise EngineError("bad_media", f"could not decode frame {self.next} of {self.info.path.name}")

    def close(self) -> None:
        if isinstance(self._frames, cv2.VideoCapture):
            self._frames.release()
        self._frames = None
        if self._container is not None:
            self._container.close()
            self._container = None

    # Opening -----------------------------------------------------------------------------------

    def _open_av(self, index: int) -> None:
        import av

        if self._container is None:
            self._container = av.open(str(self.info.path))
            self._container.streams.video[0].thread_type = "AUTO"
        stream = self._container.streams.video[0]
        for back in range(4):  # a keyframe whose GOP reaches back (open GOP): the one before it
            self._container.seek(self.index.keyframe_before(index, back), stream=stream, backward=True)
            self._frames = self._container.decode(stream)
            first = self._skip_to(index)
            if first is not None:
                self.next = index
                self._frames = _chain(first, self._frames)
                return
            if self.index.keyframe_before(index, back) == self.index.keys[0]:
                break
        self._open_cv(index)  # never found it by seeking: read from the start

    def _skip_to(self, index: int):
        """Decode up to frame `index` (not converting what comes before); the PyAV frame, or None
        when the decode started after it."""
        for frame in self._frames:
            i = self.index.rank.get(frame.pts)
            if i is None or i < index:
                continue
            return frame if i == index else None
        return None

    def _open_cv(self, index: int) -> None:
        if isinstance(self._frames, cv2.VideoCapture) and self.next <= index:
            cap = self._frames
        else:
            self.close()
            cap = cv2.VideoCapture(str(self.info.path))
            if not cap.isOpened():
                raise EngineError("not_found", f"cannot open {self.info.path} to read frame {index}")
            self.next = 0
        while self.next < index:  # grabbed: decoded for the references, never converted
            if not cap.grab():
                raise EngineError("bad_media", f"could not decode frame {self.next} of {self.info.path.name}")
            self.next += 1
        self._frames = cap

    def _check(self) -> None:
        """PyAV's first frame must be OpenCV's, pixel for pixel; else this video is read by OpenCV."""
        self._checked = True
        cap = cv2.VideoCapture(str(self.info.path))
        try:
            ok, want = cap.read()
        finally:
            cap.release()
        try:
            self._open_av(0)
            got = self.read()[1] if self._frames is not None else None
        except EngineError:
            got = None
        if not ok or got is None or got.shape != want.shape or not np.array_equal(got, want):
            self.index.exact = False
        self.close()


def _chain(first, rest):
    yield first
    yield from rest


_indexes: dict[tuple[str, int, int], FrameIndex] = {}
_indexes_lock = threading.Lock()


def frame_index(info: VideoInfo) -> FrameIndex:
    """The video's FrameIndex, built once per file version (a demux: ~0.1 s per minute of 1080p)."""
    st = Path(info.path).stat()
    key = (str(info.path), st.st_size, st.st_mtime_ns)
    with _indexes_lock:
        index = _indexes.get(key)
        if index is None:
            index = _indexes[key] = FrameIndex(info)
            while len(_indexes) > 8:
                _indexes.pop(next(iter(_indexes)))
        return index
