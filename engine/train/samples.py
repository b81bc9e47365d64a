"""Train stage: a faceset in memory and the augmented batches drawn from it.

Every batch item is one face under a random affine jitter (scale, rotation, shift, flip) that the
input and the target share, and the input alone also gets a smooth random grid warp. Reconstructing
an undistorted face from a distorted one forces the encoder to read features rather than copy
pixels; that is what lets the other identity's decoder make sense of the code.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import Tensor

from engine.geometry.hull import feather, hull_mask


@dataclass
class FaceSamples:
    """One identity's aligned faces: crops (N,S,S,3) uint8 BGR, their landmarks (N,68,2) in crop
    pixels and, when the faceset has drawn or learned masks, every face's mask (N,S,S) uint8 0..255."""

    images: np.ndarray
    landmarks: np.ndarray
    masks: np.ndarray | None = None  # None: the landmark hull stands for the face

    def __post_init__(self) -> None:
        im, lm = self.images, self.landmarks
        if im.ndim != 4 or im.shape[3] != 3 or im.shape[1] != im.shape[2] or im.dtype != np.uint8:
            raise ValueError(f"images must be (N,S,S,3) uint8, got {im.shape} {im.dtype}")
        if lm.shape != (im.shape[0], 68, 2):
            raise ValueError(f"landmarks must be ({im.shape[0]},68,2), got {lm.shape}")
        if self.masks is not None and (self.masks.shape != im.shape[:3] or self.masks.dtype != np.uint8):
            raise ValueError(f"masks must be {im.shape[:3]} uint8, got {self.masks.shape} {self.masks.dtype}")
        self.landmarks = np.asarray(lm, np.float32)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def size(self) -> int:
        return int(self.images.shape[1])


@dataclass(frozen=True)
class Augmentation:
    """How hard batches are distorted; the defaults are DeepFaceLab's usual ranges."""

    rotation_deg: float = 10.0
    scale: float = 0.05  # relative, either way
    shift: float = 0.05  # fraction of the side, either way
    flip: bool = True
    random_warp: bool = True
    warp_cells: int = 4  # the warp grid has warp_cells x warp_cells cells over the face
    warp_strength: float = 0.12  # std of an inner grid point's offset, in cell sides


class BatchSampler:
    """Draws (warped_input, target, target_mask) batches of one faceset at the model resolution."""

    def __init__(self, samples: FaceSamples, resolution: int, augmentation: Augmentation = Augmentation(),
                 seed: int | None = None) -> None:
        if len(samples) == 0:
            raise ValueError("a faceset with no faces cannot be sampled")
        self.resolution = resolution
        self.aug = augmentation
        self.rng = np.random.default_rng(seed)
        # shrink once with area averaging: sampling a 256 px crop straight down to 64 px would alias
        r = resolution
        interp = cv2.INTER_AREA if samples.size >= r else cv2.INTER_CUBIC
        self.images = np.stack([cv2.resize(im, (r, r), interpolation=interp) for im in samples.images])
        # resize maps pixel centres, not pixel corners: x -> (x + 0.5) * r / S - 0.5
        self.landmarks = (samples.landmarks.astype(np.float64) + 0.5) * (r / samples.size) - 0.5
        if samples.masks is not None:
            self.masks = np.stack([cv2.resize(m, (r, r), interpolation=interp) for m in samples.masks])
        else:  # the hull once per face, warped with it each time: drawing it per sample costs more
            self.masks = np.stack([np.round(hull_mask(lm, (r, r)) * 255).astype(np.uint8) for lm in self.landmarks])
        self.mask_blur = max(1, r // 32)
        self._order = np.empty(0, np.int64)
        ys, xs = np.mgrid[0:r, 0:r].astype(np.float32)
        self._grid = np.stack([xs, ys], axis=-1)  # (r, r, 2) pixel coordinates x, y

    def _next_indices(self, n: int) -> np.ndarray:
        # shuffled passes over the faceset: every face is seen once per pass, in random order
        while len(self._order) < n:
            self._order = np.concatenate([self._order, self.rng.permutation(len(self.images))])
        out, self._order = self._order[:n], self._order[n:]
        return out

    def _affine(self) -> np.ndarray:
        """A random 2x3 transform of the face about the crop centre (with a mirror half the time)."""
        a, r = self.aug, self.resolution
        angle = self.rng.uniform(-a.rotation_deg, a.rotation_deg)
        scale = 1.0 + self.rng.uniform(-a.scale, a.scale)
        m = cv2.getRotationMatrix2D((r / 2, r / 2), angle, scale)
        m[:, 2] += self.rng.uniform(-a.shift, a.shift, size=2) * r
        if a.flip and self.rng.random() < 0.5:
            # pixel centres sit on integers in OpenCV, so the mirror of x is (r - 1) - x
            m = np.array([[-1.0, 0.0, r - 1.0], [0.0, 1.0, 0.0]]) @ np.vstack([m, [0.0, 0.0, 1.0]])
        return m

    def _warp_offsets(self) -> np.ndarray:
        """A smooth random displacement field (r, r, 2): a jittered coarse grid, interpolated."""
        a, r = self.aug, self.resolution
        n = a.warp_cells + 1
        offsets = np.zeros((n, n, 2), np.float32)
        # the border points stay put so the warp never pulls the background into the frame edge
        offsets[1:-1, 1:-1] = self.rng.normal(0.0, a.warp_strength * r / a.warp_cells, size=(n - 2, n - 2, 2))
        return cv2.resize(offsets, (r, r), interpolation=cv2.INTER_CUBIC)

    def sample(self, batch_size: int) -> tuple[Tensor, Tensor, Tensor]:
        """(warped_input (B,3,R,R), target (B,3,R,R), target_mask (B,1,R,R)), float32 in 0..1, BGR."""
        r = self.resolution
        inputs = np.empty((batch_size, r, r, 3), np.uint8)
        targets = np.empty_like(inputs)
        masks = np.empty((batch_size, r, r), np.float32)
        for j, i in enumerate(self._next_indices(batch_size)):
            m = self._affine()
            image = self.images[i]
            targets[j] = cv2.warpAffine(image, m, (r, r), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            # a drawn or learned mask keeps hair, hands and glasses over the face out of the loss
            face = cv2.warpAffine(self.masks[i], m, (r, r), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            masks[j] = feather(face.astype(np.float32) * np.float32(1 / 255), 0, self.mask_blur)
            if self.aug.random_warp:
                # one remap from the original: output pixel p reads the source at M^-1(p + offset(p))
                inv = cv2.invertAffineTransform(m)
                pts = self._grid + self._warp_offsets()
                maps = pts @ inv[:, :2].T.astype(np.float32) + inv[:, 2].astype(np.float32)
                inputs[j] = cv2.remap(image, maps[..., 0], maps[..., 1], cv2.INTER_LINEAR,
                                      borderMode=cv2.BORDER_REPLICATE)
            else:
                inputs[j] = targets[j]
        return _to_tensor(inputs), _to_tensor(targets), torch.from_numpy(masks)[:, None]


def _to_tensor(images: np.ndarray) -> Tensor:
    # NHWC memory viewed as NCHW is channels_last already: no copy before the conv layers
    # (converted in numpy: torch's elementwise kernels are ~50x slower on this permuted layout)
    return torch.from_numpy(images.astype(np.float32) * np.float32(1 / 255)).permute(0, 3, 1, 2)
