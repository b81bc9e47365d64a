"""Faces stage: BlazeFace detection on a bare TFLite interpreter, with a small-face pass and rotation retries.

MediaPipe's two BlazeFace networks (short and full range) are run through `tflite.Network`; the
anchors, the box decoding and the weighted non-maximum suppression are our own code, written
from the parameters of MediaPipe's (Apache-2) calculator configs. Two things MediaPipe's graph
does not do: a second pass over overlapping tiles, because a whole 1080p frame squeezed into
192 px leaves a face in a wide shot a few pixels wide, and retries on the frame turned 90, 180
and 270 degrees, for phone footage whose rotation flag was lost.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import cv2
import numpy as np

from .tflite import Network

NMS_IOU = 0.3  # MediaPipe's min_suppression_threshold for both face detectors
SCORE_CLIP = 100.0  # raw logits are clipped before the sigmoid, as MediaPipe does
TILE_FRACTION = 0.5  # tile side as a share of the frame's short side
TILE_OVERLAP = 0.25
# Fifteen zoomed-in looks at a frame find false faces too: in hair, shoulders and plants on the
# real clips they scored up to 0.61, while the pasted 40-100 px faces of the crowd test scored
# 0.72 and up. The tile pass asks for this much at least.
TILE_MIN_SCORE = 0.65
EDGE = 4  # tile-input pixels: a box this close to a tile's inner edge is taken for a cut face
# Turned frames tried when nothing convincing is found: sideways first, phones are more often
# held that way than upside down.
ROTATIONS = {"cw90": cv2.ROTATE_90_CLOCKWISE, "ccw90": cv2.ROTATE_90_COUNTERCLOCKWISE, "180": cv2.ROTATE_180}
# Upright faces score 0.91-0.94 on the real clips; the same faces turned 90 degrees still score
# 0.68-0.85 (with a box that fits poorly), upside down 0.5-0.73 with keypoints that claim they
# are upright. So a best score under this, or a turned eye line, is what calls for the retries.
CONFIDENT = 0.8


@dataclass(frozen=True)
class Detection:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in frame pixels
    score: float
    # (6, 2) frame pixels: subject's right eye, left eye, nose tip, mouth, right ear tragion, left ear tragion
    keypoints: np.ndarray

    @property
    def size(self) -> float:
        return max(self.box[2] - self.box[0], self.box[3] - self.box[1])


@dataclass(frozen=True)
class _Spec:
    name: str
    strides: tuple[int, ...]
    anchors_per_layer: int


SHORT = _Spec("detect_short", strides=(8, 16, 16, 16), anchors_per_layer=2)
FULL = _Spec("detect_full", strides=(4,), anchors_per_layer=1)


def anchor_centres(input_size: int, strides: tuple[int, ...], anchors_per_layer: int) -> np.ndarray:
    """(N, 2) anchor centres in [0, 1], in the order of the network's outputs.

    Both models use fixed-size anchors (width = height = 1), so a centre is all an anchor is.
    Consecutive layers with the same stride share one grid, their anchors repeated per cell.
    """
    centres, i = [], 0
    while i < len(strides):
        stride, per_cell = strides[i], 0
        while i < len(strides) and strides[i] == stride:
            per_cell += anchors_per_layer
            i += 1
        cells = math.ceil(input_size / stride)
        ys, xs = np.mgrid[0:cells, 0:cells]
        grid = np.stack([(xs + 0.5) / cells, (ys + 0.5) / cells], -1).reshape(-1, 2)
        centres.append(np.repeat(grid, per_cell, axis=0))
    return np.concatenate(centres).astype(np.float32)


def decode(regressors: np.ndarray, logits: np.ndarray, anchors: np.ndarray, input_size: int,
           min_score: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes (M, 4) x0 y0 x1 y1, scores (M,) and keypoints (M, 6, 2), in input pixels, above `min_score`."""
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits.reshape(-1).astype(np.float64), -SCORE_CLIP, SCORE_CLIP)))
    keep = np.flatnonzero(scores >= min_score)
    raw, centre = regressors.reshape(-1, 16)[keep], anchors[keep] * input_size
    # Offsets are in input pixels from the anchor centre (the anchor's unit size times the scale).
    xy, half = raw[:, :2] + centre, raw[:, 2:4] / 2
    boxes = np.concatenate([xy - half, xy + half], 1)
    keypoints = raw[:, 4:].reshape(-1, 6, 2) + centre[:, None]
    return boxes, scores[keep], keypoints


