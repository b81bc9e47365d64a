"""Shared piece: recolour one face crop toward another's colours (training augmentation, merging).

Every method moves the source's colour distribution toward the target's, with the statistics read
only where the masks say (the face, not the background). They differ in how much of the
distribution they match:

- rct: Reinhard: per-channel mean and std in Lab (cheap, keeps the source's colour correlations);
- lct: linear: mean and covariance in RGB, through the covariances' symmetric square roots;
- mkl: Monge-Kantorovich linear: the covariance match that moves colours least (the optimal
  transport map between two Gaussians);
- idt: iterative distribution transfer: 1-D histogram matching along random orthonormal bases,
  repeated, matches the whole 3-D distribution, not only its first two moments;
- sot: sliced optimal transport: small steps along many random directions' 1-D transport maps;
- hist: per-channel histogram matching (each BGR channel's whole 1-D distribution, exactly, through
  a 256-entry table; ignores the correlations between channels).

Cost per call (2-core CPU shared with other work, so rough), 64 px / 128 px crops: rct 1 / 4 ms,
lct and mkl 1 / 3 ms, idt 8 / 25 ms, sot 9 / 21 ms: cheap enough to recolour every training sample
in the batch workers. At merge size (256 px) rct reads its statistics from a subsample of at most
_STAT_PIXELS pixels (~3 ms instead of ~19), and hist is ~1 ms.
"""

from __future__ import annotations

import cv2
import numpy as np

METHODS = ("rct", "lct", "mkl", "idt", "sot", "hist")

_EPS = 1e-6
# the random directions of idt and sot come from a fixed seed: the same pair always gives the same result
_SEED = 1234
_QUANTILES = 64  # 1-D matching through this many quantiles: smooth, and sorting a few thousand values is cheap
_GRID = 256  # the 1-D maps are tabulated at this many values
_MAX_POINTS = 4096  # statistics of at most this many pixels per image (a 128 px crop has 16k)
_STAT_PIXELS = 16384  # rct: mean and spread from a regular subsample of about this many pixels


def transfer_colour(source: np.ndarray, target: np.ndarray, method: str, source_mask: np.ndarray | None = None,
                    target_mask: np.ndarray | None = None) -> np.ndarray:
    """`source` (H,W,3) uint8 BGR recoloured toward `target`'s colours (any size); uint8 BGR (H,W,3).

    Masks (H,W) in 0..1 (or uint8 0..255) weigh which pixels count in each image's statistics; the
    whole source is recoloured. A mask that covers next to nothing falls back to the whole image.
    """
    if method not in METHODS:
        raise ValueError(f"unknown colour transfer {method!r}; expected one of {', '.join(METHODS)}")
    for name, image in (("source", source), ("target", target)):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"{name} must be (H,W,3) uint8, got {image.shape} {image.dtype}")
    if method == "hist":
        return hist_match(source, target, source_mask, target_mask)
    sw = _weights(source_mask, source.shape[:2])
    tw = _weights(target_mask, target.shape[:2])
    if method == "rct":
        return _rct(source, target, sw, tw)
    src = source.reshape(-1, 3).astype(np.float32) * np.float32(1 / 255)
    tgt = target.reshape(-1, 3).astype(np.float32) * np.float32(1 / 255)
    if method in ("lct", "mkl"):
        out = _linear(src, tgt, sw, tw, method)
    elif method == "idt":
        out = _idt(src, tgt, sw, tw)
    else:
        out = _sot(src, tgt, sw, tw)
    return _to_uint8(out.reshape(source.shape))


def _weights(mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    if mask is None:
        return None
    if mask.shape != shape:
        raise ValueError(f"mask must be {shape}, got {mask.shape}")
    w = mask.reshape(-1).astype(np.float32)
    if mask.dtype == np.uint8:
        w *= np.float32(1 / 255)
    return w if w.sum() >= 16 else None  # a handful of pixels says nothing about a face's colour


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8)


