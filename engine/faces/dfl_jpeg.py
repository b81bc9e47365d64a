"""Faces stage, format layer: DeepFaceLab's aligned JPGs, whose metadata is a pickle in an APP15 segment.

Written from the format's description, not from DeepFaceLab's code. The metadata comes from user
files, so it is unpickled by `PlainDataUnpickler`, which builds plain data and numpy arrays of
numbers and nothing else: a pickle naming any other global is refused before anything runs.
"""

from __future__ import annotations

import io
import pickle
import pickletools
import struct
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..errors import EngineError
from ..files import atomic_write
from ..geometry.align import invert, transform_points, umeyama

try:  # numpy 2 moved the array pickling helpers; files from either era name one or the other
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct as _np_reconstruct

APP15 = 0xEF
MAX_PAYLOAD = 0xFFFF - 2  # one JPEG segment; DeepFaceLab never splits its metadata over several
MAX_FILE_BYTES = 64 << 20  # an aligned face is a few hundred KB; anything this big is not one
_MAX_DEPTH, _MAX_NODES = 16, 200_000  # shared references can make a small pickle a huge tree
_NUMPY_ARRAY_MODULES = ("numpy.core.multiarray", "numpy._core.multiarray")
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # markers without a length field (TEM, RST0-7)


class _ArrayTypeName:
    """Stands for `numpy.ndarray` in a pickle: arrays are built only through `_reconstruct`, never by
    calling the type, which would allocate whatever shape the file asks for."""

    def __init__(self, *args) -> None:
        raise pickle.UnpicklingError("numpy.ndarray may only be named as an array's type")


class _CheckedArray(np.ndarray):
    """What a pickled array is while loading: its state is checked before numpy fills it."""

    def __setstate__(self, state) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise pickle.UnpicklingError("malformed array state")
        dtype, data = state[-3], state[-1]
        if not isinstance(dtype, np.dtype) or dtype.hasobject:
            raise pickle.UnpicklingError("an array of Python objects is not plain data")
        if not isinstance(data, (bytes, bytearray)):
            raise pickle.UnpicklingError("array data is not bytes")
        super().__setstate__(state)


def _reconstruct(cls, shape, dtype) -> np.ndarray:
    # numpy always pickles an array as _reconstruct(ndarray, (0,), b'b') followed by its state
    if cls is not _ArrayTypeName or tuple(shape) != (0,):
        raise pickle.UnpicklingError("unexpected array construction")
    return _np_reconstruct(_CheckedArray, (0,), dtype)


class PlainDataUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, tuples, strings, bytes, numbers and numpy arrays of numbers only."""

    def __init__(self, file, source: Path) -> None:
        super().__init__(file)
        self._source = source

    def find_class(self, module: str, name: str):
        if module in _NUMPY_ARRAY_MODULES and name == "_reconstruct":
            return _reconstruct
        if module == "numpy" and name == "ndarray":
            return _ArrayTypeName
        if module == "numpy" and name == "dtype":
            return np.dtype
        raise EngineError("bad_faceset", f"{self._source}: its metadata asks for {module}.{name}, which is not "
                                         "plain data; refusing to load it")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent references are not plain data")


def _plain(value, budget: list[int], depth: int = 0):
    """The loaded value with arrays as plain ndarrays; refuses anything else, deep nesting or huge trees."""
    budget[0] -= 1
    if budget[0] < 0 or depth > _MAX_DEPTH:
        raise pickle.UnpicklingError("metadata is nested too deeply or too large")
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise pickle.UnpicklingError("an array of Python objects is not plain data")
        return value.view(np.ndarray)
    if isinstance(value, dict):
        return {_plain(k, budget, depth + 1): _plain(v, budget, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v, budget, depth + 1) for v in value)
    raise pickle.UnpicklingError(f"{type(value).__name__} is not plain data")


def load_metadata(payload: bytes, source: Path) -> dict:
    """The metadata dict of an APP15 payload, or a `bad_faceset` error naming the file."""
    if len(payload) > MAX_PAYLOAD:
        raise EngineError("bad_faceset", f"{source}: its metadata is {len(payload)} bytes, more than one segment holds")
    try:
        for op, arg, _ in pickletools.genops(payload):  # reads opcodes, runs nothing
            # the unpickler grows its memo to whatever index a PUT names: 8 bytes could claim gigabytes
            if op.name in ("PUT", "BINPUT", "LONG_BINPUT") and int(arg) > len(payload):
                raise pickle.UnpicklingError(f"memo index {arg} is out of all proportion")
        meta = _plain(PlainDataUnpickler(io.BytesIO(payload), source).load(), [_MAX_NODES])
    except EngineError:
        raise
    except Exception as exc:  # a damaged pickle fails in many ways (EOF, bad opcode, wrong types)
        raise EngineError("bad_faceset", f"{source}: its metadata cannot be loaded ({type(exc).__name__}: {exc})") from None
    if not isinstance(meta, dict):
        raise EngineError("bad_faceset", f"{source}: its metadata is a {type(meta).__name__}, not a dict")
    return meta


# JPEG segments ---------------------------------------------------------------------------------

def _segments(data: bytes, source: Path):
    """(marker, start, end) of each header segment up to the image data; end excludes the segment."""
    if data[:2] != b"\xff\xd8":
        raise EngineError("bad_faceset", f"{source}: not a JPEG file")
    pos = 2
    while pos + 2 <= len(data):
        if data[pos] != 0xFF:
            raise EngineError("bad_faceset", f"{source}: damaged JPEG header at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        if marker in (0xD9, 0xDA) or pos + 4 > len(data):  # end of image / start of scan: headers are over
            return
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        if length < 2 or pos + 2 + length > len(data):
            raise EngineError("bad_faceset", f"{source}: a JPEG segment at byte {pos} runs past the end of the file")
        yield marker, pos, pos + 2 + length
        pos += 2 + length


def app15_payload(data: bytes, source: Path) -> bytes | None:
    for marker, start, end in _segments(data, source):
        if marker == APP15:
            return data[start + 4:end]
    return None


def embed_metadata(jpeg: bytes, metadata: dict, source: Path = Path("<jpeg>")) -> bytes:
    """The JPEG with its APP15 segments replaced by one holding `metadata` (plain types only)."""
    payload = pickle.dumps(plain_metadata(metadata), protocol=4)
    if len(payload) > MAX_PAYLOAD:
        raise EngineError("bad_request", f"{source}: metadata of {len(payload)} bytes does not fit a JPEG segment")
    segments = list(_segments(jpeg, source))
    # JFIF's APP0 must stay first, so the metadata goes after it
    after = segments[0][2] if segments and segments[0][0] == 0xE0 else 2
    out, pos = [jpeg[:after], struct.pack(">BBH", 0xFF, APP15, len(payload) + 2), payload], after
    for marker, start, end in segments:
        if marker == APP15 and start >= after:
            out.append(jpeg[pos:start])
            pos = end
    out.append(jpeg[pos:])
    return b"".join(out)


def plain_metadata(value):
    """Metadata as lists and Python numbers, the form DeepFaceLab's own writer uses."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: plain_metadata(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_metadata(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    raise EngineError("bad_request", f"{type(value).__name__} cannot go into DeepFaceLab metadata")


# Whole files -----------------------------------------------------------------------------------

