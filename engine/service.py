"""Service layer: the engine server, answering bridge requests and broadcasting job events."""

from __future__ import annotations

import logging
import platform
import socket
import ssl
from pathlib import Path

from bridge import PROTOCOL_VERSION, BridgeError, BridgeServer, Session

from . import __version__
from .errors import EngineError
from .faces import sort as face_sort
from .facesets import FaceRecord
from .jobs import JobRunner
from .mediastore import MediaStore
from .paths import ALWAYS_CONFINED, JOB_PATHS, OP_PATHS, confine_paths
from .recipes import STAGES
from .service_args import arg as _arg, ints as _ints
from .service_bundle import BUNDLE_OPS
from .service_files import FILE_OPS, HashCache
from .service_masks import MASK_OPS
from .service_merge import MERGE_OPS
from .service_train import TRAIN_OPS
from .workspace import Workspace

log = logging.getLogger("swapline.engine")


def describe_device() -> str:
    """The compute device in words, for the add-on's engine list."""
    import torch  # the engine needs it for every job; loading it here keeps first jobs prompt

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return f"{props.name} ({props.total_memory / 2**30:.0f} GiB)"
    return f"CPU: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


class EngineService:
    """One workspace, one job queue, one bridge server."""

    def __init__(self, workspace: Path, host: str = "127.0.0.1", port: int = 0, token: str | None = None,
                 tls: ssl.SSLContext | None = None, confine: bool | None = None) -> None:
        self.workspace = Workspace(workspace)
        # A remote engine (one listening beyond loopback) keeps client paths inside its workspace.
        self.confine = (host not in ("127.0.0.1", "::1", "localhost")) if confine is None else confine
        self.info = {
            "name": f"swapline@{socket.gethostname()}", "version": __version__, "device": describe_device(),
            "workspace": str(self.workspace.root), "protocol": PROTOCOL_VERSION, "confined": self.confine,
            "tls": tls is not None,
        }
        self.server = BridgeServer(self.handle, host=host, port=port, token=token, engine_info=self.info, tls=tls)
        self.jobs = JobRunner(self.workspace, STAGES, on_change=self._job_changed)
        self.histograms = face_sort.HistogramCache()  # paging through a histogram sort reads crops once
        self.media = MediaStore(self.workspace.root)
        self.hashes = HashCache()  # files.manifest hashes a folder of renders once, then what changed

    def load(self) -> dict:
        """How busy this engine is, for the add-on's engine list: jobs running and waiting."""
        return {"running": self.jobs.count("running", "paused"), "queued": self.jobs.count("queued")}

    def _job_changed(self, job: dict) -> None:
        self.server.broadcast({"event": "job", "job": job})

    def start(self) -> int:
        return self.server.start()

    def serve_forever(self) -> None:
        self.server.serve_forever()

    def stop(self) -> None:
        self.server.stop()
        if getattr(self, "previews", None) is not None:  # made by the first merge.preview
            self.previews.close()
        self.jobs.shutdown()
        self.workspace.close()

    def handle(self, op: str, args: dict, session: Session):
        args = args or {}
        try:
            args = self.client_paths(op, args)
            if op == "engine.info":
                return {**self.info, "load": self.load()}
            if op == "job.start":
                return self.jobs.submit(_arg(args, "kind", str), _arg(args, "params", dict))
            if op == "job.get":
                return self.jobs.get(_arg(args, "id", str))
            if op == "job.list":
                return {"jobs": self.jobs.list()}
            if op == "job.cancel":
                return self.jobs.cancel(_arg(args, "id", str))
            if op in FACESET_OPS:
                return FACESET_OPS[op](self.workspace, args, self.histograms)
            if op in MASK_OPS:
                return MASK_OPS[op](self.workspace, args)
            if op in TRAIN_OPS:
                return TRAIN_OPS[op](self.workspace, args, self.jobs)
            if op in MERGE_OPS:
                return MERGE_OPS[op](self, args)
            if op in FILE_OPS:
                return FILE_OPS[op](self, args)
            if op in BUNDLE_OPS:
                return BUNDLE_OPS[op](self, args)
        except EngineError as exc:
            raise BridgeError(exc.code, exc.message) from None
        raise BridgeError("unknown_op", f"this engine has no operation {op!r}")

    def client_paths(self, op: str, args: dict) -> dict:
        """The request with every path argument (of the op, or of the job it starts) made absolute:
        relative paths are workspace-relative, and on a confined engine all must stay inside the
        workspace (engine/paths.py). An op or job kind missing from the tables is refused when confined."""
        if not isinstance(args, dict):
            return args  # the op refuses it with its own message
        root, confine = self.workspace.root, self.confine or op in ALWAYS_CONFINED
        keys = OP_PATHS.get(op)
        if keys is None:
            if self.confine and op in self._ops():
                raise EngineError("forbidden_path", f"{op} has not declared its path arguments, so a confined "
                                                    "engine does not run it")
            return args  # an unknown op is answered as one below
        args = confine_paths(root, args, keys, confine=confine) if keys else args
        if op == "job.start" and isinstance(args.get("params"), dict) and isinstance(args.get("kind"), str):
            kind = args["kind"]
            if kind not in JOB_PATHS:
                if self.confine and kind in self.jobs.stages:
                    raise EngineError("forbidden_path", f"job kind {kind!r} has not declared its path "
                                                        "parameters, so a confined engine does not run it")
                return args
            return {**args, "params": confine_paths(root, args["params"], JOB_PATHS[kind], confine=confine)}
        return args

    @staticmethod
    def _ops() -> set[str]:
        return {*FACESET_OPS, *MASK_OPS, *TRAIN_OPS, *MERGE_OPS, *FILE_OPS, *BUNDLE_OPS}


