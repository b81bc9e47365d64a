"""Building block: DeepFaceLab-style sorting and culling of a faceset's faces.

Orders faces by a key (blur, pose, brightness, histogram similarity, frame), picks the best N with
poses spread out (DFL's "final" sort) and flags faces that are probably bad. Everything here reads
FaceRecords and, where histograms are needed, their crops; nothing writes to the catalog.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections import OrderedDict, defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

import cv2
import numpy as np

from ..errors import EngineError
from ..facesets import FaceRecord
from .quality import HISTOGRAM_BINS, face_quality, gray_histogram, histogram_distance

SORT_KEYS = ("frame", "sharpness", "yaw", "pitch", "brightness", "histogram", "histogram-dissimilar")

YAW_BINS = 32  # best_faces: bins over -90..90 degrees of yaw, about 6 degrees each
POOL = 10  # best_faces: a yaw bin's sharpest POOL * quota faces compete for its quota (DFL's rule)
DUPLICATE_POSE = 3.0  # degrees of yaw and pitch within which two faces may be near-duplicates ...
DUPLICATE_HISTOGRAM = 0.1  # ... if their histograms are also this close (a 2 px shift is ~0.03)
NEIGHBOURS = 8  # a face's isolation: its mean histogram distance to this many nearest faces
BLURRY = 0.25  # outliers: sharpness under this fraction of the faceset's median
DARK, BRIGHT = 30.0, 225.0  # outliers: mean luma of the face outside this range
ISOLATED_MADS = 5.0  # outliers: isolation this many (scaled) median deviations above the median ...
ISOLATED_FLOOR = 0.3  # ... and above this distance, so a very even faceset flags nothing
MIN_FOR_HISTOGRAM = 6  # outliers: fewer faces than this say nothing about what is unusual


def _frame_order(r: FaceRecord) -> tuple:
    return (r.media_id, r.frame, r.face_index, r.id or 0)


def load_gray(record: FaceRecord) -> np.ndarray | None:
    """The face's stored crop in gray, or None when it is missing or unreadable."""
    image = cv2.imread(str(record.image), cv2.IMREAD_GRAYSCALE)
    return image if image is not None and image.size else None


def _parallel(fn: Callable, records: Sequence[FaceRecord]) -> list:
    # JPEG decoding releases the GIL, so a few threads read a faceset about that many times faster
    if len(records) < 32:
        return [fn(r) for r in records]
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        return list(pool.map(fn, records, chunksize=16))


def _histogram(record: FaceRecord) -> np.ndarray:
    gray = load_gray(record)
    return gray_histogram(gray) if gray is not None else np.zeros(HISTOGRAM_BINS, np.float32)


class HistogramCache:
    """Crop histograms kept between requests (paging through a histogram sort reads each crop
    once), keyed by the crop's path, size and modification time so a re-extracted crop is re-read.
    Thread-safe; the least recently used entries go beyond `capacity` (about 300 bytes each)."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def histograms(self, records: Sequence[FaceRecord]) -> np.ndarray:
        keys = [_file_key(r) for r in records]
        out: list[np.ndarray | None] = []
        with self._lock:
            for key in keys:
                hit = self._entries.get(key) if key else None
                if hit is not None:
                    self._entries.move_to_end(key)
                out.append(hit)
        missing = [i for i, h in enumerate(out) if h is None]
        for i, hist in zip(missing, _parallel(_histogram, [records[i] for i in missing])):
            out[i] = hist
        with self._lock:
            for i in missing:
                if keys[i]:
                    self._entries[keys[i]] = out[i]
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)
        return np.stack(out) if out else np.zeros((0, HISTOGRAM_BINS), np.float32)


def _file_key(record: FaceRecord) -> tuple | None:
    try:
        st = os.stat(record.image)
    except OSError:
        return None  # a missing crop is looked at again next time
    return (str(record.image), st.st_size, st.st_mtime_ns)


def histograms(records: Sequence[FaceRecord], cache: HistogramCache | None = None) -> np.ndarray:
    """(N, HISTOGRAM_BINS) gray histograms of the faces' crops; all zeros where a crop is unreadable."""
    if cache is not None:
        return cache.histograms(records)
    rows = _parallel(_histogram, records)
    return np.stack(rows) if rows else np.zeros((0, HISTOGRAM_BINS), np.float32)


