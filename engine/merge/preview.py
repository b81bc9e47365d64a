"""Merge stage: the live preview: one frame of a shot merged with the settings being edited, as a face layer.

A PreviewSession holds what scrubbing needs warm: the shot's ShotMerger (model, faces, masks,
steady placements), a cache of the shot's decoded frames, and the last results. The frame cache is
filled by one sequential decode on a background thread (a sequential decode costs a few ms a
frame; a seek costs a keyframe's worth of decoding), so after a moment every frame with a face is
at hand; a frame the cache has not reached yet is decoded directly. Short shots keep raw frames;
longer ones keep JPEG q95 (~0.4 MB and ~10 ms to encode at 1080p, decoded again in ~8 ms), which
changes the frame's pixels by about a level: the colour statistics the merge takes from the frame
do not notice, and the layer's pixels are the face's own.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np

from ..errors import EngineError
from ..media.decode import VideoInfo, iter_frames, probe
from ..media.sparse_png import encode_sparse_png
from ..workspace import Workspace
from .settings import MergeSettings

RAW_BUDGET = 768 << 20  # bytes of raw frames a shot may keep (~120 frames at 1080p); beyond, JPEG
JPEG_BUDGET = 1 << 30  # bytes of JPEG frames a session may keep (~2500 frames at 1080p)
JPEG_QUALITY = 95
RESULTS = 48  # merged layers kept per session: back-and-forth scrubbing over a second or two
DECODED = 24  # JPEG frames kept decoded: a frame and its temporal neighbours (colour smoothing reads ~9 a side)
SEEK_AHEAD = 48  # a direct decode this close ahead of the seeker's position reads on instead of seeking


class FrameCache:
    """The decoded frames of `wanted` (source frame numbers) of one video, filled in the background."""

    def __init__(self, info: VideoInfo, wanted: list[int], raw: bool | None = None) -> None:
        self.info = info
        self.wanted = sorted(set(wanted))
        frame_bytes = info.width * info.height * 3
        self.raw = len(self.wanted) * frame_bytes <= RAW_BUDGET if raw is None else raw
        self._store: dict[int, np.ndarray | bytes] = {}
        self._decoded: OrderedDict[int, np.ndarray] = OrderedDict()  # JPEG mode: the recently used, decoded
        self._bytes = 0
        self._lock = threading.Lock()
        self._seek_lock = threading.Lock()  # one direct decode at a time, on one kept capture
        self._seeker: cv2.VideoCapture | None = None
        self._seeker_next = 0  # the frame the kept capture reads next
        self._stop = threading.Event()
        self.filled = threading.Event()  # set when the background decode has finished (or given up)
        self.error: EngineError | None = None
        self._thread = threading.Thread(target=self._fill, name="swapline-preview-frames", daemon=True)
        if self.wanted:
            self._thread.start()
        else:
            self.filled.set()

    def __len__(self) -> int:
        with self._lock:
            return len(self._store)

    def _fill(self) -> None:
        wanted = set(self.wanted)
        try:
            for index, frame in iter_frames(self.info.path, self.wanted[0], self.wanted[-1] + 1):
                if self._stop.is_set() or not self._room():
                    return
                if index in wanted:
                    self._put(index, frame)
        except EngineError as exc:  # the file went away or broke: direct decodes will say so
            self.error = exc
        finally:
            self.filled.set()

    def _room(self) -> bool:
        with self._lock:
            return self._bytes < (RAW_BUDGET if self.raw else JPEG_BUDGET)

    def _put(self, index: int, frame: np.ndarray) -> None:
        if self.raw:
            frame.flags.writeable = False  # shared by every render: drawing on it must fail, not stick
            item: np.ndarray | bytes = frame
            size = frame.nbytes
        else:
            ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if not ok:
                return  # not kept: a later request decodes it directly
            item, size = buf.tobytes(), buf.nbytes
        with self._lock:
            if index not in self._store:
                self._store[index] = item
                self._bytes += size

    def cached(self, index: int) -> np.ndarray | None:
        """The frame if the cache holds it, else None (the temporal neighbours' lookup: never decodes)."""
        with self._lock:
            item = self._store.get(index)
            if item is None or isinstance(item, np.ndarray):
                return item
            frame = self._decoded.get(index)
            if frame is not None:
                self._decoded.move_to_end(index)
                return frame
        frame = cv2.imdecode(np.frombuffer(item, np.uint8), cv2.IMREAD_COLOR)
        frame.flags.writeable = False
        with self._lock:
            self._decoded[index] = frame
            while len(self._decoded) > DECODED:
                self._decoded.popitem(last=False)
        return frame

    def frame(self, index: int) -> np.ndarray:
        """The frame, from the cache or decoded now (and kept when there is room)."""
        frame = self.cached(index)
        if frame is not None:
            return frame
        if not 0 <= index < self.info.frames:
            raise EngineError("bad_request",
                              f"frame {index} is outside {self.info.path.name} ({self.info.frames} frames)")
        frame = self._decode(index)
        if self._room():
            self._put(index, frame)
        return frame

    def _decode(self, index: int) -> np.ndarray:
        with self._seek_lock:
            if self._seeker is None:
                self._seeker = cv2.VideoCapture(str(self.info.path))
                self._seeker_next = 0
                if not self._seeker.isOpened():
                    self._seeker = None
                    raise EngineError("not_found", f"cannot open {self.info.path} to read frame {index}")
            cap = self._seeker
            if not 0 <= index - self._seeker_next <= SEEK_AHEAD:
                cap.set(cv2.CAP_PROP_POS_FRAMES, index)
                self._seeker_next = index
            while self._seeker_next < index:
                cap.grab()
                self._seeker_next += 1
            ok, frame = cap.read()
            self._seeker_next = index + 1
        if not ok:
            raise EngineError("bad_media", f"could not decode frame {index} of {self.info.path.name}")
        return frame

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        with self._seek_lock:
            if self._seeker is not None:
                self._seeker.release()
                self._seeker = None
        with self._lock:
            self._store.clear()
            self._decoded.clear()
            self._bytes = 0


def parse_settings(settings: dict | None) -> MergeSettings:
    if settings is None:
        return MergeSettings()
    if not isinstance(settings, dict):
        raise EngineError("bad_request", "'settings' must be a map of merge settings")
    try:
        return MergeSettings.from_dict(settings)
    except ValueError as exc:
        raise EngineError("bad_request", str(exc)) from None


class PreviewSession:
    """One shot (model, video, faceset) kept warm for previews; `render` is thread-safe."""

    def __init__(self, ws: Workspace, model: str, video: str, faceset: str, device: str = "auto") -> None:
        from .frame import ShotMerger  # the model (and torch) load with the first session

        self.key = (model, str(video), faceset)
        self.stamp: tuple = ()  # the opener's note of the model files' state (the service reopens stale ones)
        self.info = probe(Path(video))  # not_found / bad_media before anything loads
        if ws.facesets.find(faceset) is None:
            raise EngineError("not_found", f"no faceset named {faceset!r}")
        self._cache: FrameCache | None = None
        self.merger = ShotMerger(ws, model, str(self.info.path), faceset, device=device, frame_at=self._cached_frame)
        self.faces = set(self.merger.frames_with_faces())
        self.frames = FrameCache(self.info, sorted(self.faces))
        self._cache = self.frames
        self._results: OrderedDict[tuple[int, str], dict] = OrderedDict()
        self._lock = threading.Lock()

    def _cached_frame(self, index: int) -> np.ndarray | None:
        return self._cache.cached(index) if self._cache is not None else None

    def render(self, frame: int, settings: dict | MergeSettings | None = None) -> dict:
        """{"frame", "layer": PNG bytes of the face layer at the frame's size (RGBA, transparent
        outside the face), "box": [x0, y0, x1, y1] of the faces (empty: all zero), "ms", "cached"}."""
        t0 = time.perf_counter()
        s = settings if isinstance(settings, MergeSettings) else parse_settings(settings)
        if not isinstance(frame, int) or isinstance(frame, bool) or not 0 <= frame < self.info.frames:
            raise EngineError("bad_request", f"frame must be a frame number of {self.info.path.name} "
                                             f"(0..{self.info.frames - 1}), not {frame!r}")
        key = (frame, s.digest())
        with self._lock:
            if self.merger is None:  # closed for another shot between the service's lookup and now
                raise EngineError("busy", "this preview session was closed for another shot; ask again")
            hit = self._results.get(key)
            if hit is not None:
                self._results.move_to_end(key)
                return {**hit, "ms": (time.perf_counter() - t0) * 1000, "cached": True}
            box, png = self._layer(frame, s)
            result = {"frame": frame, "layer": png, "box": list(box)}
            self._results[key] = result
            while len(self._results) > RESULTS:
                self._results.popitem(last=False)
        return {**result, "ms": (time.perf_counter() - t0) * 1000, "cached": False}

    def _layer(self, frame: int, s: MergeSettings) -> tuple[tuple[int, int, int, int], bytes]:
        from .compose import layer_canvas

        h, w = self.info.height, self.info.width
        if frame not in self.faces:  # nothing to merge: a transparent layer, no decode, no model
            return (0, 0, 0, 0), encode_sparse_png(h, w, (0, 0, 0, 0), np.zeros((0, 0, 4), np.uint8))
        (patches,) = self.merger.merge_frames([(frame, self.frames.frame(frame))], s)
        if not patches:
            return (0, 0, 0, 0), encode_sparse_png(h, w, (0, 0, 0, 0), np.zeros((0, 0, 4), np.uint8))
        box, roi = layer_canvas(patches, h, w)
        box = tuple(int(v) for v in box)
        return box, encode_sparse_png(h, w, box, roi)

    def close(self) -> None:
        with self._lock:  # a render in flight finishes first
            merger, self.merger = self.merger, None
            self._results.clear()
        self.frames.close()
        self._cache = None
        close = getattr(merger, "close", None)
        if close is not None:
            close()
