"""Shared piece: PNG encoding of full-frame images that are zero outside one box (a face layer, a matte).

A 1080p RGBA face layer holds a face of ~450x450 px and transparent zeros everywhere else;
cv2.imencode compresses all 8 MB of it (~150 ms). Here the deflate stream is spliced together
instead: the zero runs before and after the box come from cached deflate fragments (each ends
with a full flush, so it is byte aligned and refers to nothing before it, and fragments can
follow each other in any order), only the box's rows go through zlib, and the Adler-32 of the
zero runs is computed arithmetically. Box rows use PNG's Up filter: a face is smooth from row to
row, so the differences compress better and faster than the pixels, and zlib's run-length
strategy codes them ~20% faster than its default level 1 at about the same size. Tall boxes are
cut into strips compressed on several threads (zlib lets go of the GIL), each strip again ending
with a full flush.
"""

from __future__ import annotations

import os
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from ..errors import EngineError
from ..files import atomic_write

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOUR_TYPE = {1: 0, 3: 2, 4: 6}  # channels -> PNG colour type: grey, RGB, RGBA
_ADLER_MOD = 65521
_FILTER_UP = 2
_MAX_FRAGMENT_BITS = 26  # zero runs up to 64 MiB per fragment: an 8K RGBA frame is 128 MiB, two or three
_STRIP_BYTES = 1 << 19  # a strip is worth a thread from ~0.5 MB of rows on (a 1080p face box is ~3.5 MB)
_STRIPS = max(1, min(4, os.cpu_count() or 1))
# made here, not on first use: two encodes racing to make it (the merge job writes PNGs on two
# threads) would each make one; an executor starts its threads only when work comes
_pool = ThreadPoolExecutor(max_workers=max(1, _STRIPS - 1), thread_name_prefix="swapline-png-strip")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


@lru_cache(maxsize=None)
def _zero_fragment(bits: int) -> bytes:
    """Raw deflate of 2**bits zero bytes, not final, ending byte-aligned and independent (full flush)."""
    c = zlib.compressobj(1, zlib.DEFLATED, -15)
    zeros = bytes(1 << min(bits, 20))
    out = []
    for _ in range(1 << max(0, bits - 20)):
        out.append(c.compress(zeros))
    out.append(c.flush(zlib.Z_FULL_FLUSH))
    return b"".join(out)


def _zero_run(n: int) -> list[bytes]:
    """Deflate fragments that expand to n zero bytes: one cached fragment per set bit of n."""
    parts = []
    bit = 0
    while n:
        if bit >= _MAX_FRAGMENT_BITS:
            parts.extend([_zero_fragment(_MAX_FRAGMENT_BITS)] * (n >> _MAX_FRAGMENT_BITS))
            break
        if n & 1:
            parts.append(_zero_fragment(bit))
        n >>= 1
        bit += 1
    return parts


def _adler_zeros(adler: int, n: int) -> int:
    """Adler-32 after n more zero bytes: the sum a stays, the sum of sums b grows by n*a."""
    a, b = adler & 0xFFFF, adler >> 16
    return (((b + n * a) % _ADLER_MOD) << 16) | a


def _adler_combine(adler: int, strip_adler: int, n: int) -> int:
    """Adler-32 of A+B from that of A and that of B alone (n bytes): zlib's adler32_combine."""
    a1, b1 = adler & 0xFFFF, adler >> 16
    a2, b2 = strip_adler & 0xFFFF, strip_adler >> 16
    a = (a1 + a2 - 1) % _ADLER_MOD
    b = (b1 + b2 + n * (a1 - 1)) % _ADLER_MOD
    return (b << 16) | a


def _deflate_strip(data: memoryview) -> tuple[bytes, int]:
    """One strip as an independent, byte-aligned deflate fragment, with its own Adler-32."""
    c = zlib.compressobj(1, zlib.DEFLATED, -15, 8, zlib.Z_RLE)
    return c.compress(data) + c.flush(zlib.Z_FULL_FLUSH), zlib.adler32(data)


