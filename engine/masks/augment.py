"""Masks stage: augmentation of labelled (crop, mask) pairs for training the segmentation network.

A few hand-drawn labels have to stand for a whole faceset, so every draw of a pair is distorted:
geometry (affine jitter and a smooth grid warp, applied to the image and its mask together, in one
remap), another labelled face's occluders pasted over this one (the concavities of its label, moved
at random; the mask loses what they cover), then the image alone: the background swapped for another
crop or a random texture, bright flares, blur, noise, JPEG re-compression and colour jitter. The
network then learns what a face's edge looks like instead of remembering the few backgrounds,
lighting conditions and occluders it saw.

Everything runs on arrays at the network's resolution, per sample, with cv2 (which releases the GIL,
so a prefetching thread overlaps it with the network's step).
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Any, Callable

import cv2
import numpy as np


@dataclass(frozen=True)
class MaskAugmentation:
    """Strength and frequency of each distortion (probabilities are per sample)."""

    # mild: the crops are aligned, so the network may rely on where the face sits; these ranges
    # cover the alignment's own wobble (pose, landmark noise) rather than arbitrary framings
    rotation_deg: float = 10.0
    scale: float = 0.08  # relative, either way
    shift: float = 0.05  # fraction of the side, either way
    flip: bool = True
    warp: float = 0.5  # probability of the grid warp
    warp_cells: int = 4
    warp_strength: float = 0.08  # std of an inner grid point's offset, in cell sides
    background: float = 0.25  # probability of swapping what lies outside the mask
    paste: float = 0.5  # probability of pasting another labelled face's occluders over this one
    flare: float = 0.1
    blur: float = 0.15
    noise: float = 0.15
    jpeg: float = 0.15
    colour: float = 0.6


class PairAugmenter:
    """Draws augmented (image, mask) batches from labelled crops already at the network's size.

    images (N,R,R,3) uint8 BGR, masks (N,R,R) float32 0..1 (1 = face).
    """

    def __init__(self, images: np.ndarray, masks: np.ndarray, aug: MaskAugmentation = MaskAugmentation(),
                 seed: int | None = None) -> None:
        if images.ndim != 4 or images.shape[3] != 3 or images.shape[1] != images.shape[2] or images.dtype != np.uint8:
            raise ValueError(f"images must be (N,R,R,3) uint8, got {images.shape} {images.dtype}")
        if masks.shape != images.shape[:3]:
            raise ValueError(f"masks must be {images.shape[:3]}, got {masks.shape}")
        if len(images) == 0:
            raise ValueError("no labelled faces to augment")
        self.images, self.masks = images, masks.astype(np.float32)
        self.aug = aug
        self.rng = np.random.default_rng(seed)
        self.r = r = images.shape[1]
        ys, xs = np.mgrid[0:r, 0:r].astype(np.float32)
        self._grid = np.stack([xs, ys], axis=-1)
        self._order = np.empty(0, np.int64)
        self.occluders = [occluders_of(m) for m in self.masks]
        self._with_occluders = [i for i, o in enumerate(self.occluders) if o.any()]

    def _next_indices(self, n: int) -> np.ndarray:
        # shuffled passes: every labelled face is seen once per pass
        while len(self._order) < n:
            self._order = np.concatenate([self._order, self.rng.permutation(len(self.images))])
        out, self._order = self._order[:n], self._order[n:]
        return out

    # -- geometry (image and mask together) ------------------------------------------------------

    def _maps(self) -> tuple[np.ndarray, np.ndarray]:
        """Remap tables for one random affine (+ flip) and, often, a smooth grid warp."""
        a, r, rng = self.aug, self.r, self.rng
        m = cv2.getRotationMatrix2D((r / 2 - 0.5, r / 2 - 0.5), rng.uniform(-a.rotation_deg, a.rotation_deg),
                                    1.0 + rng.uniform(-a.scale, a.scale))
        m[:, 2] += rng.uniform(-a.shift, a.shift, size=2) * r
        if a.flip and rng.random() < 0.5:
            m = np.array([[-1.0, 0.0, r - 1.0], [0.0, 1.0, 0.0]]) @ np.vstack([m, [0.0, 0.0, 1.0]])
        pts = self._grid
        if rng.random() < a.warp:
            n = a.warp_cells + 1
            offsets = np.zeros((n, n, 2), np.float32)
            offsets[1:-1, 1:-1] = rng.normal(0.0, a.warp_strength * r / a.warp_cells, size=(n - 2, n - 2, 2))
            pts = pts + cv2.resize(offsets, (r, r), interpolation=cv2.INTER_CUBIC)
        # output pixel p reads the source at M^-1(p + offset(p)): one resampling for both steps
        inv = cv2.invertAffineTransform(m).astype(np.float32)
        maps = pts @ inv[:, :2].T + inv[:, 2]
        return maps[..., 0], maps[..., 1]

    def _paste(self, img: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Another face's occluders (its label's concavities, with their pixels), moved at random,
        over this face; the mask loses what they cover. 20 labels then teach 20 x 20 occlusions."""
        rng, r = self.rng, self.r
        k = self._with_occluders[rng.integers(len(self._with_occluders))]
        m = np.float32([[1, 0, 0], [0, 1, 0]])
        if rng.random() < 0.5:
            m = np.float32([[-1, 0, r - 1], [0, 1, 0]])
        m[:, 2] += rng.uniform(-0.15, 0.15, size=2) * r
        occ = cv2.warpAffine(self.occluders[k], m, (r, r), flags=cv2.INTER_LINEAR)
        src = cv2.warpAffine(self.images[k], m, (r, r), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        a = occ[..., None]
        return img * (1 - a) + src.astype(np.float32) * a, mask * (1 - occ)

    # -- photometric (image only) ----------------------------------------------------------------

    def _texture(self) -> np.ndarray:
        """A random background: smooth coloured noise at a random scale, sometimes striped."""
        r, rng = self.r, self.rng
        cells = int(rng.integers(2, 16))
        small = rng.uniform(0, 255, size=(cells, cells, 3)).astype(np.float32)
        tex = cv2.resize(small, (r, r), interpolation=cv2.INTER_CUBIC)
        if rng.random() < 0.3:
            period = rng.uniform(4, r / 4)
            angle = rng.uniform(0, np.pi)
            stripes = np.sin((self._grid[..., 0] * np.cos(angle) + self._grid[..., 1] * np.sin(angle)) / period * 6.28)
            tex += (stripes * rng.uniform(20, 70))[..., None]
        return np.clip(tex, 0, 255)

    def _swap_background(self, img: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if self.rng.random() < 0.5:
            other = self.images[self.rng.integers(len(self.images))].astype(np.float32)
            bg = np.ascontiguousarray(other[:, ::-1]) if self.rng.random() < 0.5 else other
            bg = np.roll(bg, tuple(self.rng.integers(-self.r // 3, self.r // 3, size=2)), axis=(0, 1))
        else:
            bg = self._texture()
        m = mask[..., None]
        return img * m + bg * (1.0 - m)

    def _flares(self, img: np.ndarray) -> np.ndarray:
        r, rng = self.r, self.rng
        light = np.zeros((r, r), np.float32)
        for _ in range(int(rng.integers(1, 4))):
            cx, cy = rng.uniform(0, r, size=2)
            sigma = rng.uniform(0.05, 0.3) * r
            d2 = (self._grid[..., 0] - cx) ** 2 + (self._grid[..., 1] - cy) ** 2
            light += np.exp(-d2 / (2 * sigma * sigma)) * rng.uniform(80, 220)
        tint = rng.uniform(0.7, 1.0, size=3).astype(np.float32)
        return img + light[..., None] * tint

    def _blur(self, img: np.ndarray) -> np.ndarray:
        rng = self.rng
        if rng.random() < 0.5:
            return cv2.GaussianBlur(img, (0, 0), rng.uniform(0.6, 2.0) * self.r / 128)
        length = int(rng.integers(3, max(4, self.r // 14)))
        kernel = np.zeros((length, length), np.float32)
        kernel[length // 2, :] = 1.0 / length
        rot = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), rng.uniform(0, 180), 1.0)
        kernel = cv2.warpAffine(kernel, rot, (length, length))
        return cv2.filter2D(img, -1, kernel / max(kernel.sum(), 1e-6))

    def _colour(self, img: np.ndarray) -> np.ndarray:
        rng = self.rng
        gain = rng.uniform(0.75, 1.25, size=3).astype(np.float32)
        contrast = rng.uniform(0.7, 1.3)
        mean = img.mean()
        return (img - mean) * contrast + mean * rng.uniform(0.7, 1.3) + (gain - 1.0) * 80.0

    def _jpeg(self, img: np.ndarray) -> np.ndarray:
        ok, data = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(self.rng.integers(15, 70))])
        return cv2.imdecode(data, cv2.IMREAD_COLOR) if ok else img

    def pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """One augmented (image uint8 (R,R,3), mask float32 (R,R)) from labelled face `index`."""
        a, rng = self.aug, self.rng
        mx, my = self._maps()
        img = cv2.remap(self.images[index], mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        mask = cv2.remap(self.masks[index], mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        out = img.astype(np.float32)
        if self._with_occluders and rng.random() < a.paste:
            out, mask = self._paste(out, mask)
        if rng.random() < a.background:
            out = self._swap_background(out, mask)
        if rng.random() < a.colour:
            out = self._colour(out)
        if rng.random() < a.flare:
            out = self._flares(out)
        if rng.random() < a.blur:
            out = self._blur(out)
        if rng.random() < a.noise:
            out = out + rng.normal(0.0, rng.uniform(2, 12), size=out.shape).astype(np.float32)
        img = np.clip(out, 0, 255).astype(np.uint8)
        if rng.random() < a.jpeg:
            img = self._jpeg(img)
        return img, mask

    def batch(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(images (n,R,R,3) uint8, masks (n,R,R) float32)."""
        images = np.empty((n, self.r, self.r, 3), np.uint8)
        masks = np.empty((n, self.r, self.r), np.float32)
        for j, i in enumerate(self._next_indices(n)):
            images[j], masks[j] = self.pair(int(i))
        return images, masks


def occluders_of(mask: np.ndarray) -> np.ndarray:
    """What likely hides part of a labelled face: the concavities of its label (inside the convex
    hull of its largest region, outside the label), float32 0..1 with slightly softened edges."""
    binary = (mask >= 0.5).astype(np.uint8)
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return np.zeros(mask.shape, np.float32)
    hull = np.zeros_like(binary)
    cv2.fillConvexPoly(hull, cv2.convexHull(max(contours, key=cv2.contourArea)), 1)
    holes = cv2.erode(hull & (1 - binary), np.ones((3, 3), np.uint8))  # no slivers along the outline
    return cv2.GaussianBlur(holes.astype(np.float32), (3, 3), 0.7)


class Prefetcher:
    """Batches made ahead on a thread by `make()`, so the network rarely waits for augmentation."""

    def __init__(self, make: Callable[[], Any], depth: int = 2) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._failure: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, args=(make,), daemon=True, name="mask-augment")
        self._thread.start()

    def _run(self, make: Callable[[], Any]) -> None:
        try:
            while not self._stop.is_set():
                item = make()
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as e:  # handed to the consumer: a dead producer must not hang training
            self._failure.append(e)

    def next(self) -> Any:
        while True:
            if self._failure:
                raise self._failure[0]
            try:
                return self._queue.get(timeout=0.1)
            except queue.Empty:
                continue

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
