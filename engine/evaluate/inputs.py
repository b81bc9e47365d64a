"""Stage piece: the clips a quality report reads, as one stream of (frame, destination, result, matte).

The destination is the untouched shot (a video). The result is what the user judges, in any of the
forms a swap comes in: a video (frame k is the destination's frame k), a folder of frame images
(`frame_%06d.png` names carry the destination's frame numbers, as the merge writes them; any other
sorted *.png / *.jpg are the destination's frames from 0 on), or a merge job's output folder
(merge.json): its merged frames/, else its face layer/ laid over the destination, else its
merged.mp4; matte/ there is the swapped region, the mask seams and flicker are measured in.

Frames stream one at a time (a long 4K shot never sits in memory). The result must be the
destination's size: a resized result would shift every landmark, so it is refused, not resized.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from ..errors import EngineError
from ..media.decode import VideoInfo, iter_frames, iter_frames_at, probe

MERGE_STATE = "merge.json"  # engine/merge/shot.py's STATE, the mark of a merge output folder
NUMBERED = re.compile(r"^frame_(\d+)\.(png|jpe?g)$", re.IGNORECASE)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class Shot:
    """The destination, the result and which frames of them a report reads."""

    destination: VideoInfo
    result_kind: str  # "video", "frames" or "merge"
    result_path: Path
    frames: tuple[int, ...]  # destination frame numbers with a result frame, increasing
    result_video: Path | None = None  # the result's frames come from this video (first frame = frames[0])
    images: dict | None = None  # frame -> result image file (a folder of frames, or a merge's frames/)
    layers: dict | None = None  # frame -> face layer file (a merge without frames/): laid over the destination
    mattes: dict | None = None  # frame -> matte file (a merge with matte/)

    @property
    def first(self) -> int:
        return self.frames[0]

    def pairs(self) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray | None]]:
        """(frame, destination BGR, result BGR, matte uint8 HxW or None), in frame order."""
        if self.result_video is not None:
            results = iter_frames(self.result_video, 0, len(self.frames))
            for (index, dst), (_, res) in zip(iter_frames_at(self.destination.path, self.frames), results):
                yield index, dst, self._checked(res, f"frame {index} of {self.result_video.name}"), \
                    self._matte(index)
            return
        for index, dst in iter_frames_at(self.destination.path, self.frames):
            if self.images is not None:
                res = self._checked(_read(self.images[index], cv2.IMREAD_COLOR), self.images[index].name)
            else:
                res = _over(dst, self._checked(_read(self.layers[index], cv2.IMREAD_UNCHANGED),
                                               self.layers[index].name))
            yield index, dst, res, self._matte(index)

    def _matte(self, index: int) -> np.ndarray | None:
        if not self.mattes or index not in self.mattes:
            return None
        matte = self._checked(_read(self.mattes[index], cv2.IMREAD_UNCHANGED), self.mattes[index].name)
        return matte if matte.ndim == 2 else matte[..., -1]  # grey, or a matte saved with alpha: the alpha

    def _checked(self, image: np.ndarray, what: str) -> np.ndarray:
        _same_size(self.destination, image.shape[1], image.shape[0], what)
        return image


def open_shot(destination: str | Path, result: str | Path, frames: int | None = None) -> Shot:
    """The destination video and the result in whichever form it comes; `frames` keeps the first N."""
    info = probe(Path(destination))
    path = Path(result)
    if not path.exists():
        raise EngineError("not_found", f"result not found: {path}")
    if path.is_dir() and (path / MERGE_STATE).is_file():
        shot = _merge_folder(info, path)
    elif path.is_dir():
        images = _image_folder(path)
        shot = Shot(info, "frames", path.resolve(), tuple(sorted(images)), images=images)
        _check_first_image(shot)
    else:
        shot = _video(info, path, "video", path, first=0)
    if not shot.frames:
        raise EngineError("bad_media", f"{path} holds no frames to evaluate")
    if shot.frames[-1] >= info.frames:
        raise EngineError("bad_media", f"the result {path.name} goes on to frame {shot.frames[-1]}, past the end of "
                                       f"the destination {info.path.name} ({info.frames} frames): they are not the "
                                       "same shot")
    if frames is not None:
        if frames < 1:
            raise EngineError("bad_request", f"'frames' must be at least 1, got {frames}")
        shot = _first(shot, frames)
    return shot


def _video(info: VideoInfo, path: Path, kind: str, shown: Path, first: int) -> Shot:
    """A result video whose frame 0 is the destination's frame `first`."""
    result = probe(path)
    _same_size(info, result.width, result.height, path.name)
    if first + result.frames > info.frames:
        raise EngineError("bad_media", f"the result {path.name} has {result.frames} frames from frame {first}, more "
                                       f"than the destination {info.path.name} ({info.frames}): not the same shot")
    return Shot(info, kind, shown.resolve(), tuple(range(first, first + result.frames)), result_video=result.path)


