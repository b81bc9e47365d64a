"""Service layer: a model and its destination faceset packed for another engine, and unpacked there.

`bundle.pack {model, faceset, video, mask_model?}` -> {"path": workspace-relative zip, "hash", "size"}:
the client downloads it with files.read. `bundle.unpack {path}` (workspace-relative, typically the
media path media.upload returned for the zip) -> {"model", "faceset", "faces", "media", "mask_model"}:
the names to merge with on this engine. Both read and write the workspace only (engine/bundle.py).
"""

from __future__ import annotations

from pathlib import Path

from .bundle import pack_bundle, unpack_bundle
from .errors import EngineError
from .paths import client_path
from .service_args import arg as _arg


def bundle_pack(service, args: dict) -> dict:
    ws = service.workspace
    video = client_path(ws.root, _arg(args, "video", str), confine=service.confine, what="video")
    if not video.is_file():
        raise EngineError("not_found", f"no video {video.name} on this engine")
    path = pack_bundle(ws, _arg(args, "model", str), _arg(args, "faceset", str), video,
                       _arg(args, "mask_model", str, optional=True))
    return {"path": str(path.relative_to(ws.root)), "hash": path.stem, "size": path.stat().st_size}


def bundle_unpack(service, args: dict) -> dict:
    ws = service.workspace
    # a bundle is read from the workspace only (an upload lands there), on a local engine too
    path = client_path(ws.root, _arg(args, "path", str), confine=True, what="path")
    if not path.is_file():
        raise EngineError("not_found", f"no bundle {Path(_arg(args, 'path', str)).name} in this workspace")
    return unpack_bundle(ws, path)


BUNDLE_OPS: dict = {"bundle.pack": bundle_pack, "bundle.unpack": bundle_unpack}