def read_dfl_jpeg(path: Path) -> tuple[np.ndarray, dict]:
    """The BGR image and metadata dict of a DeepFaceLab aligned JPG."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise EngineError("bad_faceset", f"{path}: {path.stat().st_size} bytes is too large for an aligned face")
        data = path.read_bytes()
    except OSError as exc:
        raise EngineError("io_error", f"could not read {path}: {exc.strerror or exc}") from exc
    payload = app15_payload(data, path)
    if payload is None:
        raise EngineError("bad_faceset", f"{path}: carries no DeepFaceLab metadata (no APP15 segment)")
    meta = load_metadata(payload, path)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise EngineError("bad_faceset", f"{path}: the image itself cannot be decoded")
    return image, meta


def write_dfl_jpeg(path: Path, image: np.ndarray, metadata: dict, quality: int = 95) -> None:
    """Encode `image` as a JPG carrying `metadata` in APP15, written atomically."""
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise EngineError("io_error", f"could not encode {path}")
    atomic_write(Path(path), embed_metadata(buf.tobytes(), metadata, Path(path)))


# The metadata's meaning ------------------------------------------------------------------------

@dataclass
class DflFace:
    """The geometry and masks one aligned JPG describes, checked for shape and type."""

    face_type: str
    landmarks: np.ndarray  # (68, 2) in the aligned image
    source_landmarks: np.ndarray | None  # (68, 2) in the source frame
    image_to_face_mat: np.ndarray | None  # (2, 3) source frame -> aligned image
    source_filename: str | None = None
    source_rect: tuple[float, float, float, float] | None = None
    eyebrows_expand_mod: float | None = None
    xseg_mask: bytes | None = None  # an encoded image
    polys: list[tuple[bool, np.ndarray]] = field(default_factory=list)  # (include, points in the aligned image)

    def source_geometry(self) -> tuple[np.ndarray, np.ndarray]:
        """(68 landmarks in the source frame, source frame -> aligned image transform).

        Without a transform the aligned image itself stands in for the frame, unless both sets of
        landmarks are there to recover it.
        """
        mat = self.image_to_face_mat
        if mat is None and self.source_landmarks is not None:
            mat = umeyama(self.source_landmarks, self.landmarks)
        if mat is None:
            return self.landmarks, np.array([[1.0, 0, 0], [0, 1.0, 0]])
        if self.source_landmarks is not None:
            return self.source_landmarks, mat
        return transform_points(invert(mat), self.landmarks), mat


def _numbers(value, what: str, source: Path, rows: int | None = 68, cols: int = 2) -> np.ndarray:
    """A (rows, cols) float array from a list of rows or an array; anything else is a `bad_faceset`."""
    ok = isinstance(value, np.ndarray) or isinstance(value, (list, tuple)) and all(
        isinstance(r, (list, tuple, np.ndarray)) and len(r) == cols for r in value)
    arr = np.asarray(value) if ok else np.zeros(0)
    if arr.ndim != 2 or arr.shape[1] != cols or (rows is not None and arr.shape[0] != rows) \
            or arr.dtype.kind not in "iuf":
        raise EngineError("bad_faceset", f"{source}: {what} is not ({rows or 'N'}, {cols}) numbers")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise EngineError("bad_faceset", f"{source}: {what} holds non-finite numbers")
    return arr


def _transform(value, source: Path) -> np.ndarray:
    mat = _numbers(value, "image_to_face_mat", source, rows=2, cols=3)
    if not 1e-6 < abs(np.linalg.det(mat[:, :2])) < 1e6:
        raise EngineError("bad_faceset", f"{source}: image_to_face_mat is degenerate")
    return mat


def _polys(value, source: Path) -> list[tuple[bool, np.ndarray]]:
    if isinstance(value, dict):
        value = value.get("polys", [])
    if not isinstance(value, (list, tuple)):
        raise EngineError("bad_faceset", f"{source}: seg_ie_polys is neither a dict nor a list")
    out = []
    for poly in value[:1000]:
        kind, pts = (poly.get("type"), poly.get("pts")) if isinstance(poly, dict) else (
            poly if isinstance(poly, (list, tuple)) and len(poly) == 2 else (None, None))
        if kind not in (0, 1) or pts is None:
            raise EngineError("bad_faceset", f"{source}: a mask polygon is malformed")
        empty = isinstance(pts, (list, tuple)) and not pts
        pts = np.zeros((0, 2)) if empty else _numbers(pts, "a mask polygon", source, rows=None)
        out.append((kind == 1, pts))
    return out


def dfl_face(meta: dict, source: Path) -> DflFace:
    """The checked contents of a metadata dict; anything out of shape is a `bad_faceset`."""
    try:
        return _dfl_face(meta, source)
    except (TypeError, ValueError, AttributeError, OverflowError) as exc:  # metadata of the wrong make
        raise EngineError("bad_faceset", f"{source}: its metadata is malformed ({type(exc).__name__}: {exc})") from None


def _dfl_face(meta: dict, source: Path) -> DflFace:
    ftype = meta.get("face_type")
    if not isinstance(ftype, str):
        raise EngineError("bad_faceset", f"{source}: its metadata names no face type")
    if meta.get("landmarks") is None:
        raise EngineError("bad_faceset", f"{source}: its metadata holds no landmarks")
    mat, rect = meta.get("image_to_face_mat"), meta.get("source_rect")
    if rect is not None:
        rect = np.asarray(rect).ravel() if isinstance(rect, (list, tuple, np.ndarray)) else np.zeros(0)
        if rect.shape != (4,) or rect.dtype.kind not in "iuf":
            raise EngineError("bad_faceset", f"{source}: source_rect is not 4 numbers")
    mask = meta.get("xseg_mask")
    if isinstance(mask, np.ndarray) and mask.dtype == np.uint8:
        mask = mask.tobytes()  # some versions keep cv2.imencode's buffer as it came
    brow = meta.get("eyebrows_expand_mod")
    return DflFace(
        face_type=ftype,
        landmarks=_numbers(meta["landmarks"], "landmarks", source),
        source_landmarks=None if meta.get("source_landmarks") is None else _numbers(
            meta["source_landmarks"], "source_landmarks", source),
        image_to_face_mat=None if mat is None else _transform(mat, source),
        source_filename=meta["source_filename"] if isinstance(meta.get("source_filename"), str) else None,
        source_rect=None if rect is None else tuple(float(v) for v in rect),
        eyebrows_expand_mod=float(brow) if isinstance(brow, (int, float)) and not isinstance(brow, bool)
        and np.isfinite(brow) else None,
        xseg_mask=mask if isinstance(mask, bytes) and mask else None,
        polys=_polys(meta["seg_ie_polys"], source) if meta.get("seg_ie_polys") is not None else [],
    )
