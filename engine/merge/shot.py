"""Merge stage: the merge job, from a trained model and a destination video to a face layer, a matte,
merged frames and/or a merged video.

Outputs (any of them, in `<out>/`): layer/frame_%06d.png (RGBA, full frame size, the swapped face
with its alpha and transparent elsewhere: laid over the untouched original in Blender),
matte/frame_%06d.png (grey, that alpha), frames/frame_%06d.png (full merged frames) and merged.mp4
(H.264, the source's audio copied). Frame numbers are the source's. merge.json records the settings'
digest, the model and video it came from and the frames done: a re-run into the same folder with the
same settings skips the frames already written and prepares only the frames whose colour the missing
ones are smoothed with (their temporal window); the rest are skipped in the decoder.

The live preview writes into the same layer/ and matte/ folders; the add-on lists the frames it
overwrote in previewed.json, and the next run takes them out of merge.json's done set first.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from ..config import check_types, from_dict
from ..errors import Cancelled, EngineError
from ..files import atomic_write, disk_full, is_disk_full, remove_stale_temps, sync_folder_of
from ..media.decode import frame_range, iter_frames_at
from ..media.encode import write_image
from ..media.sparse_png import encode_sparse_png
from ..models.checkpoint import checkpoint_path
from ..workspace import Workspace
from .compose import apply_patches, layer_canvas
from .frame import ShotMerger
from .settings import MergeSettings

OUTPUTS = ("layer", "matte", "frames", "video")
SEQUENCES = ("layer", "matte", "frames")  # one PNG per frame each
PATTERN = "frame_%06d.png"
VIDEO = "merged.mp4"
MP4_AUDIO = {"aac", "mp3", "alac", "ac3", "eac3", "opus", "flac"}  # audio codecs copied as they are
STATE = "merge.json"
PREVIEWED = "previewed.json"  # {"frames": [source frame numbers]}: written by the add-on's live preview


@dataclass(frozen=True)
class MergeParams:
    model: str
    video: str
    faceset: str
    frame_start: int = 0
    frame_end: int | None = None  # exclusive; None = to the end
    output: str | None = None  # folder; None = the workspace's renders/<job id>
    outputs: tuple = ("layer", "matte")
    settings: dict = field(default_factory=dict)  # MergeSettings as a map (keys for animated values)
    batch_size: int = 8  # faces per model run

    def __post_init__(self) -> None:
        check_types(self, "merge option")
        if not isinstance(self.outputs, (list, tuple)) or not self.outputs or \
                not all(o in OUTPUTS for o in self.outputs) or len(set(self.outputs)) != len(self.outputs):
            raise ValueError(f"merge option 'outputs' must be a list of distinct {', '.join(OUTPUTS)}, "
                             f"got {self.outputs!r}")
        object.__setattr__(self, "outputs", tuple(self.outputs))
        if not isinstance(self.settings, dict):
            raise ValueError("merge option 'settings' must be a map of merge settings")
        if self.batch_size < 1:
            raise ValueError("merge option 'batch_size' must be at least 1")
        self.merge_settings()  # a bad setting is refused before anything is loaded

    @classmethod
    def from_dict(cls, d: dict) -> "MergeParams":
        return from_dict(cls, d, "merge option")

    def merge_settings(self) -> MergeSettings:
        return MergeSettings.from_dict(self.settings)


def merge_shot(ws: Workspace, params: MergeParams, out_dir: Path, report, should_stop) -> dict:
    """Merge every frame of [frame_start, frame_end) into the asked outputs (frames without a face:
    an empty layer and matte, the frame as it is)."""
    s = params.merge_settings()
    merger = ShotMerger(ws, params.model, params.video, params.faceset)
    info = merger.info
    start, end = frame_range(info, params.frame_start, params.frame_end)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = params.outputs
    digest = s.digest()
    radius = merger.window(s)
    model_stamp, video_stamp = _stamp(ws, params.model), _video_stamp(info.path)
    _forget_previewed(out_dir)
    done = _done_frames(out_dir, params, digest, model_stamp, str(info.path), video_stamp, start, end, radius)
    todo = [i for i in range(start, end) if i not in done]
    if "video" in outputs and todo:  # the video is encoded in one go: every frame goes into it again
        done, todo = set(), list(range(start, end))
    swapped = sum(1 for i in range(start, end) if i in merger.by_frame)
    result = {
        "directory": str(out_dir), "first_frame": start, "count": end - start, "swapped": swapped,
        **{name: ({"directory": str(out_dir / name), "pattern": PATTERN} if name in outputs else None)
           for name in SEQUENCES},
        "video": str(out_dir / VIDEO) if "video" in outputs else None, "settings": digest,
    }
    state = {"settings": digest, "values": s.to_dict(), "model": params.model, "model_stamp": model_stamp,
             "video": str(info.path), "video_stamp": video_stamp,
             "faceset": params.faceset, "outputs": list(outputs), "first_frame": start, "end": end,
             "done": sorted(done), "complete": not todo}
    if not todo:
        report(1.0, f"all {end - start} frames were merged already", {"frames": end - start, "swapped": swapped})
        _write_state(out_dir, state)
        return {**result, "merged": 0, "seconds": 0.0}
    for name in SEQUENCES:
        if name in outputs:
            (out_dir / name).mkdir(exist_ok=True)
            remove_stale_temps(out_dir / name)  # what a killed run was writing: never listed, never read
    # the missing frames and the frames their colour is smoothed with; the others are never prepared
    needed = _windows(todo, radius, start, end)
    per_frame = max(1, max((len(v) for v in merger.by_frame.values()), default=1))
    merger.set_capacity((2 * radius + 4 * params.batch_size + 2) * per_frame)

    writer = ThreadPoolExecutor(max_workers=2, thread_name_prefix="swapline-merge-png")
    video = _VideoOut(out_dir / VIDEO, info, start, end) if "video" in outputs else None
    pending: deque[tuple[int, list[Future]]] = deque()  # frames being written, in order
    started, last_state, written = time.monotonic(), 0.0, 0
    total = len(todo)

    def settle(block: bool) -> None:
        """Frames whose files are all written count as done (an I/O error surfaces here)."""
        nonlocal written
        while pending and (block or len(pending) > 3 * params.batch_size or all(f.done() for f in pending[0][1])):
            index, futures = pending.popleft()
            for future in futures:
                future.result()
            done.add(index)
            written += 1

    def emit(items: list[tuple[int, np.ndarray]]) -> None:
        items = [(i, fr) for i, fr in items if i not in done]  # window-only frames feed the smoothing
        if not items:
            return
        # smoothing reads the range's frames only: what _done_frames' range-edge rule relies on
        for (index, frame), patches in zip(items, merger.merge_frames(items, s, (start, end))):
            futures = []
            if "layer" in outputs or "matte" in outputs:
                box, roi = layer_canvas(patches, info.height, info.width) if patches else _EMPTY
                if "layer" in outputs:
                    futures.append(writer.submit(_write_png, out_dir / "layer" / (PATTERN % index), info, box, roi))
                if "matte" in outputs:
                    futures.append(writer.submit(_write_png, out_dir / "matte" / (PATTERN % index), info, box,
                                                 roi[..., 3]))
            if "frames" in outputs or video is not None:
                merged = apply_patches(frame, patches) if patches else frame
                if "frames" in outputs:
                    futures.append(writer.submit(write_image, out_dir / "frames" / (PATTERN % index), merged, False))
                if video is not None:
                    video.add(merged)
            pending.append((index, futures))
        settle(False)

    frames = _Decoded(info.path, needed)
    # the next batch is prepared (model, masks, colour) on its own thread while this one finishes
    # and its files are written: the model runs on one core, so the other is free for the rest
    preparer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="swapline-merge-prepare")
    try:
        ahead: list[tuple[int, np.ndarray]] = []  # decoded, not yet prepared
        inflight: deque[tuple[Future, list]] = deque()  # being prepared
        waiting: deque[tuple[int, np.ndarray]] = deque()  # prepared, waiting for their smoothing window
        prepared_until = needed[0] - 1

        def collect(block: bool) -> None:
            nonlocal prepared_until
            while inflight and (block or len(inflight) > 1 or inflight[0][0].done()):
                future, items = inflight.popleft()
                future.result()
                waiting.extend(items)
                prepared_until = items[-1][0]

        def ready() -> list[tuple[int, np.ndarray]]:
            # a frame's window lies in `needed` (or past the range's end), which comes in order:
            # once a later frame is prepared, every neighbour it is smoothed with is
            out = []
            while waiting and waiting[0][0] + radius <= prepared_until:
                out.append(waiting.popleft())
            return out

        for index, frame in frames:
            if should_stop():
                raise Cancelled()
            ahead.append((index, frame))
            if len(ahead) >= params.batch_size:
                inflight.append((preparer.submit(merger.prepare, ahead, s), ahead))
                ahead = []
                collect(False)
                emit(ready())
                now = time.monotonic()
                report(written / total, f"frame {written}/{total}",
                       {"frames": written, "fps": written / max(now - started, 1e-6)})
                if now - last_state > 2.0:
                    _sync_sequences(out_dir, outputs, start)  # the frames it lists outlive a power cut
                    _write_state(out_dir, {**state, "done": sorted(done)})
                    last_state = now
        if ahead:
            inflight.append((preparer.submit(merger.prepare, ahead, s), ahead))
        collect(True)
        emit(list(waiting))
        if video is not None:
            video.close()
        settle(True)
    finally:
        frames.close()
        preparer.shutdown(wait=True)
        writer.shutdown(wait=True)
        # after a cancel or an error: the frames whose files did get written count as done too
        done.update(i for i, futures in pending if all(f.exception() is None for f in futures))
        if video is not None:
            video.abort()  # nothing when it was closed: a half video is never left as merged.mp4
        if written:
            _sync_sequences(out_dir, outputs, start)
        _write_state(out_dir, {**state, "done": sorted(done), "complete": len(done) >= end - start})
    ws.record_render(out_dir.name, params.model, merger.media_id, out_dir, start, end - start)
    elapsed = time.monotonic() - started
    report(1.0, f"merged {written} frames", {"frames": written, "fps": written / max(elapsed, 1e-6)})
    return {**result, "merged": written, "seconds": elapsed}


_EMPTY = ((0, 0, 0, 0), np.zeros((0, 0, 4), np.uint8))


def _sync_sequences(out_dir: Path, outputs: tuple, start: int) -> None:
    for name in SEQUENCES:
        if name in outputs:
            sync_folder_of(out_dir / name / (PATTERN % start))  # one folder fsync per sequence


def _write_png(path: Path, info, box, roi: np.ndarray) -> None:
    atomic_write(path, encode_sparse_png(info.height, info.width, box, roi), sync_folder=False)


def _stamp(ws: Workspace, model: str) -> list:
    """The model's checkpoint file as it is now (size, mtime): a model trained on since the last run
    makes other faces, so nothing that run wrote is reused."""
    st = checkpoint_path(ws.model_dir(model)).stat()
    return [st.st_size, st.st_mtime_ns]


def _video_stamp(path: Path) -> list:
    """The destination file as it is now (size, mtime): a re-encoded or replaced clip of the same
    name has other pixels, so nothing merged from the old one is reused."""
    st = Path(path).stat()
    return [st.st_size, st.st_mtime_ns]


def _windows(todo: list[int], radius: int, start: int, end: int) -> list[int]:
    """The frames of [start, end) within `radius` of a frame of `todo` (sorted, each once)."""
    frames: list[int] = []
    for t in todo:
        lo = max(start, t - radius, frames[-1] + 1 if frames else start)
        frames.extend(range(lo, min(end, t + radius + 1)))
    return frames


def _forget_previewed(out_dir: Path) -> None:
    """The frames the live preview overwrote (previewed.json, kept by the add-on) hold the preview's
    settings, not merge.json's: they leave its done set, so this run merges them again. merge.json is
    rewritten before previewed.json goes: a run stopped in between takes the same frames out again."""
    path = out_dir / PREVIEWED
    try:
        frames = {int(f) for f in json.loads(path.read_text())["frames"]}
    except FileNotFoundError:
        return
    except (OSError, ValueError, TypeError, KeyError):  # unreadable: any frame may have been overwritten
        frames = None
    try:
        state = json.loads((out_dir / STATE).read_text())
    except (OSError, ValueError):
        state = None
    if isinstance(state, dict) and isinstance(state.get("done"), list):
        state["done"] = [] if frames is None else [i for i in state["done"] if i not in frames]
        state["complete"] = False
        _write_state(out_dir, state)
    path.unlink(missing_ok=True)


def _done_frames(out_dir: Path, params: MergeParams, digest: str, model_stamp: list, video: str,
                 video_stamp: list, start: int, end: int, radius: int) -> set[int]:
    """Frames a previous run into this folder recorded as done, with the same settings, model,
    faceset and video file, whose files are all there (files are written atomically: one that
    exists is whole; one merge.json does not list, such as the add-on's blank filler, is not
    trusted). A frame done in another range counts when its smoothing window met the same range
    edges (colour is smoothed over the range's frames only). The video is made in one go, so a run
    that asks for it redoes every frame unless the earlier run finished it."""
    try:
        state = json.loads((out_dir / STATE).read_text())
    except (OSError, ValueError):
        return set()
    if not isinstance(state, dict):
        return set()
    if state.get("settings") != digest or state.get("model") != params.model or \
            state.get("model_stamp") != model_stamp or state.get("faceset") != params.faceset or \
            state.get("video") != video or state.get("video_stamp") != video_stamp:
        return set()
    if "video" in params.outputs and not (state.get("complete") and (out_dir / VIDEO).is_file()
                                          and "video" in state.get("outputs", [])):
        return set()
    old_start, old_end, listed = state.get("first_frame"), state.get("end"), state.get("done")
    if not isinstance(old_start, int) or not isinstance(old_end, int) or not isinstance(listed, list):
        return set()

    def same_window(i: int) -> bool:
        return max(old_start, i - radius) == max(start, i - radius) and \
            min(old_end, i + radius + 1) == min(end, i + radius + 1)

    names = [n for n in SEQUENCES if n in params.outputs]
    return {i for i in listed if isinstance(i, int) and start <= i < end and old_start <= i < old_end
            and same_window(i) and all((out_dir / n / (PATTERN % i)).is_file() for n in names)}


def _write_state(out_dir: Path, state: dict) -> None:
    atomic_write(out_dir / STATE, json.dumps(state, indent=1).encode())


class _Decoded:
    """The given frames (iter_frames_at: those between are grabbed, not converted) on their own
    thread, a few frames ahead: decoding overlaps the merge (OpenCV's decoder lets go of the GIL)."""

    def __init__(self, path: Path, frames: list[int], depth: int = 6) -> None:
        self._queue: queue.Queue = queue.Queue(depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(path, frames), daemon=True,
                                        name="swapline-merge-decode")
        self._thread.start()

    def _run(self, path: Path, frames: list[int]) -> None:
        try:
            for item in iter_frames_at(path, frames):
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
            self._put(None)
        except BaseException as exc:  # handed to the merging thread
            self._put(exc)

    def _put(self, item) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class _VideoOut:
    """Merged frames as H.264 (yuv420p) in an MP4, with the source's audio of the same frames copied
    packet for packet (AAC and the other codecs MP4 holds; anything else is encoded to AAC),
    interleaved by time. Written to a temp file, renamed on close."""

    def __init__(self, path: Path, info, start: int, end: int) -> None:
        import av  # only the video output needs it

        self.path, self.tmp = path, path.with_name(f".{path.stem}.tmp{path.suffix}")
        self.rate = Fraction(info.fps or 25.0).limit_denominator(1001)
        self.frames, self.closed = 0, False
        self.audio: deque = deque()
        self.audio_stream = None
        self.container = av.open(str(self.tmp), "w")
        try:
            self.stream = self.container.add_stream("libx264", rate=self.rate)
            self.stream.height, self.stream.width = info.height // 2 * 2, info.width // 2 * 2
            self.stream.pix_fmt = "yuv420p"
            self.stream.options = {"crf": "18", "preset": "veryfast"}
            t0, t1 = start / float(self.rate), end / float(self.rate)
            with av.open(str(info.path)) as source:
                if source.streams.audio:
                    src = source.streams.audio[0]
                    if src.codec_context.name in MP4_AUDIO:
                        self._copy_audio(source, src, t0, t1)
                    else:  # PCM from a MOV and the like: MP4 cannot hold it as it is
                        self._encode_audio(source, src, t0, t1)
        except BaseException:  # the source's audio could not be read or encoded: no open file, no .tmp left
            self.abort()
            raise

    def _copy_audio(self, source, src, t0: float, t1: float) -> None:
        self.audio_stream = self.container.add_stream_from_template(src)
        base = src.time_base
        offset = int(round(t0 / base))
        for packet in source.demux(src):
            if packet.pts is None or packet.dts is None:
                continue
            t = float(packet.pts * base)
            if t0 <= t < t1:
                packet.pts -= offset
                packet.dts -= offset
                self.audio.append((t - t0, packet))

    def _encode_audio(self, source, src, t0: float, t1: float) -> None:
        rate = src.codec_context.sample_rate or 48000
        self.audio_stream = self.container.add_stream("aac", rate=rate, layout=src.codec_context.layout.name)
        for frame in source.decode(src):
            if frame.time is None or not t0 <= frame.time < t1:
                continue
            frame.pts = int(round((frame.time - t0) * rate))
            frame.time_base = Fraction(1, rate)
            for packet in self.audio_stream.encode(frame):
                self.audio.append((float(packet.pts * packet.time_base), packet))
        for packet in self.audio_stream.encode(None):
            self.audio.append((float(packet.pts * packet.time_base), packet))

    def add(self, frame: np.ndarray) -> None:
        try:
            self._add(frame)
        except OSError as exc:  # PyAV's errors are OSErrors carrying FFmpeg's errno
            if is_disk_full(exc):
                raise disk_full(self.path.parent, self.path.name) from exc
            raise

    def _add(self, frame: np.ndarray) -> None:
        import av

        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[: self.stream.height, : self.stream.width]),
                                        format="bgr24")
        vf.pts = self.frames
        vf.time_base = 1 / self.rate
        self.frames += 1
        for packet in self.stream.encode(vf):
            self._audio_until(float(packet.pts * packet.time_base) if packet.pts is not None else 0.0)
            self.container.mux(packet)

    def _audio_until(self, t: float) -> None:
        while self.audio and self.audio[0][0] <= t:
            _, packet = self.audio.popleft()
            packet.stream = self.audio_stream
            self.container.mux(packet)

    def close(self) -> None:
        if not self.frames:
            raise EngineError("bad_request", "no frames to encode")
        try:
            self.container.mux(self.stream.encode())
            self._audio_until(float("inf"))
            self.container.close()
            self.closed = True
            self.tmp.replace(self.path)
        except OSError as exc:
            if is_disk_full(exc):
                raise disk_full(self.path.parent, self.path.name) from exc
            raise

    def abort(self) -> None:
        if not self.closed:
            try:
                self.container.close()
            except Exception:  # noqa: BLE001 - a half-written file is removed either way
                pass
            self.tmp.unlink(missing_ok=True)
