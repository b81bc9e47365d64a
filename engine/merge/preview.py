"""Merge stage: the live preview: one frame of a shot merged with the settings being edited, as a face layer.

A PreviewSession holds what scrubbing needs warm: the shot's ShotMerger (model, faces, masks,
steady placements), a cache of the shot's decoded frames, and the last results. The frame cache is
filled by one sequential decode on a background thread (a sequential decode costs a few ms a
frame; a seek costs a keyframe's worth of decoding), over the shot's range first, starting where
the preview is; a frame the cache has not reached yet is decoded directly (exactly: seek.py).
Short shots keep raw frames, and a preview is then the merge job's frame pixel for pixel; longer
ones keep JPEG q95 (~0.4 MB and ~10 ms to encode at 1080p, decoded again in ~8 ms), which changes
the frame's pixels by about a level: the colour statistics the merge takes from the frame barely
notice, and the layer's pixels are the face's own.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np

from ..errors import EngineError
from ..media.decode import VideoInfo, probe
from ..media.sparse_png import encode_sparse_png
from ..workspace import Workspace
from .seek import FrameReader, frame_index
from .settings import MergeSettings

RAW_BUDGET = 768 << 20  # bytes of raw frames a shot may keep (~120 frames at 1080p); beyond, JPEG
JPEG_BUDGET = 1 << 30  # bytes of JPEG frames a session may keep (~2500 frames at 1080p)
JPEG_QUALITY = 95
RESULTS = 48  # merged layers kept per session: back-and-forth scrubbing over a second or two
DECODED = 24  # JPEG frames kept decoded: a frame and its temporal neighbours (colour smoothing reads ~9 a side)
SEEK_AHEAD = 48  # a direct decode this close ahead of the seeker's position reads on instead of seeking


class FrameCache:
    """The decoded frames of `wanted` (source frame numbers) of one video, filled in the background.

    The fill decodes sequentially, first from where `focus` says the preview is (the shot's range,
    from the frame asked for, then wrapping to the range's start), else over all `wanted`.
    Frames are read with seek.FrameReader: exact frame numbers, from any position."""

    def __init__(self, info: VideoInfo, wanted: list[int], raw: bool | None = None, start: bool = True) -> None:
        """`start` False: the fill waits for the first `focus` (a preview knows its shot's range then)."""
        self.info = info
        self.wanted = sorted(set(wanted))
        frame_bytes = info.width * info.height * 3
        self.raw = len(self.wanted) * frame_bytes <= RAW_BUDGET if raw is None else raw
        self._store: dict[int, np.ndarray | bytes] = {}
        self._decoded: OrderedDict[int, np.ndarray] = OrderedDict()  # JPEG mode: the recently used, decoded
        self._bytes = 0
        self._lock = threading.Lock()
        self._seek_lock = threading.Lock()  # one direct decode at a time, on one kept reader
        self._seeker: FrameReader | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()  # a new fill plan
        self._plan: list[tuple[int, int]] = [(self.wanted[0], self.wanted[-1] + 1)] if self.wanted else []
        self._plan_range: tuple[int, int] | None = None
        self._plan_version = 0
        self._filling = -1  # the frame the fill reads next (-1: idle)
        self.filled = threading.Event()  # set when the fill has done its plan (or given up)
        self.error: EngineError | None = None
        self._thread = threading.Thread(target=self._fill, name="swapline-preview-frames", daemon=True)
        if not self.wanted:
            self.filled.set()
        elif start:
            self._thread.start()

    def __len__(self) -> int:
        with self._lock:
            return len(self._store)

    def focus(self, frame: int, lo: int, hi: int, margin: int = 0) -> None:
        """Fill [lo, hi) first: from `margin` frames before `frame` to hi, then from lo. A frame the
        fill is about to reach, or a range already planned, leaves the fill as it is."""
        start = max(lo, frame - margin)
        with self._lock:
            if self._plan_range == (lo, hi):
                if frame in self._store or (lo <= self._filling <= frame < self._filling + SEEK_AHEAD):
                    return
                if self.filled.is_set() and not self._room_locked():
                    return  # the budget is spent: direct decodes serve the rest
            self._plan = [(start, hi), (lo, start)]
            self._plan_range = (lo, hi)
            self._plan_version += 1
            self.filled.clear()
            if self._thread.ident is None and self.wanted and not self._stop.is_set():
                self._thread.start()
        self._wake.set()

    def _fill(self) -> None:
        reader = FrameReader(self.info, frame_index(self.info))
        wanted = self.wanted
        try:
            while not self._stop.is_set():
                with self._lock:
                    plan, version = list(self._plan), self._plan_version
                    self._wake.clear()
                for a, b in plan:
                    targets = [i for i in wanted[bisect.bisect_left(wanted, a):bisect.bisect_left(wanted, b)]
                               if i not in self._store]
                    if targets and not self._read_span(reader, targets, version):
                        break
                with self._lock:
                    done = version == self._plan_version
                    self._filling = -1
                if done:
                    self.filled.set()
                    self._wake.wait()
        except EngineError as exc:  # the file went away or broke: direct decodes will say so
            self.error = exc
        finally:
            reader.close()
            self.filled.set()

    def _read_span(self, reader: FrameReader, targets: list[int], version: int) -> bool:
        """Decode forward from targets[0] to targets[-1], keeping the targets; False when stopped,
        out of room or given a new plan."""
        wanted = set(targets)
        if reader.next != targets[0] or reader._frames is None:
            reader.open(targets[0])
        while reader.next <= targets[-1]:
            if self._stop.is_set() or self._plan_version != version or not self._room():
                return False
            with self._lock:
                self._filling = reader.next
            keep = reader.next in wanted and reader.next not in self._store
            index, frame = reader.read(convert=keep)
            if keep:
                self._put(index, frame)
        return True

    def _room(self) -> bool:
        with self._lock:
            return self._room_locked()

    def _room_locked(self) -> bool:
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
                self._seeker = FrameReader(self.info, frame_index(self.info))
            reader = self._seeker
            if reader._frames is None or not 0 <= index - reader.next <= SEEK_AHEAD:
                reader.open(index)  # exact: a keyframe before it, then decoded forward
            while reader.next < index:
                reader.read(convert=False)
            got, frame = reader.read()
        if got != index or frame is None:
            raise EngineError("bad_media", f"could not decode frame {index} of {self.info.path.name}")
        return frame

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        with self._seek_lock:
            if self._seeker is not None:
                self._seeker.close()
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
    """One shot (model, video, faceset) kept warm for previews; `render` is thread-safe.

    A preview is the merge job's frame: temporal smoothing reads the job's whole window inside the
    shot's range (the neighbours it lacks are prepared, decoded when the cache does not hold them),
    so the pixels do not depend on what was scrubbed before. Sequential scrubbing stays cheap:
    predictions are cached by placement and each frame's colour mean by the settings it depends on
    (ShotMerger.prepare_digest), so the next frame costs about one new neighbour."""

    def __init__(self, ws: Workspace, model: str, video: str, faceset: str, device: str = "auto") -> None:
        from .frame import ShotMerger  # the model (and torch) load with the first session

        self.key = (model, str(video), faceset)
        self.stamp: tuple = ()  # the opener's note of the model's and faceset's state (the service reopens stale ones)
        self.info = probe(Path(video))  # not_found / bad_media before anything loads
        if ws.facesets.find(faceset) is None:
            raise EngineError("not_found", f"no faceset named {faceset!r}")
        self._cache: FrameCache | None = None
        self.merger = ShotMerger(ws, model, str(self.info.path), faceset, device=device, frame_at=self._frame)
        self.faces = set(self.merger.frames_with_faces())
        self.frames = FrameCache(self.info, sorted(self.faces), start=False)  # the first render says where
        self._cache = self.frames
        self._results: OrderedDict[tuple, dict] = OrderedDict()
        self._lock = threading.Lock()

    def _frame(self, index: int) -> np.ndarray | None:
        """A neighbour for temporal smoothing: from the cache, decoded when it is not there."""
        cache = self._cache
        return cache.frame(index) if cache is not None else None

    def render(self, frame: int, settings: dict | MergeSettings | None = None,
               frame_range: tuple[int, int] | list[int] | None = None) -> dict:
        """{"frame", "layer": PNG bytes of the face layer at the frame's size (RGBA, transparent
        outside the face), "matte": PNG bytes of its coverage (grey, the layer's alpha), "box":
        [x0, y0, x1, y1] of the faces (empty: all zero), "ms", "cached"}. `frame_range` [start, end)
        is the source frames the shot shows (the merge job's range): temporal smoothing stays
        inside it and the frame cache fills it first; None is the whole video."""
        t0 = time.perf_counter()
        s = settings if isinstance(settings, MergeSettings) else parse_settings(settings)
        if not isinstance(frame, int) or isinstance(frame, bool) or not 0 <= frame < self.info.frames:
            raise EngineError("bad_request", f"frame must be a frame number of {self.info.path.name} "
                                             f"(0..{self.info.frames - 1}), not {frame!r}")
        lo, hi = self._range(frame, frame_range)
        key = (frame, s.digest(), lo, hi)
        with self._lock:
            if self.merger is None:  # closed for another shot between the service's lookup and now
                raise EngineError("busy", "this preview session was closed for another shot; ask again")
            hit = self._results.get(key)
            if hit is not None:
                self._results.move_to_end(key)
                return {**hit, "ms": (time.perf_counter() - t0) * 1000, "cached": True}
            self.frames.focus(frame, lo, hi, self.merger.window(s))
            box, layer, matte = self._layer(frame, s, (lo, hi))
            result = {"frame": frame, "layer": layer, "matte": matte, "box": list(box)}
            self._results[key] = result
            while len(self._results) > RESULTS:
                self._results.popitem(last=False)
        return {**result, "ms": (time.perf_counter() - t0) * 1000, "cached": False}

    def _range(self, frame: int, frame_range) -> tuple[int, int]:
        if frame_range is None:
            return 0, self.info.frames
        ok = (isinstance(frame_range, (list, tuple)) and len(frame_range) == 2
              and all(isinstance(v, int) and not isinstance(v, bool) for v in frame_range))
        if not ok:
            raise EngineError("bad_request", f"range must be [start, end) source frame numbers, not {frame_range!r}")
        lo, hi = max(0, frame_range[0]), min(self.info.frames, frame_range[1])
        if not lo <= frame < hi:
            raise EngineError("bad_request", f"frame {frame} is outside the range [{frame_range[0]}, "
                                             f"{frame_range[1]}) of {self.info.path.name}")
        return lo, hi

    def _layer(self, frame: int, s: MergeSettings, bounds: tuple[int, int]) -> tuple[tuple[int, int, int, int], bytes, bytes]:
        from .compose import layer_canvas

        h, w = self.info.height, self.info.width
        patches = []
        if frame in self.faces:  # else nothing to merge: a transparent layer, no decode, no model
            (patches,) = self.merger.merge_frames([(frame, self.frames.frame(frame))], s, bounds=bounds)
        if not patches:
            box, roi = (0, 0, 0, 0), np.zeros((0, 0, 4), np.uint8)
        else:
            box, roi = layer_canvas(patches, h, w)
            box = tuple(int(v) for v in box)
        return box, encode_sparse_png(h, w, box, roi), encode_sparse_png(h, w, box, np.ascontiguousarray(roi[..., 3]))

    def close(self) -> None:
        with self._lock:  # a render in flight finishes first
            merger, self.merger = self.merger, None
            self._results.clear()
        self.frames.close()
        self._cache = None
        close = getattr(merger, "close", None)
        if close is not None:
            close()