# Faceset operations: quick, synchronous reads and edits of the catalog -------------------------


def _face_summary(r: FaceRecord) -> dict:
    return {"id": r.id, "media_id": r.media_id, "frame": r.frame, "track": r.track, "image": str(r.image),
            "yaw": r.yaw, "pitch": r.pitch, "roll": r.roll, "sharpness": r.sharpness,
            "brightness": r.brightness, "score": r.score}


def faceset_list(ws: Workspace, args: dict, cache: face_sort.HistogramCache | None = None) -> dict:
    return {"facesets": ws.facesets.list()}


def faceset_faces(ws: Workspace, args: dict, cache: face_sort.HistogramCache | None = None) -> dict:
    name = _arg(args, "faceset", str)
    everyone = _arg(args, "everyone", bool, False, optional=True)
    key = _arg(args, "sort", str, "frame", optional=True)
    limit = _arg(args, "limit", int, 200, optional=True)
    offset = _arg(args, "offset", int, 0, optional=True)
    track = _arg(args, "track", int, optional=True)
    if limit < 0 or offset < 0:
        raise EngineError("bad_request", "'limit' and 'offset' must not be negative")
    if track is not None:  # a track is shown whether or not it is the chosen person, to choose it
        records = [r for r in ws.facesets.faces(name, everyone=True) if r.track == track]
    else:
        records = ws.facesets.faces(name, everyone=everyone)
    if key in ("sharpness", "brightness"):
        records = face_sort.with_quality(records)
    page = face_sort.sort_faces(records, key, cache)[offset:offset + limit]
    return {"faces": [_face_summary(r) for r in page], "total": len(records)}


def faceset_tracks(ws: Workspace, args: dict, cache: face_sort.HistogramCache | None = None) -> dict:
    return {"tracks": ws.facesets.tracks(_arg(args, "faceset", str))}


def faceset_choose(ws: Workspace, args: dict, cache: face_sort.HistogramCache | None = None) -> dict:
    name = _arg(args, "faceset", str)
    if "tracks" not in args:
        raise EngineError("bad_request", "argument 'tracks' must be a list of integers, or nil for the default")
    ws.facesets.choose_people(name, _ints(args, "tracks", optional=True))
    return {"tracks": ws.facesets.tracks(name)}


def faceset_delete(ws: Workspace, args: dict, cache: face_sort.HistogramCache | None = None) -> dict:
    name = _arg(args, "faceset", str)
    return {"deleted": ws.facesets.delete(name, _ints(args, "faces"))}


def faceset_best(ws: Workspace, args: dict, cache: face_sort.HistogramCache | None = None) -> dict:
    name = _arg(args, "faceset", str)
    count = _arg(args, "count", int)
    if count < 1:
        raise EngineError("bad_request", "argument 'count' must be at least 1")
    records = face_sort.with_quality(ws.facesets.faces(name))
    keep = face_sort.best_faces(records, count, cache=cache)
    kept = set(keep)
    return {"keep": keep, "drop": [r.id for r in records if r.id not in kept]}


def faceset_outliers(ws: Workspace, args: dict, cache: face_sort.HistogramCache | None = None) -> dict:
    records = face_sort.with_quality(ws.facesets.faces(_arg(args, "faceset", str)))
    return {"faces": [{"id": face_id, "reason": reason} for face_id, reason in face_sort.outliers(records, cache)]}


FACESET_OPS = {
    "faceset.list": faceset_list, "faceset.faces": faceset_faces, "faceset.tracks": faceset_tracks,
    "faceset.choose": faceset_choose, "faceset.delete": faceset_delete, "faceset.best": faceset_best,
    "faceset.outliers": faceset_outliers,
}