def _intersection(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Area shared by one x0 y0 x1 y1 box and each of (N, 4) boxes."""
    w = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    h = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    return w * h


def _area(boxes: np.ndarray) -> np.ndarray:  # of x0 y0 x1 y1 boxes along the last axis
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one x0 y0 x1 y1 box with each of (N, 4) boxes."""
    inter = _intersection(box, boxes)
    return inter / np.maximum(_area(box) + _area(boxes) - inter, 1e-6)


def _covered(box: tuple[float, float, float, float], others: list[Detection], share: float = 0.5) -> bool:
    """Whether more than `share` of the box's area lies inside one of the other detections."""
    if not others:
        return False
    a = np.asarray(box)
    return bool(_intersection(a, np.array([d.box for d in others])).max() > share * _area(a))


def weighted_nms(dets: list[Detection], threshold: float = NMS_IOU) -> list[Detection]:
    """MediaPipe's weighted suppression: each cluster around the best remaining box becomes the
    score-weighted average of its boxes and keypoints, not just its best one."""
    if not dets:
        return []
    dets = sorted(dets, key=lambda d: -d.score)
    boxes = np.array([d.box for d in dets], np.float64)
    scores = np.array([d.score for d in dets], np.float64)
    points = np.stack([d.keypoints for d in dets]).astype(np.float64)
    left = np.arange(len(dets))
    merged = []
    while left.size:
        near = iou(boxes[left[0]], boxes[left]) > threshold
        group, left = left[near], left[~near]
        w = scores[group] / scores[group].sum()
        box = (boxes[group] * w[:, None]).sum(0)
        kps = (points[group] * w[:, None, None]).sum(0)
        merged.append(Detection(tuple(float(v) for v in box), float(scores[group[0]]), kps.astype(np.float32)))
    return merged


def _uprighting(d: Detection) -> str | None:
    """The rotation that would stand a face lying on its side upright, from its eye line."""
    dx, dy = d.keypoints[1] - d.keypoints[0]  # subject's right eye to left eye: along +x when upright
    angle = math.degrees(math.atan2(dy, dx))
    if 45 < angle < 135:
        return "ccw90"
    if -135 < angle < -45:
        return "cw90"
    if abs(angle) >= 135:
        return "180"
    return None  # upright, or upside down: keypoints on an upside-down face claim it is upright


def _rotate_back(dets: list[Detection], rotation: int, size: tuple[int, int]) -> list[Detection]:
    """Detections found on `cv2.rotate(frame, rotation)` in the coordinates of the original frame (w, h)."""
    w, h = size

    def back(p: np.ndarray) -> np.ndarray:
        x, y = p[..., 0], p[..., 1]
        if rotation == cv2.ROTATE_90_CLOCKWISE:  # (x, y) went to (h - y, x)
            return np.stack([y, h - x], -1)
        if rotation == cv2.ROTATE_90_COUNTERCLOCKWISE:  # (x, y) went to (y, w - x)
            return np.stack([w - y, x], -1)
        return np.stack([w - x, h - y], -1)

    out = []
    for d in dets:
        corners = back(np.array([[d.box[0], d.box[1]], [d.box[2], d.box[3]]], np.float32))
        box = (*corners.min(0).tolist(), *corners.max(0).tolist())
        out.append(Detection(tuple(float(v) for v in box), d.score, back(d.keypoints).astype(np.float32)))
    return out


class BlazeFace:
    """Finds faces in BGR frames, largest first. Not thread-safe: one per worker thread.

    `timings` holds the milliseconds each pass of the last `detect` call took, so a caller can
    see what the small-face pass costs and keep it to keyframes.
    """

    def __init__(self, min_score: float = 0.5, min_size: int = 20) -> None:
        self.min_score = min_score
        self.min_size = min_size
        self._nets = {spec: Network(spec.name) for spec in (SHORT, FULL)}
        self._anchors = {spec: anchor_centres(net.input_size, spec.strides, spec.anchors_per_layer)
                         for spec, net in self._nets.items()}
        self.timings: dict[str, float] = {}

    def detect(self, frame_bgr: np.ndarray, small_faces: bool = True, rotations: bool = True,
               close_ups: bool = True) -> list[Detection]:
        """Faces in a BGR frame, largest first.

        `small_faces` adds the tile pass, several times the cost of the whole-frame pass: meant
        for keyframes. `rotations` retries the frame turned when no face is found with
        confidence or the best one lies on its side; a turned frame whose best face is more
        convincing replaces the upright frame's faces. The retries skip the tile pass: a turned
        camera is a close-up far more often than a crowd. `close_ups=False` skips the short-range
        model: a tracker looking for newcomers beside faces it already follows can save it.
        """
        self.timings = {}
        rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
        h, w = rgb.shape[:2]
        found = self._timed("whole", self._whole_frame, rgb, None, close_ups)
        if small_faces and min(h, w) > 2 * self._nets[FULL].input_size:
            whole, cut = self._timed("tiles", self._tiles, rgb)
            found += whole
            found = weighted_nms(found + [d for d in cut if not _covered(d.box, found)])
        found = [d for d in found if d.size >= self.min_size]
        if rotations:
            found = self._turned(rgb, found)
        return sorted(found, key=lambda d: -d.size)

    def _turned(self, rgb: np.ndarray, found: list[Detection]) -> list[Detection]:
        """The faces of the frame turned 90, 270 or 180 degrees, when they are more convincing."""
        best = max(found, key=lambda d: d.score, default=None)
        hint = _uprighting(best) if best is not None else None
        if best is not None and best.score >= CONFIDENT and hint is None:
            return found
        h, w = rgb.shape[:2]
        best_score = best.score if best is not None else 0.0
        for name in sorted(ROTATIONS, key=lambda name: name != hint):
            turned = self._timed(f"rotated_{name}", self._whole_frame, rgb, ROTATIONS[name])
            top = max((d for d in turned if d.size >= self.min_size), key=lambda d: d.score, default=None)
            if top is not None and top.score >= CONFIDENT and top.score > best_score:
                found, best_score = _rotate_back(turned, ROTATIONS[name], (w, h)), top.score
                # An upside-down frame turned a quarter still shows a face well enough to pass,
                # lying on its side: only an upright one ends the search.
                if _uprighting(top) is None:
                    break
        return [d for d in found if d.size >= self.min_size]

    def _timed(self, name: str, fn, *args):
        start = time.perf_counter()
        result = fn(*args)
        self.timings[name] = (time.perf_counter() - start) * 1000
        return result

    def _whole_frame(self, rgb: np.ndarray, rotation: int | None = None, close_ups: bool = True) -> list[Detection]:
        """Both models on the whole frame (turned by `rotation`), letterboxed: short range catches
        the big close-ups that the full-range model sometimes scores low."""
        full = self._nets[FULL].input_size
        boxed, scale, pad = _letterbox(rgb, full, rotation)
        dets = self._run(FULL, boxed, scale, -pad / scale)
        if not close_ups:
            return weighted_nms(dets)
        short = self._nets[SHORT].input_size
        small = cv2.resize(boxed, (short, short), interpolation=cv2.INTER_AREA)
        dets += self._run(SHORT, small, scale * short / full, -pad / scale)
        return weighted_nms(dets)

    def _tiles(self, rgb: np.ndarray) -> tuple[list[Detection], list[Detection]]:
        """The full-range model on overlapping square tiles: the faces seen whole, and those
        touching a tile's inner edge, which are likely cut and kept only where nothing else
        covers them (the overlap shows a small face whole to a neighbouring tile)."""
        size = self._nets[FULL].input_size
        # One resize of the whole frame, so that a tile is a plain slice of it.
        scale = size / (min(rgb.shape[:2]) * TILE_FRACTION)
        small = _shrink(rgb, scale)
        h, w = small.shape[:2]
        side, edge = size / scale, EDGE / scale  # in frame pixels
        whole, cut = [], []
        for ty in _starts(h, size):
            for tx in _starts(w, size):
                x0, y0 = tx / scale, ty / scale
                tile = small[ty:ty + size, tx:tx + size]
                for d in self._run(FULL, tile, scale, np.array([x0, y0], np.float32), TILE_MIN_SCORE):
                    bx0, by0, bx1, by1 = d.box
                    inside = ((tx == 0 or bx0 > x0 + edge) and (tx + size == w or bx1 < x0 + side - edge)
                              and (ty == 0 or by0 > y0 + edge) and (ty + size == h or by1 < y0 + side - edge))
                    (whole if inside else cut).append(d)
        return whole, cut

    def _run(self, spec: _Spec, image: np.ndarray, scale: float, offset: np.ndarray,
             min_score: float = 0.0) -> list[Detection]:
        """Detections on one square RGB input, mapped back to the frame: input / scale + offset."""
        net = self._nets[spec]
        batch = image[None].astype(np.float32) * (2 / 255) - 1  # both models take [-1, 1]
        outputs = net.run(batch)
        # The outputs are named differently in the two files; their shapes tell them apart.
        regressors = next(o for o in outputs if o.shape[-1] == 16)
        logits = next(o for o in outputs if o.shape[-1] == 1)
        boxes, scores, kps = decode(regressors, logits, self._anchors[spec], net.input_size,
                                     max(min_score, self.min_score))
        boxes = boxes / scale + np.tile(offset, 2)
        kps = kps / scale + offset
        return [Detection(tuple(float(v) for v in b), float(s), k.astype(np.float32))
                for b, s, k in zip(boxes, scores, kps)]


def _shrink(image: np.ndarray, scale: float) -> np.ndarray:
    """The image resized by `scale` < 1. INTER_AREA by a whole factor, then bilinear for the
    rest: INTER_AREA by an arbitrary factor took 15 ms on a 1080p frame, this takes 2.5."""
    h, w = image.shape[:2]
    factor = int(1 / scale)
    if factor >= 2:
        image = cv2.resize(image, (w // factor, h // factor), interpolation=cv2.INTER_AREA)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR) if image.shape[1::-1] != size else image


def _letterbox(rgb: np.ndarray, size: int, rotation: int | None = None) -> tuple[np.ndarray, float, np.ndarray]:
    """The frame fitted into a size x size square, centred on black; with the scale and (x, y) padding.

    A rotation is applied after shrinking, where it is cheap: turning a whole 1080p frame took 9 ms.
    """
    scale = size / max(rgb.shape[:2])
    small = _shrink(rgb, scale)
    if rotation is not None:
        small = cv2.rotate(small, rotation)
    nh, nw = small.shape[:2]
    px, py = (size - nw) // 2, (size - nh) // 2
    boxed = cv2.copyMakeBorder(small, py, size - nh - py, px, size - nw - px, cv2.BORDER_CONSTANT, value=0)
    return boxed, scale, np.array([px, py], np.float32)


def _starts(length: int, side: int) -> list[int]:
    """Tile origins along one axis: evenly spread, overlapping by at least TILE_OVERLAP, the last flush with the end."""
    if side >= length:
        return [0]
    count = math.ceil((length - side) / (side * (1 - TILE_OVERLAP))) + 1
    return [round(i * (length - side) / (count - 1)) for i in range(count)]
