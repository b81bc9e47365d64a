"""Faces stage: the extract job, from a video range to tracked, steadied, aligned faces in a faceset.

Three things overlap: a thread decodes frames ahead, the calling thread follows faces through them
(the TFLite networks release the GIL), and a small pool warps, scores, encodes and writes the crops.
Catalog rows are committed in batches together with how far the extraction got, so a killed job
resumes from there and an unchanged strip extracted again is not extracted twice.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from ..config import check_types, from_dict
from ..errors import Cancelled, EngineError
from ..facesets import FaceRecord
from ..files import remove_stale_temps, sync_folder_of
from ..geometry.align import FACE_TYPES, MESH_TO_68, align_transform
from ..geometry.pose import pose_from_mesh
from ..media.decode import frame_range, iter_frames, probe
from ..media.encode import write_image
from ..workspace import Workspace
from . import identity
from .quality import face_quality
from .track import FaceTracker, TrackedFace, TrackSettings

BATCH = 64  # faces per catalog commit


@dataclass(frozen=True)
class ExtractParams:
    video: str
    faceset: str
    frame_start: int = 0
    frame_end: int | None = None  # exclusive; None = to the end
    size: int = 512
    face_type: str = "full"
    max_faces: int = 8
    min_size: int = 20  # pixels: smaller faces are ignored
    detect_every: int = 10  # frames between looks for new faces while others are followed
    small_faces: bool = True  # also search wide shots for small faces (on every 10th keyframe)
    smooth: bool = True  # steady the landmarks over time (One-Euro filter)

    def __post_init__(self) -> None:
        check_types(self, "extract option")
        if self.face_type not in FACE_TYPES:
            raise ValueError(f"unknown face type {self.face_type!r}; expected one of {', '.join(FACE_TYPES)}")
        if not 64 <= self.size <= 1024:
            raise ValueError(f"face size {self.size} is outside 64..1024")
        if self.detect_every < 1 or self.max_faces < 1:
            raise ValueError("detect_every and max_faces must be at least 1")

    @classmethod
    def from_dict(cls, d: dict) -> "ExtractParams":
        return from_dict(cls, d, "extract option")

    def settings(self) -> dict:
        """What decides the faces' content (not where they come from or go)."""
        d = asdict(self)
        for key in ("video", "faceset", "frame_start", "frame_end"):
            d.pop(key)
        return d


def _decode_ahead(path: Path, start: int, end: int, stop: threading.Event, depth: int = 8):
    """Frames from a decoding thread, so decoding overlaps the face work."""
    frames: queue.Queue = queue.Queue(maxsize=depth)
    failure: list[BaseException] = []

    def produce() -> None:
        try:
            for item in iter_frames(path, start, end):
                while not stop.is_set():
                    try:
                        frames.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except BaseException as exc:  # handed to the consumer, which raises it in the job's thread
            failure.append(exc)
        finally:
            frames.put(None)

    thread = threading.Thread(target=produce, name="swapline-decode", daemon=True)
    thread.start()
    try:
        while (item := frames.get()) is not None:
            yield item
        if failure:
            raise failure[0]
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                frames.get_nowait()
            except queue.Empty:
                thread.join(0.05)


