"""Train stage: a faceset in memory and the augmented batches drawn from it.

Every batch item is one face under a random affine jitter (scale, rotation, shift, flip) that the
input and the target share, and the input alone also gets a smooth random grid warp. Reconstructing
an undistorted face from a distorted one forces the encoder to read features rather than copy
pixels; that is what lets the other identity's decoder make sense of the code.

Colour augmentation (a colour transfer toward a random destination face, an HSV jitter) comes
before the warps and is shared by input and target: it teaches the model that lighting is not
identity. Sampling runs on numpy and cv2 alone (uint8 arrays); torch is imported only to make the
tensors, so the batch workers start without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import cv2
import numpy as np

from engine.colour import METHODS as COLOUR_METHODS
from engine.colour import transfer_colour
from engine.geometry.hull import eyes_mouth_mask, feather, hull_mask

if TYPE_CHECKING:
    from torch import Tensor

COLOUR_TRANSFERS = ("none", *COLOUR_METHODS)
YAW_BIN_DEG = 10.0  # uniform_yaw bins: narrow enough to separate profiles, wide enough to hold faces


@dataclass
class FaceSamples:
    """One identity's aligned faces: crops (N,S,S,3) uint8 BGR, their landmarks (N,68,2) in crop
    pixels, when the faceset has drawn or learned masks every face's mask (N,S,S) uint8 0..255, and
    when known each face's yaw in degrees (N,)."""

    images: np.ndarray
    landmarks: np.ndarray
    masks: np.ndarray | None = None  # None: the landmark hull stands for the face
    yaws: np.ndarray | None = None  # None: uniform_yaw has nothing to balance and samples plainly

    def __post_init__(self) -> None:
        im, lm = self.images, self.landmarks
        if im.ndim != 4 or im.shape[3] != 3 or im.shape[1] != im.shape[2] or im.dtype != np.uint8:
            raise ValueError(f"images must be (N,S,S,3) uint8, got {im.shape} {im.dtype}")
        if lm.shape != (im.shape[0], 68, 2):
            raise ValueError(f"landmarks must be ({im.shape[0]},68,2), got {lm.shape}")
        if self.masks is not None and (self.masks.shape != im.shape[:3] or self.masks.dtype != np.uint8):
            raise ValueError(f"masks must be {im.shape[:3]} uint8, got {self.masks.shape} {self.masks.dtype}")
        if self.yaws is not None:
            self.yaws = np.asarray(self.yaws, np.float32)
            if self.yaws.shape != (im.shape[0],):
                raise ValueError(f"yaws must be ({im.shape[0]},), got {self.yaws.shape}")
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
    hsv_jitter: float = 0.0  # 0 = off; hue +-jitter of the colour wheel, saturation and value x(1 +- jitter)
    uniform_yaw: bool = False  # every yaw equally likely: profiles are rare in most footage


class Batch(NamedTuple):
    """One side's training batch, float32 0..1 tensors, all under the same per-item warp: inputs and
    targets (B,C,R,R) BGR or gray (C=1), masks (B,1,R,R) the feathered face mask, priority (B,1,R,R)
    the feathered eyes and mouth."""

    inputs: Tensor
    targets: Tensor
    masks: Tensor
    priority: Tensor


class Prepared(NamedTuple):
    """A faceset at the model resolution, ready to sample: what the batch workers share."""

    images: np.ndarray  # (N,R,R,3) uint8 BGR
    masks: np.ndarray  # (N,R,R) uint8: drawn, learned or hull
    priority: np.ndarray  # (N,R,R) uint8: eyes and mouth
    yaws: np.ndarray | None  # (N,) degrees