def _moments(x: np.ndarray, w: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean (3,) and covariance (3,3) of points x (N,3)."""
    if w is None:
        mean = x.mean(0)
        d = x - mean
        return mean, d.T @ d / len(x)
    total = w.sum()
    mean = (x * w[:, None]).sum(0) / total
    d = x - mean
    return mean, (d * w[:, None]).T @ d / total


def _rct(source: np.ndarray, target: np.ndarray, sw: np.ndarray | None, tw: np.ndarray | None) -> np.ndarray:
    # Lab separates lightness from the two colour axes, so matching them one at a time is meaningful.
    # Only the source is converted whole (it is recoloured); the statistics of both come from the
    # same regular subsample, so a pair of equal images still maps to itself.
    x = source.astype(np.float32)
    x *= np.float32(1 / 255)
    src = cv2.cvtColor(x, cv2.COLOR_BGR2LAB)
    ss, ts = _stride(source.shape[:2]), _stride(target.shape[:2])
    tgt = np.ascontiguousarray(target[::ts, ::ts]).astype(np.float32)
    tgt *= np.float32(1 / 255)
    tgt = cv2.cvtColor(tgt, cv2.COLOR_BGR2LAB)
    sm, sv = _mean_var(np.ascontiguousarray(src[::ss, ::ss]).reshape(-1, 3), _sub(sw, source.shape[:2], ss))
    tm, tv = _mean_var(tgt.reshape(-1, 3), _sub(tw, target.shape[:2], ts))
    scale = np.sqrt(tv + _EPS) / np.sqrt(sv + _EPS)
    affine = np.hstack([np.diag(scale), (tm - sm * scale)[:, None]]).astype(np.float32)
    out = cv2.transform(src, affine)  # one pass; numpy's broadcasting costs ~4x more here
    # Lab lightness outside 0..100 converts back to garbage
    out = cv2.min(cv2.max(out, (0.0, -1e9, -1e9, 0.0)), (100.0, 1e9, 1e9, 0.0))
    # cv2 rounds and saturates while it scales: _to_uint8's three numpy passes cost ~1 ms at 256 px
    return cv2.multiply(cv2.cvtColor(out, cv2.COLOR_LAB2BGR), 255.0, dtype=cv2.CV_8U)


def _stride(shape: tuple[int, ...]) -> int:
    """Step of the regular subsample that leaves about _STAT_PIXELS pixels (1 for training's small crops)."""
    return max(1, int(round(np.sqrt(shape[0] * shape[1] / _STAT_PIXELS))))


def _sub(w: np.ndarray | None, shape: tuple[int, ...], step: int) -> np.ndarray | None:
    if w is None or step == 1:
        return w
    w = w.reshape(shape)[::step, ::step].reshape(-1)
    return w if w.sum() >= 4 else None


def _mean_var(x: np.ndarray, w: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean and variance (3,) of points x (N,3); centred before squaring, so float32 is enough."""
    xt = np.ascontiguousarray(x.T)  # (3, N): the dot products below run along contiguous rows
    w = np.full(xt.shape[1], 1.0, np.float32) if w is None else w.astype(np.float32, copy=False)
    total = float(w.sum())
    mean = xt @ w / total
    d = xt - mean[:, None]
    d *= d
    return mean.astype(np.float64), (d @ w / total).astype(np.float64)


def _sqrtm(c: np.ndarray, inverse: bool = False, floor: float = _EPS) -> np.ndarray:
    """Symmetric square root (or its inverse) of a covariance matrix; tiny eigenvalues are floored
    so a flat channel (a grey face) does not blow up."""
    vals, vecs = np.linalg.eigh(c.astype(np.float64))
    vals = np.maximum(vals, floor)
    root = np.sqrt(vals)
    return (vecs * (1 / root if inverse else root)) @ vecs.T


def _linear(src: np.ndarray, tgt: np.ndarray, sw: np.ndarray | None, tw: np.ndarray | None,
            method: str) -> np.ndarray:
    sm, sc = _moments(src, sw)
    tm, tc = _moments(tgt, tw)
    if method == "lct":
        a = _sqrtm(tc) @ _sqrtm(sc, inverse=True)
    else:
        # the Gaussian optimal transport map: Cs^-1/2 (Cs^1/2 Ct Cs^1/2)^1/2 Cs^-1/2
        s_half, s_inv = _sqrtm(sc), _sqrtm(sc, inverse=True)
        a = s_inv @ _sqrtm(s_half @ tc @ s_half, floor=_EPS**2) @ s_inv  # eigenvalues squared: floor too
    return (src - sm) @ a.T.astype(np.float32) + tm.astype(np.float32)


def _subset(x: np.ndarray, w: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """The pixels that count for a distribution (mask over one half), at most _MAX_POINTS of them."""
    if w is not None:
        x = x[w > 0.5] if (w > 0.5).sum() >= 16 else x
    if len(x) > _MAX_POINTS:
        x = x[rng.choice(len(x), _MAX_POINTS, replace=False)]
    return x


def _rotations(rng: np.random.Generator, count: int) -> list[np.ndarray]:
    """Random orthonormal 3x3 bases (QR of a Gaussian matrix, signs fixed so they are uniform)."""
    out = []
    for _ in range(count):
        q, r = np.linalg.qr(rng.normal(size=(3, 3)))
        out.append((q * np.sign(np.diag(r))).astype(np.float32))
    return out


def _quantiles(points: np.ndarray) -> np.ndarray:
    """_QUANTILES evenly spaced quantiles of each column (nearest rank: a sort and a gather)."""
    ranks = np.round(np.linspace(0, len(points) - 1, _QUANTILES)).astype(np.int64)
    return np.sort(points, axis=0)[ranks]


def _match_1d(values: np.ndarray, source_points: np.ndarray, target_points: np.ndarray) -> np.ndarray:
    """Monotone 1-D transport of `values` (columns) from source_points' distribution to target_points'.

    The k-th quantile of the source goes to the k-th of the target, values in between are
    interpolated, and values beyond the ends move with the end. The map is tabulated on an even grid
    and applied by index arithmetic: np.interp's search over every pixel costs ~10x more."""
    sq, tq = _quantiles(source_points), _quantiles(target_points)
    lo, hi = sq[0], sq[-1]
    span = np.maximum(hi - lo, 1e-6)
    grid = lo + span * np.linspace(0, 1, _GRID)[:, None]
    # equal quantiles (a flat region) leave the map undefined there; np.interp needs xs increasing
    ramp = np.arange(_QUANTILES) * 1e-7
    table = np.stack([np.interp(grid[:, k], sq[:, k] + ramp, tq[:, k]) for k in range(values.shape[1])], 1)
    table = table.astype(np.float32)
    clipped = np.clip(values, lo.astype(np.float32), hi.astype(np.float32))
    t = (clipped - lo.astype(np.float32)) * ((_GRID - 1) / span).astype(np.float32)
    i = np.minimum(t.astype(np.int32), _GRID - 2)
    f = t - i
    flat = (i * values.shape[1] + np.arange(values.shape[1], dtype=np.int32)).ravel()
    below = np.take(table, flat).reshape(values.shape)
    above = np.take(table, flat + values.shape[1]).reshape(values.shape)
    return below + (above - below) * f + (values - clipped)


def _idt(src: np.ndarray, tgt: np.ndarray, sw: np.ndarray | None, tw: np.ndarray | None,
         iterations: int = 6) -> np.ndarray:
    rng = np.random.default_rng(_SEED)
    tpoints = _subset(tgt, tw, rng)
    keep = np.flatnonzero(sw > 0.5) if sw is not None and (sw > 0.5).sum() >= 16 else None
    x = src.copy()
    for rot in _rotations(rng, iterations):
        spoints = _subset(x if keep is None else x[keep], None, rng)
        x = _match_1d(x @ rot, spoints @ rot, tpoints @ rot) @ rot.T
    return x


def _sot(src: np.ndarray, tgt: np.ndarray, sw: np.ndarray | None, tw: np.ndarray | None,
         iterations: int = 6, directions: int = 4, step: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(_SEED)
    tpoints = _subset(tgt, tw, rng)
    keep = np.flatnonzero(sw > 0.5) if sw is not None and (sw > 0.5).sum() >= 16 else None
    x = src.copy()
    for _ in range(iterations):
        d = rng.normal(size=(3, directions)).astype(np.float32)
        d /= np.linalg.norm(d, axis=0, keepdims=True)
        spoints = _subset(x if keep is None else x[keep], None, rng)
        proj = x @ d
        moved = _match_1d(proj, spoints @ d, tpoints @ d)
        # the mean of the per-direction moves, scaled by the dimension: a descent step on the sliced
        # Wasserstein distance, which k directions in 3-D each see a third of
        x = x + step * (3 / directions) * (moved - proj) @ d.T
    return x


def hist_match(source: np.ndarray, target: np.ndarray, source_mask: np.ndarray | None = None,
               target_mask: np.ndarray | None = None, threshold: int = 255) -> np.ndarray:
    """`source` (H,W,3) uint8 with each channel's histogram matched to `target`'s; uint8 (H,W,3).

    A source value at quantile q of its channel becomes the target's value at quantile
    q * threshold / 255: at 255 the histograms match; lower thresholds leave the top of the target's
    distribution unused, so a face matched to a frame with blown-out highlights does not take them on
    (the meaning of DeepFaceLab's hist-match threshold). Masks choose the pixels counted (those over
    one half; a mask of next to nothing counts everything); the whole source is remapped, through one
    256-entry table per channel.
    """
    for name, image in (("source", source), ("target", target)):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"{name} must be (H,W,3) uint8, got {image.shape} {image.dtype}")
    if not 0 <= threshold <= 255:
        raise ValueError(f"threshold must be 0..255, got {threshold}")
    sw = _weights(source_mask, source.shape[:2])
    tw = _weights(target_mask, target.shape[:2])
    s_hists, t_hists = _histograms(source, sw), _histograms(target, tw)
    values = np.arange(256, dtype=np.float64)
    tables = []
    for s_hist, t_hist in zip(s_hists, t_hists):
        # each value sits at the middle of its own step of the cumulative histogram, so equal
        # histograms give the identity and a single-valued channel maps to the target's median
        s_in, t_in = s_hist > 0, t_hist > 0
        s_q = ((np.cumsum(s_hist) - s_hist / 2) / s_hist.sum())[s_in] * (threshold / 255)
        t_q = ((np.cumsum(t_hist) - t_hist / 2) / t_hist.sum())[t_in]
        mapped = np.interp(s_q, t_q, values[t_in])
        # values the counted pixels do not have (outside the mask, between two that are counted) are
        # interpolated between their neighbours' new values, and beyond the ends move with the end
        known = values[s_in]
        table = np.interp(values, known, mapped)
        table[values < known[0]] += values[values < known[0]] - known[0]
        table[values > known[-1]] += values[values > known[-1]] - known[-1]
        tables.append(table)
    lut = np.clip(np.stack(tables, 1) + 0.5, 0, 255).astype(np.uint8)  # (256, 3)
    return cv2.LUT(source, lut.reshape(256, 1, 3))


def _histograms(image: np.ndarray, w: np.ndarray | None) -> list[np.ndarray]:
    """Per-channel 256-bin histograms (float64) of the pixels whose weight is over one half (all when
    w is None): cv2.calcHist takes only a binary mask, and is ~3x faster than a weighted bincount."""
    mask = None if w is None else (w.reshape(image.shape[:2]) > 0.5).astype(np.uint8)
    if mask is not None and mask.sum() < 16:
        mask = None
    return [cv2.calcHist([image], [c], mask, [256], [0, 256]).reshape(-1).astype(np.float64) for c in range(3)]