def _image_folder(folder: Path) -> dict[int, Path]:
    """frame -> image: frame_%06d names are destination frame numbers; other names, in order, from 0."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                   and not p.name.startswith("."))  # .frame_x.png.<pid>.tmp: a writer's temp file
    if not files:
        raise EngineError("bad_media", f"{folder} holds no frame images (*.png, *.jpg)")
    numbered = {p: NUMBERED.match(p.name) for p in files}
    if all(numbered.values()):
        return {int(m.group(1)): p for p, m in numbered.items()}
    return dict(enumerate(files))


def _merge_folder(info: VideoInfo, folder: Path) -> Shot:
    """A merge job's output: its merged frames, else its layer over the destination, else its video."""
    try:
        state = json.loads((folder / MERGE_STATE).read_text())
        first = int(state.get("first_frame", 0))
        done = state.get("done")
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise EngineError("bad_media", f"{folder / MERGE_STATE} cannot be read ({exc})") from None
    listed = {int(i) for i in done if isinstance(i, int)} if isinstance(done, list) else None

    def sequence(name: str) -> dict[int, Path] | None:
        if not (folder / name).is_dir():
            return None
        found = {int(m.group(1)): p for p in (folder / name).iterdir() if (m := NUMBERED.match(p.name))}
        # a file merge.json does not list as done (a half run's, the add-on's blank filler) is not the merge's
        return {i: p for i, p in found.items() if listed is None or i in listed}

    mattes = sequence("matte")
    for name in ("frames", "layer"):
        files = sequence(name)
        if files:
            shot = Shot(info, "merge", folder.resolve(), tuple(sorted(files)), mattes=mattes,
                        **{"images" if name == "frames" else "layers": files})
            _check_first_image(shot)
            return shot
    if (folder / "merged.mp4").is_file():
        return _with_mattes(_video(info, folder / "merged.mp4", "merge", folder, first), mattes)
    raise EngineError("bad_media", f"the merge folder {folder} has no merged frames, face layer or video to "
                                   "evaluate (merge with the outputs frames or layer)")


def _with_mattes(shot: Shot, mattes: dict | None) -> Shot:
    return Shot(shot.destination, shot.result_kind, shot.result_path, shot.frames, shot.result_video,
                shot.images, shot.layers, mattes)


def _first(shot: Shot, count: int) -> Shot:
    """The same shot cut to its first `count` result frames."""
    return Shot(shot.destination, shot.result_kind, shot.result_path, shot.frames[:count], shot.result_video,
                shot.images, shot.layers, shot.mattes)


def _check_first_image(shot: Shot) -> None:
    """A size mismatch is refused before the long pass starts, not at its first frame."""
    files = shot.images if shot.images is not None else shot.layers
    first = files[shot.frames[0]]
    image = _read(first, cv2.IMREAD_UNCHANGED)
    _same_size(shot.destination, image.shape[1], image.shape[0], first.name)


def _read(path: Path, flags: int) -> np.ndarray:
    image = cv2.imread(str(path), flags)
    if image is None:
        if not Path(path).is_file():
            raise EngineError("not_found", f"result frame not found: {path} (was it deleted during the report?)")
        raise EngineError("bad_media", f"cannot read {path}: not an image this engine can decode")
    return image


def _same_size(info: VideoInfo, width: int, height: int, what: str) -> None:
    if (width, height) != (info.width, info.height):
        raise EngineError("bad_media", f"{what} is {width}x{height} but the destination {info.path.name} is "
                                       f"{info.width}x{info.height}: evaluate the result at the shot's own size")


def _over(destination: np.ndarray, layer: np.ndarray) -> np.ndarray:
    """A straight-alpha BGRA face layer laid over the untouched frame (what Blender shows)."""
    if layer.ndim != 3 or layer.shape[2] != 4:
        raise EngineError("bad_media", "a face layer must be an RGBA image")
    alpha = layer[..., 3:].astype(np.float32) / 255.0
    out = destination.astype(np.float32) * (1.0 - alpha) + layer[..., :3].astype(np.float32) * alpha
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