def with_quality(records: Sequence[FaceRecord]) -> list[FaceRecord]:
    """The records, with sharpness and brightness measured from the crop where the catalog has none
    (faces stored before the extractor measured them); those values are not written back."""
    def one(r: FaceRecord) -> FaceRecord:
        if r.sharpness or r.brightness:
            return r
        gray = load_gray(r)
        if gray is None:
            return r
        sharpness, brightness = face_quality(gray)
        return dataclasses.replace(r, sharpness=sharpness, brightness=brightness)

    if all(r.sharpness or r.brightness for r in records):
        return list(records)
    return _parallel(one, records)


def isolation(hists: np.ndarray, neighbours: int = NEIGHBOURS) -> np.ndarray:
    """Each face's mean histogram distance to its `neighbours` nearest others: high = unlike the rest."""
    n = len(hists)
    if n < 2:
        return np.zeros(n, np.float32)
    k = min(neighbours, n - 1)
    out = np.empty(n, np.float32)
    for start in range(0, n, 512):  # in blocks: a full N x N matrix of a big faceset is too large
        d = histogram_distance(hists[start:start + 512], hists)
        d[np.arange(len(d)), np.arange(start, start + len(d))] = np.inf
        out[start:start + len(d)] = np.partition(d, k - 1, axis=1)[:, :k].mean(axis=1)
    return out


def _similarity_chain(hists: np.ndarray) -> list[int]:
    """A greedy nearest-neighbour walk: start at the most typical face, always step to the most
    similar face not yet visited, so similar faces sit together."""
    roots = np.sqrt(np.clip(hists, 0, None))
    # Bhattacharyya overlap is the dot product of square roots: the largest is the nearest
    current = int(np.argmax(roots @ roots.mean(axis=0)))
    visited = np.zeros(len(hists), bool)
    order = []
    for _ in range(len(hists)):
        order.append(current)
        visited[current] = True
        if visited.all():
            break
        overlap = roots @ roots[current]
        overlap[visited] = -np.inf
        current = int(np.argmax(overlap))
    return order


def sort_faces(records: Sequence[FaceRecord], key: str,
               cache: HistogramCache | None = None) -> list[FaceRecord]:
    """The faces in `key` order (one of SORT_KEYS); ties keep frame order.

    sharpness: sharpest first. yaw: from facing the image's left to its right. pitch: from looking
    down to looking up. brightness: darkest first. histogram: similar faces together.
    histogram-dissimilar: the faces least like any others first (where bad crops gather).
    """
    faces = sorted(records, key=_frame_order)
    if key == "frame":
        return faces
    if key == "sharpness":
        return sorted(faces, key=lambda r: -r.sharpness)
    if key == "yaw":
        return sorted(faces, key=lambda r: r.yaw)
    if key == "pitch":
        return sorted(faces, key=lambda r: r.pitch)
    if key == "brightness":
        return sorted(faces, key=lambda r: r.brightness)
    if key == "histogram":
        return [faces[i] for i in _similarity_chain(histograms(faces, cache))] if faces else []
    if key == "histogram-dissimilar":
        score = isolation(histograms(faces, cache))
        return [faces[i] for i in np.argsort(-score, kind="stable")]
    raise EngineError("bad_request", f"unknown sort {key!r}; expected one of {', '.join(SORT_KEYS)}")


# Best faces ------------------------------------------------------------------------------------


def _share(count: int, sizes: dict[int, int]) -> dict[int, int]:
    """Split `count` over bins holding `sizes` faces as evenly as they allow (a bin with few faces
    gives its unused share to the others); fewer than one each goes to bins spread across the range."""
    quota = dict.fromkeys(sizes, 0)
    remaining = min(count, sum(sizes.values()))
    open_bins = sorted(b for b in sizes if sizes[b])
    while remaining and open_bins:
        each = remaining // len(open_bins)
        if each == 0:
            for i in range(remaining):
                quota[open_bins[int((i + 0.5) * len(open_bins) / remaining)]] += 1
            break
        for b in list(open_bins):
            give = min(each, sizes[b] - quota[b])
            quota[b] += give
            remaining -= give
            if quota[b] == sizes[b]:
                open_bins.remove(b)
    return quota


def _sharpest_first(r: FaceRecord) -> tuple:
    return (-r.sharpness, *_frame_order(r))