def _deflate_rows(rows: np.ndarray, adler: int) -> tuple[list[bytes], int]:
    """The box's filtered rows as fragments, strips on threads when they are big enough to pay."""
    n = min(_STRIPS, max(1, rows.nbytes // _STRIP_BYTES), len(rows))
    strips = [rows[i * len(rows) // n:(i + 1) * len(rows) // n] for i in range(n)]
    if n == 1:
        results = [_deflate_strip(rows.data)]
    else:
        futures = [_pool.submit(_deflate_strip, strip.data) for strip in strips[1:]]
        results = [_deflate_strip(strips[0].data)] + [f.result() for f in futures]
    for strip, (_, strip_adler) in zip(strips, results):
        adler = _adler_combine(adler, strip_adler, strip.nbytes)
    return [fragment for fragment, _ in results], adler


def _check(height: int, width: int, box, roi: np.ndarray) -> tuple[int, int, int, int, int]:
    def fail(message: str) -> None:
        raise EngineError("bad_request", f"sparse PNG: {message}")

    if not all(isinstance(v, (int, np.integer)) for v in (height, width)) or height <= 0 or width <= 0:
        fail(f"image size must be positive integers, not {width}x{height}")
    if not isinstance(roi, np.ndarray) or roi.dtype != np.uint8:
        fail("the box's pixels must be a uint8 numpy array")
    channels = 1 if roi.ndim == 2 else roi.shape[2] if roi.ndim == 3 else 0
    if channels not in _COLOUR_TYPE:
        fail(f"the box's pixels must be (h, w) grey, (h, w, 3) BGR or (h, w, 4) BGRA, not shape {roi.shape}")
    try:
        x0, y0, x1, y1 = (int(v) for v in box)
    except (TypeError, ValueError):
        fail(f"box must be (x0, y0, x1, y1), not {box!r}")
    if x1 <= x0 or y1 <= y0:  # an empty box: a frame with no face
        if roi.size:
            fail(f"box {box} is empty but its pixels are not")
        return 0, 0, 0, 0, channels
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        fail(f"box {(x0, y0, x1, y1)} is outside the {width}x{height} image")
    if roi.shape[:2] != (y1 - y0, x1 - x0):
        fail(f"the box's pixels are {roi.shape[1]}x{roi.shape[0]}, the box is {x1 - x0}x{y1 - y0}")
    return x0, y0, x1, y1, channels


def _file_order(roi: np.ndarray, channels: int) -> np.ndarray:
    """OpenCV's BGR(A) as the file's RGB(A)."""
    if channels == 4:
        return cv2.cvtColor(roi, cv2.COLOR_BGRA2RGBA)
    if channels == 3:
        return cv2.cvtColor(roi, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(roi)


def encode_sparse_png(height: int, width: int, box, roi: np.ndarray) -> bytes:
    """A height x width PNG whose pixels are `roi` inside box (x0, y0, x1, y1; x1, y1 exclusive) and
    zero elsewhere. roi: (h, w) grey, (h, w, 3) BGR or (h, w, 4) BGRA uint8 (straight alpha).
    An empty box (x1 <= x0 or y1 <= y0, with an empty roi) gives an all-zero image."""
    x0, y0, x1, y1, channels = _check(height, width, box, roi)
    stride = width * channels + 1  # a PNG row: its filter byte, then the pixels
    header = struct.pack(">IIBBBBB", width, height, 8, _COLOUR_TYPE[channels], 0, 0, 0)
    parts = [b"\x78\x01"]  # zlib header: deflate, 32K window, fastest
    adler = 1
    if x1 <= x0:
        parts += _zero_run(height * stride)
        adler = _adler_zeros(adler, height * stride)
    else:
        # the box's rows, each from its Up filter byte to the end of the image row; the zeros
        # before the first of them (rows above, and the row's left margin) come as fragments
        rows = np.zeros((y1 - y0, stride), np.uint8)
        rows[:, 0] = _FILTER_UP
        pixels = rows[:, 1 + x0 * channels:1 + x1 * channels].reshape(y1 - y0, x1 - x0, channels)
        pixels[...] = _file_order(roi, channels).reshape(pixels.shape)
        # Up: each row minus the one above (the row above the box is zero: its first row stays)
        np.subtract(pixels[1:], pixels[:-1].copy(), out=pixels[1:])
        lead = y0 * stride
        parts += _zero_run(lead)
        adler = _adler_zeros(adler, lead)
        fragments, adler = _deflate_rows(rows, adler)
        parts += fragments
        tail = (height - y1) * stride
        parts += _zero_run(tail)
        adler = _adler_zeros(adler, tail)
    parts.append(zlib.compressobj(1, zlib.DEFLATED, -15).flush())  # an empty final block ends the stream
    parts.append(struct.pack(">I", adler))
    return b"".join((_SIGNATURE, _chunk(b"IHDR", header), _chunk(b"IDAT", b"".join(parts)), _chunk(b"IEND", b"")))


def write_sparse_png(path: Path, height: int, width: int, box, roi: np.ndarray) -> None:
    """encode_sparse_png, written atomically."""
    atomic_write(Path(path), encode_sparse_png(height, width, box, roi))
