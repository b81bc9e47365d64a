"""Merge stage: the one per-frame pipeline (ShotMerger), shared by the merge job and the live preview.

Per face, in two steps:
1. prepare (needs only its own frame): the steady placement -> the aligned crop -> the model's
   prediction and mask -> the mask sources combined and shaped -> colour transfer -> the coloured
   face's masked mean colour, kept per frame for temporal smoothing;
2. finish (needs the neighbours' means): the face moved to its smoothed mean colour, enhanced,
   composed into its frame as a FacePatch.
The job prepares frames ahead of the ones it finishes (a look-ahead window of ~3 sigma), so the
smoothing is centred; the preview fetches the neighbours it lacks through `frame_at`. A frame's
smoothing reads exactly the window's frames inside `bounds` (the shot), whatever else was merged
before, so the preview's pixels are the job's.

Predictions are cached by (face, placement): a settings change that keeps the placement re-merges
without the model; prepared faces and their means are cached by the digest of the settings step 1
reads (`prepare_digest`): a change of sharpening, degrading, motion blur or face scale reuses them.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections import OrderedDict, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from ..errors import EngineError
from ..facesets import FaceRecord
from ..geometry.align import align_transform, compose, invert, rescale, transform_points
from ..geometry.hull import hull_mask
from ..geometry.steady import steady_series
from ..media.decode import VideoInfo, probe
from ..models.checkpoint import has_checkpoint
from ..models.segmenter import Segmenter, mask_model_dir
from ..models.swapper import BATCH, FaceSwapper
from ..workspace import Workspace
from .compose import CROP, FacePatch, colour_face, compose_face
from .enhance import enhance
from .masks import combine, shape_mask
from .settings import MergeSettings
from .temporal import face_velocity, masked_mean, shift_mean, steady_means


_torch_threads = threading.Lock()


def _swap_on_one_thread(swapper: FaceSwapper, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The model on one intra-op thread. Its convolutions are small (64..256 px faces, a few at a
    time): on 2 cores, two OpenMP threads took ~10 ms of CPU per 64 px face against 2.5 ms for one
    (they spin and fight the merge's decode and PNG threads), and the other core is better spent
    on those. GPU models are not affected."""
    import torch

    if swapper.device.type != "cpu":
        return swapper.swap(crops)
    with _torch_threads:  # torch's thread count is per process: merges in threads take turns
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return swapper.swap(crops)
        finally:
            torch.set_num_threads(before)