def _save_face(frame: np.ndarray, face: TrackedFace, index: int, k: int, media_id: int, params: ExtractParams,
               out_dir: Path) -> FaceRecord:
    """Crop, score and write one face (runs on the writer pool: OpenCV releases the GIL)."""
    lm68 = face.points[list(MESH_TO_68), :2]
    yaw, pitch, roll = pose_from_mesh(face.points)
    m = align_transform(lm68, params.size, params.face_type, yaw=yaw)
    # bilinear: a 512 px bicubic warp costs 11 ms against 2.5, and crops are mostly scaled by less
    # than 1.5x; training and merging resample them again anyway
    crop = cv2.warpAffine(frame, m, (params.size, params.size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    sharpness, brightness = face_quality(crop)
    image = out_dir / f"m{media_id}_f{index:06d}_{k}.jpg"
    write_image(image, crop, sync_folder=False)  # the batch's commit syncs the folder once
    return FaceRecord(
        media_id=media_id, frame=index, face_index=k, box=face.box, score=face.score, landmarks=face.points[:, :2],
        landmarks68=lm68, transform=m, image=image, track=face.track, yaw=yaw, pitch=pitch, roll=roll,
        sharpness=sharpness, brightness=brightness, face_type=params.face_type, size=params.size,
    )


def extract_faces(ws: Workspace, params: ExtractParams, report, should_stop) -> dict:
    """Detect, track, align and store every face of frames [frame_start, frame_end) of a video."""
    info = probe(Path(params.video))
    start, end = frame_range(info, params.frame_start, params.frame_end)
    media_id = ws.register_media(info.path, info.width, info.height, info.fps, info.frames)
    store = ws.facesets
    faceset_id = store.ensure(params.faceset, params.face_type, params.size)
    settings = params.settings()
    earlier = store.extraction(faceset_id, media_id, start, end)
    resume_from = start
    if earlier and earlier["settings"] == settings:
        if earlier["done_until"] >= end:  # this very range was extracted with these settings
            counts = _counts(store, faceset_id, media_id, start, end, info.path.name)
            _recognise(ws, params.faceset, faceset_id, report, should_stop)  # a run killed while recognising
            report(1.0, f"already extracted: {counts['faces']} faces", {"frames": end - start, "faces": counts["faces"]})
            return _result(params, end - start, counts, media_id, reused=True)
        resume_from = earlier["done_until"]
    store.clear(faceset_id, media_id, resume_from, end)
    out_dir = ws.faceset_dir(params.faceset)
    out_dir.mkdir(parents=True, exist_ok=True)
    _remove_unrecorded(out_dir, media_id, resume_from, end)

    fps = info.fps or 25.0
    tracker = FaceTracker(
        TrackSettings(detect_every=params.detect_every, small_faces_every=10 * params.detect_every if params.small_faces
                      else 1 << 30, min_size=params.min_size, max_faces=params.max_faces, smooth=params.smooth),
        first_track=store.next_track(faceset_id),
    )
    # faces stored for the frame just before this range carry on as the same tracks
    for face in store.faces_at(faceset_id, media_id, resume_from - 1):
        if len(face.landmarks) == 468:
            tracker.seed(face.track, face.landmarks)
    total, done, stored = end - resume_from, 0, 0
    pending: list[tuple[int, list[Future]]] = []  # per frame, in order
    stop = threading.Event()

    def commit(upto_all: bool) -> None:
        """Store the rows of finished frames (in frame order) and how far that gets us."""
        nonlocal stored
        ready = []
        while pending and (upto_all or all(f.done() for f in pending[0][1])):
            ready.append(pending.pop(0))
        if not ready:
            return
        records = [f.result() for _, futures in ready for f in futures]
        if records:
            sync_folder_of(records[0].image)
        done_until = pending[0][0] if pending else ready[-1][0] + 1
        with ws.transaction():
            for rec in records:
                store.add(faceset_id, rec)
            store.record_extraction(faceset_id, media_id, start, end, settings, done_until)
        stored += len(records)

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="swapline-crop") as pool:
        try:
            for index, frame in _decode_ahead(info.path, resume_from, end, stop):
                if should_stop():
                    raise Cancelled()
                faces = tracker.step(frame, index / fps)
                pending.append((index, [pool.submit(_save_face, frame, f, index, k, media_id, params, out_dir)
                                        for k, f in enumerate(faces)]))
                done += 1
                if sum(len(f) for _, f in pending) >= BATCH or len(pending) >= BATCH:
                    commit(upto_all=False)
                report(done / total, f"frame {done}/{total}: {stored} faces",
                       {"frames": done, "faces": stored + sum(len(f) for _, f in pending),
                        "detections": tracker.detections})
            commit(upto_all=True)
        except BaseException:
            stop.set()
            # keep what is finished: the record says how far the job got, so a rerun resumes there
            for _, futures in pending:
                for f in futures:
                    f.cancel()
            finished = 0
            for _, futures in pending:
                if any(f.cancelled() or f.exception() is not None for f in futures):
                    break
                finished += 1
            del pending[finished:]
            commit(upto_all=True)
            raise
    counts = _counts(store, faceset_id, media_id, start, end, info.path.name)
    _recognise(ws, params.faceset, faceset_id, report, should_stop)
    store.record_extraction(faceset_id, media_id, start, end, settings, end)
    return _result(params, end - start, counts, media_id, reused=False)


def _remove_unrecorded(out_dir: Path, media_id: int, start: int, end: int) -> None:
    """Give back the space of what a killed run wrote past its last commit: face images of frames the
    catalog does not hold (the range was just cleared) and temp files. Neither is ever read as a
    face (only catalog rows are), and a rerun may find fewer faces than the killed run wrote."""
    remove_stale_temps(out_dir)
    prefix = f"m{media_id}_f"
    for image in out_dir.glob(f"{prefix}*.jpg"):
        frame = image.name[len(prefix):].split("_", 1)[0]
        if frame.isdigit() and start <= int(frame) < end:
            image.unlink(missing_ok=True)


def _recognise(ws: Workspace, faceset: str, faceset_id: int, report, should_stop) -> None:
    """Group the faceset's tracks into people by identity, when the identity extra is installed.

    Only once a faceset holds two tracks is there anything to group; then every track without a
    descriptor gets one (about 0.5 s a track on a CPU).
    """
    if not identity.available():
        return
    missing = ws.facesets.tracks_without_identity(faceset_id)
    if not missing:
        return
    faces = ws.facesets.faces(faceset, everyone=True)
    if len({f.track for f in faces}) < 2:
        return
    embeddings = {}
    for i, track in enumerate(missing):
        if should_stop():
            raise Cancelled()
        report(1.0, f"recognising people: track {i + 1}/{len(missing)}", {"tracks": len(missing)})
        emb = identity.track_embedding([f for f in faces if f.track == track])
        if emb is not None:
            embeddings[track] = emb
    ws.facesets.set_identities(faceset_id, embeddings, identity.group)


def _counts(store, faceset_id: int, media_id: int, start: int, end: int, name: str) -> dict:
    counts = store.count(faceset_id, media_id, start, end)
    if counts["faces"] == 0:
        raise EngineError("no_faces", f"no face found in frames {start}-{end - 1} of {name}")
    return counts


def _result(params: ExtractParams, frames: int, counts: dict, media_id: int, reused: bool) -> dict:
    return {"faceset": params.faceset, "frames": frames, "faces": counts["faces"],
            "frames_with_faces": counts["frames"], "tracks": counts["tracks"], "media_id": media_id, "reused": reused}