def prepare(samples: FaceSamples, resolution: int) -> Prepared:
    """Resize a faceset to the model resolution and draw its masks, once for every sample to come."""
    if len(samples) == 0:
        raise ValueError("a faceset with no faces cannot be sampled")
    r = resolution
    # shrink once with area averaging: sampling a 256 px crop straight down to 64 px would alias
    interp = cv2.INTER_AREA if samples.size >= r else cv2.INTER_CUBIC
    images = np.stack([cv2.resize(im, (r, r), interpolation=interp) for im in samples.images])
    # resize maps pixel centres, not pixel corners: x -> (x + 0.5) * r / S - 0.5
    landmarks = (samples.landmarks.astype(np.float64) + 0.5) * (r / samples.size) - 0.5

    def draw(fn) -> np.ndarray:  # drawn once per face and warped with it: drawing per sample costs more
        return np.stack([np.round(fn(lm, (r, r)) * 255).astype(np.uint8) for lm in landmarks])

    if samples.masks is not None:
        masks = np.stack([cv2.resize(m, (r, r), interpolation=interp) for m in samples.masks])
    else:
        masks = draw(hull_mask)
    return Prepared(images, masks, draw(eyes_mouth_mask), samples.yaws)


class BatchSampler:
    """Draws Batches of one faceset at the model resolution."""

    def __init__(self, samples: FaceSamples | Prepared, resolution: int, augmentation: Augmentation = Augmentation(),
                 seed: int | None = None, grayscale: bool = False, colour_transfer: str = "none",
                 colour_reference: np.ndarray | None = None, colour_reference_masks: np.ndarray | None = None) -> None:
        """`colour_reference` (M,R,R,3) uint8: the faces whose colours source samples take on (the
        destination's, at this resolution) when `colour_transfer` is not "none";
        `colour_reference_masks` (M,R,R) uint8 limits their statistics to the face."""
        if colour_transfer not in COLOUR_TRANSFERS:
            raise ValueError(f"unknown colour transfer {colour_transfer!r}; expected one of {', '.join(COLOUR_TRANSFERS)}")
        if colour_transfer != "none" and (colour_reference is None or len(colour_reference) == 0):
            raise ValueError("a colour transfer needs reference faces")
        self.faces = samples if isinstance(samples, Prepared) else prepare(samples, resolution)
        if self.faces.images.shape[1] != resolution:
            raise ValueError(f"prepared faces are {self.faces.images.shape[1]} px, not {resolution}")
        self.resolution = resolution
        self.aug = augmentation
        self.rng = np.random.default_rng(seed)
        self.grayscale = grayscale
        self.colour_transfer = colour_transfer
        self.colour_reference = colour_reference
        self.colour_reference_masks = colour_reference_masks
        self.mask_blur = max(1, resolution // 32)
        self._order = np.empty(0, np.int64)
        self._yaw_bins = _yaw_bins(self.faces.yaws)
        ys, xs = np.mgrid[0:resolution, 0:resolution].astype(np.float32)
        self._grid = np.stack([xs, ys], axis=-1)  # (r, r, 2) pixel coordinates x, y

    def _next_indices(self, n: int) -> np.ndarray:
        if self.aug.uniform_yaw and self._yaw_bins:
            # a bin first, then a face in it: a bin of 5 profiles comes up as often as one of 500 frontals
            bins = self.rng.integers(len(self._yaw_bins), size=n)
            return np.array([self.rng.choice(self._yaw_bins[b]) for b in bins], np.int64)
        # shuffled passes over the faceset: every face is seen once per pass, in random order
        while len(self._order) < n:
            self._order = np.concatenate([self._order, self.rng.permutation(len(self.faces.images))])
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

    def _transfer(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The face recoloured toward a random reference face (input and target alike)."""
        if self.colour_transfer == "none":
            return image
        k = int(self.rng.integers(len(self.colour_reference)))
        ref_mask = None if self.colour_reference_masks is None else self.colour_reference_masks[k]
        return transfer_colour(image, self.colour_reference[k], self.colour_transfer, mask, ref_mask)

    def _jitter(self, image: np.ndarray) -> np.ndarray:
        """The input's colours shifted at random in HSV. Only the input: the target keeps the true
        colours, so the network learns to ignore lighting shifts rather than to reproduce them."""
        j = self.aug.hsv_jitter
        if j <= 0:
            return image
        hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV).astype(np.float32)
        # OpenCV's 8-bit hue runs 0..180 for the whole wheel
        hsv[..., 0] = (hsv[..., 0] + self.rng.uniform(-j, j) * 180) % 180
        hsv[..., 1:] *= 1 + self.rng.uniform(-j, j, size=2).astype(np.float32)
        return cv2.cvtColor(np.clip(hsv + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_HSV2BGR)

    def sample_arrays(self, batch_size: int) -> dict[str, np.ndarray]:
        """One batch as uint8 arrays (what the workers send): inputs and targets (B,R,R,C),
        masks and priority (B,R,R), the masks already feathered."""
        r, c = self.resolution, 1 if self.grayscale else 3
        out = {"inputs": np.empty((batch_size, r, r, c), np.uint8), "targets": np.empty((batch_size, r, r, c), np.uint8),
               "masks": np.empty((batch_size, r, r), np.uint8), "priority": np.empty((batch_size, r, r), np.uint8)}
        for j, i in enumerate(self._next_indices(batch_size)):
            m = self._affine()
            image = self._transfer(self.faces.images[i], self.faces.masks[i])
            drawn_from = self._jitter(image)  # what the input is drawn from
            if self.grayscale:
                jittered = drawn_from is not image
                image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
                drawn_from = cv2.cvtColor(drawn_from, cv2.COLOR_BGR2GRAY) if jittered else image
            target = cv2.warpAffine(image, m, (r, r), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            out["targets"][j] = target.reshape(r, r, c)
            # a drawn or learned mask keeps hair, hands and glasses over the face out of the loss
            for key, maps_of in (("masks", self.faces.masks), ("priority", self.faces.priority)):
                warped = cv2.warpAffine(maps_of[i], m, (r, r), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
                soft = feather(warped.astype(np.float32) * np.float32(1 / 255), 0, self.mask_blur)
                out[key][j] = np.round(soft * 255).astype(np.uint8)
            if self.aug.random_warp:
                # one remap from the original: output pixel p reads the source at M^-1(p + offset(p))
                inv = cv2.invertAffineTransform(m)
                pts = self._grid + self._warp_offsets()
                maps = pts @ inv[:, :2].T.astype(np.float32) + inv[:, 2].astype(np.float32)
                warped = cv2.remap(drawn_from, maps[..., 0], maps[..., 1], cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REPLICATE)
                out["inputs"][j] = warped.reshape(r, r, c)
            elif drawn_from is image:
                out["inputs"][j] = out["targets"][j]
            else:
                warped = cv2.warpAffine(drawn_from, m, (r, r), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                out["inputs"][j] = warped.reshape(r, r, c)
        return out

    def sample(self, batch_size: int) -> Batch:
        return to_batch(self.sample_arrays(batch_size))


def to_batch(arrays: dict[str, np.ndarray]) -> Batch:
    """uint8 arrays from sample_arrays as a Batch of float32 tensors in 0..1 (always copies)."""
    import torch  # here, not at the top: the sampling workers never need torch

    def tensor(a: np.ndarray) -> Tensor:
        # NHWC memory viewed as NCHW is channels_last already: no copy before the conv layers
        # (converted in numpy: torch's elementwise kernels are ~50x slower on this permuted layout)
        return torch.from_numpy(a.astype(np.float32) * np.float32(1 / 255)).permute(0, 3, 1, 2)

    return Batch(tensor(arrays["inputs"]), tensor(arrays["targets"]), tensor(arrays["masks"][..., None]),
                 tensor(arrays["priority"][..., None]))


def _yaw_bins(yaws: np.ndarray | None) -> list[np.ndarray]:
    """Face indices grouped by yaw, YAW_BIN_DEG wide bins, the empty ones left out."""
    if yaws is None or len(yaws) == 0:
        return []
    keys = np.floor(yaws / YAW_BIN_DEG).astype(np.int64)
    return [np.flatnonzero(keys == k) for k in np.unique(keys)]