def _padded(crops: np.ndarray) -> np.ndarray:
    """The batch padded to a power of two (up to the swapper's chunk): the CPU backend builds its
    kernels per input shape (~0.4 s each time a new one comes), so a job's last short batch and the
    preview's varying neighbour counts reuse a few shapes instead (the swapper runs BATCH at a time,
    so longer batches are padded to a multiple of it). The padding's results are never read."""
    n = len(crops)
    if n <= 4:
        size = 1 << (n - 1).bit_length()  # 1, 2, 4
    elif n <= BATCH:
        size = -(-n // 4) * 4  # a multiple of 4: at most 3 padded faces, at most 8 shapes
    else:
        size = -(-n // BATCH) * BATCH
    if size == n:
        return crops
    return np.concatenate([crops, np.repeat(crops[-1:], size - n, axis=0)])


class _LRU:
    """A map that forgets its least recently used entries beyond `capacity`; thread-safe (the job
    prepares the next batch on one thread while it finishes the last on another)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get_(self, key):
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key, value) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)


@dataclass
class _Prepared:
    """One face after step 1: everything its finish needs."""

    m: np.ndarray  # frame -> crop placement (steady)
    crop: np.ndarray  # the destination crop under m
    raw: np.ndarray  # the model's untouched prediction
    mask: np.ndarray  # shaped mask, crop space
    face: np.ndarray  # colour-transferred prediction
    mean: np.ndarray | None  # masked mean (Lab, or L for grayscale models) for temporal smoothing


# Settings only step 2 (finish) reads: a change of these reuses prepared faces and their means.
FINISH_ONLY = frozenset({"face_scale", "motion_blur", "sharpen_mode", "sharpen", "denoise", "bicubic", "colour_bits"})
BRIGHTNESS_SIGMA = 3.0  # frames: a grayscale model's brightness smoothing when smooth_colour is 0
_MEAN_SETS = 8  # settings states whose per-frame means are kept (the preview's recent edits)


class ShotMerger:
    """Merges the faces of one destination video with one model; see the module's docstring.
    `prepare` may run on one thread while `merge_frames` finishes already prepared frames on another."""

    def __init__(self, ws: Workspace, model: str, video: str, faceset: str, device: str = "auto",
                 frame_at: Callable[[int], np.ndarray | None] | None = None) -> None:
        self.info: VideoInfo = probe(Path(video))
        self.media_id = ws.media_id(self.info.path)
        faces = ws.facesets.faces(faceset, self.media_id) if self.media_id is not None else []
        if not faces:
            raise EngineError("no_faces", f"faceset {faceset!r} has no faces of {self.info.path.name}; extract it first")
        model_dir = ws.model_dir(model)
        if not has_checkpoint(model_dir):
            raise EngineError("not_found", f"no trained model {model!r} in this workspace; train it first")
        self.swapper = FaceSwapper.load(model_dir, device)
        self._ws, self._device, self.frame_at = ws, device, frame_at
        self.by_frame: dict[int, list[FaceRecord]] = defaultdict(list)
        for f in faces:
            self.by_frame[f.frame].append(f)
        size = ws.facesets.get(faceset)["size"]
        self._masked = ws.masks.masked(faceset)  # faces with a drawn, learned or imported mask
        # each face's crop for the model (the model's own face type when it differs from the faceset's)
        self._raw: dict[int, dict[int, np.ndarray]] = defaultdict(dict)  # track -> frame -> transform
        for f in faces:
            if self.swapper.face_type and self.swapper.face_type != f.face_type:
                m = align_transform(f.landmarks68, CROP, self.swapper.face_type, f.yaw)
            else:
                m = rescale(f.transform, CROP / (f.size or size))
            self._raw[f.track][f.frame] = m
        self._placements: dict[float, dict[int, dict[int, np.ndarray]]] = {}
        self._segmenters: dict[str, Segmenter] = {}
        # drawn exclusion zones (stored crop space) of the faces with a label, read when first needed
        self._labelled = set(ws.masks.labelled(faceset))
        self._exclusions: dict[int, np.ndarray | None] = {}
        self._predictions = _LRU(64)  # (face id, placement) -> {"crop", "raw", "pmask", "dst", "seg-*"}
        self._prepared = _LRU(64)  # (prepare digest, face id) -> _Prepared
        # prepare digest -> track -> frame -> mean (None: the face shows nothing, so it has no mean)
        self._means: OrderedDict[str, dict[int, dict[int, np.ndarray | None]]] = OrderedDict()
        self._means_lock = threading.Lock()
        self.model_faces = 0  # faces the model has been run on (tests and benches count it)

    # What there is ------------------------------------------------------------------------------

    def frames_with_faces(self) -> list[int]:
        return sorted(self.by_frame)

    def window(self, s: MergeSettings) -> int:
        """Frames on each side a frame's temporal smoothing reads (0: each frame stands alone)."""
        return int(math.ceil(3 * self._sigma(s))) if self._smoothing(s) else 0

    def prepare_digest(self, s: MergeSettings) -> str:
        """A digest of the settings step 1 reads: everything but FINISH_ONLY (and their keys), with
        the colour smoothing reduced to what it measures (its width only matters to step 2)."""
        values = {k: v for k, v in s.to_dict().items() if k not in FINISH_ONLY and k != "smooth_colour"}
        values["keys"] = {k: v for k, v in s.keys.items() if k not in FINISH_ONLY}
        values["smoothing"] = self._smoothing(s)
        text = json.dumps(values, sort_keys=True, default=str)
        return hashlib.sha1(text.encode()).hexdigest()[:16]

    def set_capacity(self, faces: int) -> None:
        """How many faces' predictions and prepared results to keep (the job sizes it to its window)."""
        self._predictions.capacity = self._prepared.capacity = max(8, faces)

    def placements(self, s: MergeSettings, track: int) -> dict[int, np.ndarray]:
        """One track's steady frame -> crop transforms by frame (landmark wobble smoothed away)."""
        sigma = float(s.smooth_placement)
        if sigma not in self._placements:
            self._placements[sigma] = {t: steady_series(series, sigma) for t, series in self._raw.items()}
        return self._placements[sigma][track]

    # The pipeline ----------------------------------------------------------------------------

    def merge_frames(self, frames: list[tuple[int, np.ndarray]], s: MergeSettings,
                     bounds: tuple[int, int] | None = None) -> list[list[FacePatch]]:
        """One list of FacePatch per (frame index, BGR frame) given; empty where a frame has no face.
        `bounds` [start, end) is the shot: temporal smoothing never reads frames outside it (the
        job's frames are its range; the preview passes the shot's range so it matches the job)."""
        self.prepare(frames, s)
        radius = self.window(s)
        lo, hi = bounds if bounds is not None else (-math.inf, math.inf)
        if radius and self.frame_at is not None:  # the preview: neighbours it has not prepared yet
            means = self._mean_set(self.prepare_digest(s))
            given = {i for i, _ in frames}
            wanted = set()
            for index, _ in frames:
                for f in self.by_frame.get(index, []):
                    steady, known = self.placements(s, f.track), means.get(f.track, {})
                    wanted.update(n for n in range(max(index - radius, lo), min(index + radius + 1, hi))
                                  if n in steady and n not in known and n not in given)
            extra = [(n, self.frame_at(n)) for n in sorted(wanted)]
            self.prepare([(n, fr) for n, fr in extra if fr is not None], s)
        return [[self._finish(face, index, frame, s, (lo, hi)) for face in self.by_frame.get(index, [])]
                for index, frame in frames]

    def _mean_set(self, pdigest: str) -> dict[int, dict[int, np.ndarray | None]]:
        """The per-frame means of one prepare digest, the most recently used kept."""
        with self._means_lock:
            means = self._means.pop(pdigest, None)
            self._means[pdigest] = means = means if means is not None else defaultdict(dict)
            while len(self._means) > _MEAN_SETS:
                self._means.popitem(last=False)
            return means

    def prepare(self, frames: list[tuple[int, np.ndarray]], s: MergeSettings) -> None:
        """Step 1 for every face of these frames, the model run once over all of them that need it."""
        digest = self.prepare_digest(s)
        todo = [(f, frame) for index, frame in frames for f in self.by_frame.get(index, [])
                if self._prepared.get_((digest, f.id)) is None]
        if not todo:
            return
        keys, need, preds = [], [], {}  # preds: this call's, whatever the cache keeps of them
        for f, frame in todo:
            m = self.placements(s, f.track)[f.frame]
            key = (f.id, m.tobytes())
            keys.append((key, m))
            if key not in preds:
                preds[key] = self._predictions.get_(key)
                if preds[key] is None:
                    need.append((key, m, frame))
        if need:
            crops = np.stack([cv2.warpAffine(frame, m, (CROP, CROP), flags=cv2.INTER_LINEAR,
                                             borderMode=cv2.BORDER_REPLICATE) for _, m, frame in need])
            raw, pmask = _swap_on_one_thread(self.swapper, _padded(crops))
            self.model_faces += len(need)
            for k, (key, _, _) in enumerate(need):
                preds[key] = {"crop": crops[k], "raw": raw[k], "pmask": pmask[k]}
                self._predictions.put(key, preds[key])
        means = self._mean_set(digest)
        mode = self._smoothing(s)
        for (f, _), (key, m) in zip(todo, keys):
            prepared = self._prepare_face(f, m, preds[key], s.at(f.frame), mode)
            self._prepared.put((digest, f.id), prepared)
            if mode:
                means[f.track][f.frame] = prepared.mean

    def _prepare_face(self, f: FaceRecord, m: np.ndarray, pred: dict, st: MergeSettings, mode: str | None) -> _Prepared:
        terms = st.mask_terms
        hull_key = f"hull:{st.forehead}"  # kept with the prediction: a preview's settings change reuses it
        if hull_key not in pred:
            pred[hull_key] = hull_mask(transform_points(m, f.landmarks68), (CROP, CROP), st.forehead)
        hull = pred[hull_key]
        sources = {"hull": hull, "pred": pred["pmask"]}
        if "dst" in terms:
            sources["dst"] = self._dst_mask(f, m, pred, hull)
        for term, image in (("seg-pred", "raw"), ("seg-dst", "crop")):
            if term in terms:
                key = f"{term}:{st.seg_model}"
                if key not in pred:
                    pred[key] = self._segmenter(st.seg_model).predict(pred[image][None])[0]
                sources[term] = pred[key]
        mask = combine(sources, terms)
        # the destination face's drawn exclusion zones (a hand, a microphone) stay out after
        # dilation and feathering, whatever the mask source: the occluder is kept in front of the swap
        mask = shape_mask(mask, st, self._exclusion(f, m, pred))
        # colour transfer and, in the hist-match modes, histogram matching: both before the mean is
        # measured, so temporal smoothing steadies what they do
        face = colour_face(pred["raw"], pred["crop"], mask, st)
        mean = masked_mean(face, mask, mode) if mode else None
        return _Prepared(m, pred["crop"], pred["raw"], mask, face, mean)

    def _finish(self, f: FaceRecord, index: int, frame: np.ndarray, s: MergeSettings,
                bounds: tuple[float, float]) -> FacePatch:
        digest = self.prepare_digest(s)
        p = self._prepared.get_((digest, f.id))
        if p is None:  # pushed out of the cache by a long batch: prepare it again
            self.prepare([(index, frame)], s)
            p = self._prepared.get_((digest, f.id))
        st = s.at(index)
        face = p.face
        if p.mean is not None:
            radius = self.window(s)
            track = self._mean_set(digest)[f.track]
            lo, hi = bounds
            near = {n: track[n] for n in range(index - radius, index + radius + 1)
                    if lo <= n < hi and track.get(n) is not None}
            face = shift_mean(face, p.mask, p.mean, steady_means(near, self._sigma(s))[index])
        velocity = face_velocity(self.placements(s, f.track), index) if st.motion_blur > 0 else (0.0, 0.0)
        face = enhance(face, st, velocity)
        # compose_face lays the face out larger or smaller by st.face_scale about the crop centre
        return compose_face(frame, p.crop, face, p.mask, p.m, st, raw=p.raw)

    def close(self) -> None:
        """Let go of the cached crops and predictions (the model goes with the merger itself)."""
        self._predictions = _LRU(self._predictions.capacity)
        self._prepared = _LRU(self._prepared.capacity)
        with self._means_lock:
            self._means.clear()
        self._segmenters.clear()

    # Pieces ------------------------------------------------------------------------------------

    def _smoothing(self, s: MergeSettings) -> str | None:
        """What temporal colour smoothing measures: the Lab mean; for grayscale models (colour comes
        from the destination) the brightness only, when stabilise_brightness asks for it."""
        if self.swapper.gray:  # stabilising is its own switch: it works with smooth_colour at 0 too
            return "l" if s.stabilise_brightness else None
        return "lab" if s.smooth_colour > 0 else None

    def _sigma(self, s: MergeSettings) -> float:
        """Frames (Gaussian sigma) the measured colour is smoothed over."""
        if self.swapper.gray and s.smooth_colour <= 0:
            return BRIGHTNESS_SIGMA
        return float(s.smooth_colour)

    def _dst_mask(self, f: FaceRecord, m: np.ndarray, pred: dict, hull: np.ndarray) -> np.ndarray:
        """The destination face's drawn, learned or imported mask in the merge crop; its hull without one."""
        if f.id not in self._masked:
            return hull
        if "dst" not in pred:
            stored = self._ws.masks.mask_of(f)[0]
            pred["dst"] = cv2.warpAffine(stored, compose(m, invert(f.transform)), (CROP, CROP), flags=cv2.INTER_LINEAR)
        return pred["dst"]

    def _exclusion(self, f: FaceRecord, m: np.ndarray, pred: dict) -> np.ndarray | None:
        """The face's drawn exclusion zones in the merge crop (1 = keep out), or None without any."""
        if f.id not in self._labelled:
            return None
        if f.id not in self._exclusions:
            self._exclusions[f.id] = self._ws.masks.exclusion_of(f)
        stored = self._exclusions[f.id]
        if stored is None:
            return None
        if "exclusion" not in pred:  # kept with the prediction: it depends on the placement only
            pred["exclusion"] = cv2.warpAffine(stored, compose(m, invert(f.transform)), (CROP, CROP),
                                               flags=cv2.INTER_LINEAR)
        return pred["exclusion"]

    def _segmenter(self, name: str) -> Segmenter:
        if name not in self._segmenters:
            directory = mask_model_dir(self._ws, name)
            if not has_checkpoint(directory):
                raise EngineError("not_found", f"no mask model {name!r} in this workspace: train one (Masks) or "
                                  "pick a mask without seg-pred/seg-dst")
            self._segmenters[name] = Segmenter.load(directory, self._device)
        return self._segmenters[name]