def _pick(pool: list[FaceRecord], quota: int, hist: Callable[[FaceRecord], np.ndarray]) -> list[FaceRecord]:
    """`quota` faces of one yaw bin's pool (its sharpest, sharpest first): spread over pitch,
    near-duplicates last."""
    low, high = min(r.pitch for r in pool), max(r.pitch for r in pool)
    groups: list[list[FaceRecord]] = [[] for _ in range(quota)]
    for r in pool:  # pitch sub-bins across the pool's own range, each in sharpness order
        g = int((r.pitch - low) / (high - low) * quota) if high > low else 0
        groups[min(g, quota - 1)].append(r)
    kept: list[FaceRecord] = []
    deferred: list[FaceRecord] = []

    def duplicate(r: FaceRecord) -> bool:
        close = [hist(k) for k in kept
                 if abs(r.yaw - k.yaw) < DUPLICATE_POSE and abs(r.pitch - k.pitch) < DUPLICATE_POSE]
        return bool(close) and float(histogram_distance(hist(r)[None], np.stack(close)).min()) < DUPLICATE_HISTOGRAM

    # round robin over the pitch sub-bins, the one with the sharpest next face first in each round
    while len(kept) < quota and any(groups):
        for group in sorted((g for g in groups if g), key=lambda g: -g[0].sharpness):
            face = group.pop(0)
            (deferred if duplicate(face) else kept).append(face)
            if len(kept) == quota:
                break
    kept += sorted(deferred, key=_sharpest_first)[:quota - len(kept)]
    return kept


def best_faces(records: Sequence[FaceRecord], count: int, yaw_bins: int = YAW_BINS,
               cache: HistogramCache | None = None) -> list[int]:
    """Ids of `count` faces worth keeping, in frame order (DeepFaceLab's "final" sort).

    The pick is spread over `yaw_bins` bins of yaw (-90..90 degrees) and, within a bin, over pitch;
    within a bin sharp faces come first and a near-duplicate of a face already kept (same pose,
    same histogram) only when nothing else is left. Crops are read only for the faces that compete.
    """
    if count >= len(records):
        return [r.id for r in sorted(records, key=_frame_order)]
    if count <= 0:
        return []
    width = 180.0 / yaw_bins
    bins: dict[int, list[FaceRecord]] = defaultdict(list)
    for r in records:
        bins[min(max(int((r.yaw + 90.0) // width), 0), yaw_bins - 1)].append(r)
    quotas = _share(count, {b: len(v) for b, v in bins.items()})
    pools = {b: sorted(bins[b], key=_sharpest_first)[:POOL * q] for b, q in quotas.items() if q}
    # one batch of reads for every face that competes; a bin that keeps its whole pool needs none
    competing = [r for b, pool in pools.items() if len(pool) > quotas[b] for r in pool]
    table = dict(zip(map(id, competing), histograms(competing, cache)))
    kept = []
    for b, pool in pools.items():
        kept += pool if len(pool) == quotas[b] else _pick(pool, quotas[b], lambda r: table[id(r)])
    return [r.id for r in sorted(kept, key=_frame_order)]


# Outliers --------------------------------------------------------------------------------------


def outliers(records: Sequence[FaceRecord], cache: HistogramCache | None = None) -> list[tuple[int, str]]:
    """(id, reason) for each face that is probably bad: much blurrier than the faceset's median,
    too dark or too bright, a crop unlike any other face's (a misdetection, an occluded face), or
    a crop that is missing. In frame order; a face with several problems gets them all in one reason."""
    faces = sorted(records, key=_frame_order)
    reasons: dict[int, list[str]] = defaultdict(list)
    sharp = [r.sharpness for r in faces if r.sharpness > 0]
    median_sharpness = float(np.median(sharp)) if sharp else 0.0
    hists = histograms(faces, cache)
    readable = hists.sum(axis=1) > 0
    score = np.zeros(len(faces), np.float32)
    limit = np.inf
    if readable.sum() >= MIN_FOR_HISTOGRAM:
        score[readable] = isolation(hists[readable])
        middle = float(np.median(score[readable]))
        spread = 1.4826 * float(np.median(np.abs(score[readable] - middle)))
        limit = max(ISOLATED_FLOOR, middle + ISOLATED_MADS * spread)
    for i, r in enumerate(faces):
        if not readable[i]:
            reasons[i].append("the crop image is missing or unreadable")
            continue
        if median_sharpness and r.sharpness < BLURRY * median_sharpness:
            reasons[i].append(f"blurry (sharpness {r.sharpness:.0f}, the faceset's median is {median_sharpness:.0f})")
        if r.brightness < DARK:
            reasons[i].append(f"too dark (brightness {r.brightness:.0f} of 255)")
        elif r.brightness > BRIGHT:
            reasons[i].append(f"too bright (brightness {r.brightness:.0f} of 255)")
        if score[i] > limit:
            reasons[i].append(f"unlike the other faces (histogram distance {score[i]:.2f} to its nearest, "
                              f"the limit for this faceset is {limit:.2f})")
    return [(faces[i].id, "; ".join(reasons[i])) for i in sorted(reasons)]
