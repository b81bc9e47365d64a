"""Train stage: the pictures a training run leaves beside its model (preview grid, loss graph).

Both are plain BGR uint8 arrays drawn with cv2 and written as PNG atomically, so a reader (the
add-on asking `train.images`) never sees half a file while the loop rewrites them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from engine.errors import EngineError
from engine.files import atomic_write

TITLE_HEIGHT = 20
FONT = cv2.FONT_HERSHEY_SIMPLEX
BACKGROUND = (32, 32, 32)
TEXT = (230, 230, 230)
GRID = (70, 70, 70)
SRC_COLOUR = (80, 160, 255)  # orange: the source person
DST_COLOUR = (255, 190, 60)  # blue: the destination person
MARK_COLOUR = (120, 220, 120)


def _bgr(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"preview faces must be uint8, not {image.dtype}")
    if image.ndim == 2 or image.shape[-1] == 1:
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    return image


def preview_grid(columns: list[np.ndarray], titles: list[str]) -> np.ndarray:
    """Faces side by side: one column per kind (source, its reconstruction, ... the swap), one row per face.

    Each column is (N, R, R, 3 or 1) uint8; grayscale columns are shown as gray BGR so a grayscale
    model's preview sits in the same grid as colour inputs. A title row names the columns.
    """
    if not columns or len(columns) != len(titles):
        raise ValueError("preview_grid needs one title per column and at least one column")
    rows = min(len(c) for c in columns)
    size = max(int(c.shape[1]) for c in columns)
    cell_w = max(size, 48)  # a title needs room even at 16 px
    out = np.full((TITLE_HEIGHT + rows * size, cell_w * len(columns), 3), BACKGROUND, np.uint8)
    for j, (column, title) in enumerate(zip(columns, titles)):
        x = j * cell_w
        _put_text(out, title, (x + 3, TITLE_HEIGHT - 6), cell_w - 6)
        for i in range(rows):
            face = _bgr(column[i])
            if face.shape[0] != size or face.shape[1] != size:
                face = cv2.resize(face, (size, size), interpolation=cv2.INTER_LINEAR)
            y = TITLE_HEIGHT + i * size
            off = (cell_w - size) // 2
            out[y:y + size, x + off:x + off + size] = face
    return out


def _put_text(image: np.ndarray, text: str, origin: tuple[int, int], max_width: int,
              colour: tuple[int, int, int] = TEXT) -> None:
    scale = 0.4
    width = cv2.getTextSize(text, FONT, scale, 1)[0][0]
    if width > max_width > 0:
        scale *= max_width / width  # shrink rather than spill into the next column
    cv2.putText(image, text, origin, FONT, max(scale, 0.2), colour, 1, cv2.LINE_AA)


def loss_graph(iterations: Sequence[int], src_loss: Sequence[float], dst_loss: Sequence[float],
               phase_marks: list[tuple[int, str]], size: tuple[int, int] = (640, 240)) -> np.ndarray:
    """The source and destination loss against the iteration, on a log scale, phase changes marked.

    A log y axis because the loss falls fast early and slowly later: on a linear one the last
    hours of training, the part a user is watching, would be a flat line. `size` is (width, height).
    """
    width, height = int(size[0]), int(size[1])
    out = np.full((height, width, 3), BACKGROUND, np.uint8)
    left, right, top, bottom = 48, width - 8, 22, height - 20
    its = np.asarray(iterations, np.float64)
    curves = [(np.asarray(src_loss, np.float64), SRC_COLOUR, "src"),
              (np.asarray(dst_loss, np.float64), DST_COLOUR, "dst")]
    values = np.concatenate([c[0] for c in curves]) if len(its) else np.zeros(0)
    values = values[np.isfinite(values) & (values > 0)]
    if len(its) == 0 or len(values) == 0 or right <= left or bottom <= top:
        _put_text(out, "no loss recorded yet", (left, height // 2), width - left)
        return out
    lo, hi = math.log10(values.min()), math.log10(values.max())
    if hi - lo < 1e-3:
        lo, hi = lo - 0.05, hi + 0.05  # a flat curve still gets an axis
    x0, x1 = float(its.min()), float(its.max())
    if x1 <= x0:
        x1 = x0 + 1

    def to_px(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        px = left + (x - x0) / (x1 - x0) * (right - left)
        py = bottom - (np.log10(np.clip(y, 10 ** lo, None)) - lo) / (hi - lo) * (bottom - top)
        return np.stack([px, py], axis=-1)

    # y grid: a few loss values spread evenly in log space
    for k in range(5):
        v = 10 ** (lo + (hi - lo) * k / 4)
        y = int(round(bottom - (bottom - top) * k / 4))
        cv2.line(out, (left, y), (right, y), GRID, 1)
        _put_text(out, f"{v:.3g}", (2, y + 4), left - 4)
    cv2.rectangle(out, (left, top), (right, bottom), GRID, 1)
    _put_text(out, f"{int(x0)}", (left, height - 5), 80)
    last = f"{int(x1)}"
    _put_text(out, last, (right - 7 * len(last), height - 5), 80)
    for at, name in phase_marks:
        if x0 <= at <= x1:
            x = int(round(left + (at - x0) / (x1 - x0) * (right - left)))
            cv2.line(out, (x, top), (x, bottom), MARK_COLOUR, 1)
            _put_text(out, name, (min(x + 2, right - 40), top + 12), 60, MARK_COLOUR)
    for loss, colour, _ in curves:
        n = min(len(its), len(loss))
        keep = np.isfinite(loss[:n]) & (loss[:n] > 0)
        points = to_px(its[:n][keep], loss[:n][keep])
        if len(points) > 1:
            cv2.polylines(out, [np.round(points).astype(np.int32)], False, colour, 1, cv2.LINE_AA)
        elif len(points) == 1:
            cv2.circle(out, tuple(int(v) for v in np.round(points[0])), 2, colour, -1)
    # legend: the latest value of each side, what a user reads first
    x = left + 4
    for loss, colour, name in curves:
        finite = loss[np.isfinite(loss)]
        label = f"{name} {finite[-1]:.4f}" if len(finite) else name
        cv2.line(out, (x, 12), (x + 14, 12), colour, 2)
        _put_text(out, label, (x + 18, 16), 120)
        x += 24 + cv2.getTextSize(label, FONT, 0.4, 1)[0][0] + 12
    return out


def write_png(path: Path, image: np.ndarray) -> None:
    """Encode and write atomically: the add-on may read the file while the loop rewrites it."""
    ok, data = cv2.imencode(".png", np.ascontiguousarray(image))
    if not ok:
        raise EngineError("io_error", f"could not encode {Path(path).name} as PNG")
    atomic_write(Path(path), data.tobytes(), sync_folder=False)
