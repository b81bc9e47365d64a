"""Service layer: the engine's command line (`python -m engine ...`): serve, extract, train, export-dfm,
merge, evaluate, bench, faceset, mask."""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import sys
import time
from pathlib import Path

from .cli_bench import add_bench_parser, run_bench
from .cli_evaluate import add_evaluate_parser, run_evaluate
from .cli_farm import add_farm_parser, run_farm
from .cli_masks import add_mask_parser, run_mask
from .cli_merge import add_merge_parser, run_merge
from .cli_train import add_train_parser, run_train
from .errors import EngineError


def _is_first_process() -> bool:
    """False in the other processes torchrun starts (RANK > 0): one progress bar and one result line."""
    return int(os.environ.get("RANK", "0") or 0) == 0


def _progress_printer(stream=sys.stderr):
    """A one-line progress bar for jobs run from a terminal (under torchrun, rank 0's alone)."""
    quiet = not _is_first_process()
    def show(job: dict) -> None:
        if quiet:
            return
        width = 30
        filled = int(job["progress"] * width)
        eta = f" ETA {job['eta']:.0f}s" if job.get("eta") else ""
        stats = job.get("stats") or {}
        extra = f" it {stats['iteration']} loss {stats['loss']:.4f}" if stats.get("loss") is not None else ""
        if job["state"] == "paused":
            extra += " (paused)"
        stream.write(f"\r[{'#' * filled}{' ' * (width - filled)}] {job['progress'] * 100:5.1f}% {job['message'][:50]:50}{extra}{eta}")
        if job["state"] not in ("queued", "running", "paused"):
            stream.write("\n")
        stream.flush()
    return show


def run_job(workspace: str, kind: str, params: dict) -> int:
    """Run one job in-process with a progress bar; Ctrl-C cancels it cleanly (training saves first)."""
    from .jobs import JobRunner
    from .recipes import STAGES
    from .workspace import Workspace

    ws = Workspace(workspace)
    runner = JobRunner(ws, STAGES, on_change=_progress_printer(), recover=False)
    job = runner.submit(kind, params)
    try:
        job = runner.wait(job["id"])
    except KeyboardInterrupt:
        runner.cancel(job["id"])
        job = runner.wait(job["id"])
    runner.shutdown()
    if job["state"] == "done":
        if _is_first_process():
            print(json.dumps(job["result"]))
        return 0
    err = job["error"] or {"code": job["state"], "message": job["message"]}
    print(f"{kind} {job['state']}: {err['message']} [{err['code']}]", file=sys.stderr)
    return 1 if job["state"] == "failed" else 130


def _tls_context(args):
    """The server's TLS context for `serve` (None without TLS); prints the fingerprint clients pin."""
    if args.tls_key and not args.tls_cert:
        raise EngineError("bad_request", "--tls-key needs --tls-cert (the certificate it belongs to)")
    if not (args.tls or args.tls_cert):
        return None
    from bridge import BridgeError
    from bridge.tls import certificate_fingerprint, server_context

    from .tls_cert import ensure_certificate

    if args.tls_cert:
        cert, key = args.tls_cert, args.tls_key  # no key: it is in the certificate's file
    else:
        cert, key = ensure_certificate(Path(args.workspace) / "tls")
    try:
        context = server_context(str(cert), str(key) if key else None)
        fingerprint = certificate_fingerprint(str(cert))
    except (BridgeError, OSError, ValueError) as exc:
        raise EngineError("bad_request", f"cannot use the TLS certificate {cert}: "
                                         f"{getattr(exc, 'message', exc)}") from None
    print(f"tls fingerprint: {fingerprint}", flush=True)
    return context


def _serve(args) -> int:
    from .service import EngineService

    token = args.token
    if args.token_file:
        token = Path(args.token_file).read_text().strip()
    if not token:
        token = secrets.token_urlsafe(24)
        print(f"token: {token}", flush=True)
    tls = _tls_context(args)
    service = EngineService(Path(args.workspace), host=args.host, port=args.port, token=token, tls=tls,
                            confine=args.confine)
    port = service.start()
    print(f"swapline-engine listening on {args.host}:{port}", flush=True)
    advertiser = None
    if args.advertise:  # LAN discovery is opt-in: a laptop engine should not announce itself
        from bridge.discovery import advertise_engine

        addresses = None if args.host in ("0.0.0.0", "") else [args.host]
        # The TXT record says name, device, version, TLS and load; a thread keeps the load current.
        advertiser = advertise_engine(service.info, port, service.load, addresses=addresses)
    signal.signal(signal.SIGTERM, lambda *a: service.server.stop())
    try:
        service.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        if advertiser:
            advertiser.stop()
        service.stop()
    return 0


def _faceset(args) -> int:
    """One faceset operation, the same function the server runs for the add-on, printed as JSON."""
    from .service import FACESET_OPS
    from .workspace import Workspace

    if args.action == "import":
        return run_job(args.workspace, "import_faceset", {
            "folder": str(Path(args.folder).resolve()), "faceset": args.name, "size": args.size, "dfl": args.dfl})
    if args.action == "export":
        return run_job(args.workspace, "export_faceset", {
            "faceset": args.name, "output": str(Path(args.output).resolve()), "dfl": args.dfl})
    ws = Workspace(args.workspace)
    try:
        if args.action == "list":
            result = FACESET_OPS["faceset.list"](ws, {})
        elif args.action == "tracks":
            result = FACESET_OPS["faceset.tracks"](ws, {"faceset": args.name})
        elif args.action == "faces":
            result = FACESET_OPS["faceset.faces"](ws, {
                "faceset": args.name, "sort": args.sort, "limit": args.limit, "offset": args.offset,
                "everyone": args.everyone, "track": args.track})
        elif args.action == "delete":
            result = FACESET_OPS["faceset.delete"](ws, {"faceset": args.name, "faces": args.ids})
        elif args.action == "best":
            result = FACESET_OPS["faceset.best"](ws, {"faceset": args.name, "count": args.count})
            if args.apply:
                result["deleted"] = ws.facesets.delete(args.name, result["drop"])
        elif args.action == "choose":
            result = FACESET_OPS["faceset.choose"](ws, {"faceset": args.name, "tracks": args.tracks or None})
        else:
            result = FACESET_OPS["faceset.outliers"](ws, {"faceset": args.name})
    finally:
        ws.close()
    print(json.dumps(result, indent=1))
    return 0


def _faceset_parser(sub) -> None:
    f = sub.add_parser("faceset", help="list, sort and cull the faces of a faceset (JSON out)")
    f.add_argument("--workspace", required=True)
    actions = f.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="every faceset with its face, frame and track counts")
    a = actions.add_parser("tracks", help="the faceset's tracks (one per person per shot)")
    a.add_argument("name")
    a = actions.add_parser("faces", help="the chosen person's faces, sorted")
    a.add_argument("name")
    a.add_argument("--sort", default="frame",
                   help="frame, sharpness, yaw, pitch, brightness, histogram or histogram-dissimilar")
    a.add_argument("--limit", type=int, default=200)
    a.add_argument("--offset", type=int, default=0)
    a.add_argument("--everyone", action="store_true", help="every track's faces, not only the chosen person's")
    a.add_argument("--track", type=int, help="only this track's faces, chosen or not")
    a = actions.add_parser("delete", help="delete faces (and their crops) by id")
    a.add_argument("name")
    a.add_argument("ids", type=int, nargs="+")
    a = actions.add_parser("best", help="the COUNT best faces, poses spread out; --apply deletes the rest")
    a.add_argument("name")
    a.add_argument("count", type=int)
    a.add_argument("--apply", action="store_true")
    a = actions.add_parser("choose", help="make these tracks the faceset's person; none: each shot's longest")
    a.add_argument("name")
    a.add_argument("tracks", type=int, nargs="*")
    a = actions.add_parser("outliers", help="faces that are probably bad, with the reason")
    a.add_argument("name")
    a = actions.add_parser("import", help="a folder of faces: one exported here (faceset.json) or DeepFaceLab's aligned JPGs")
    a.add_argument("folder")
    a.add_argument("name")
    a.add_argument("--size", type=int, help="crop size when creating the faceset (default: the imported faces')")
    a.add_argument("--dfl", action="store_true", help="read it as a DeepFaceLab faceset even if it has a faceset.json")
    a = actions.add_parser("export", help="write a faceset as images with a faceset.json sidecar")
    a.add_argument("name")
    a.add_argument("output")
    a.add_argument("--dfl", action="store_true", help="DeepFaceLab aligned JPGs with their embedded metadata")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine", description="Swapline engine: extract, train, merge faces.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="serve the bridge protocol for the Blender add-on")
    s.add_argument("--workspace", required=True)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--token")
    s.add_argument("--token-file")
    s.add_argument("--advertise", action="store_true", help="announce this engine on the LAN (zeroconf)")
    s.add_argument("--tls", action="store_true",
                   help="encrypt connections with a self-signed certificate kept in <workspace>/tls/")
    s.add_argument("--tls-cert", help="encrypt connections with this PEM certificate (implies --tls)")
    s.add_argument("--tls-key", help="the private key of --tls-cert, if it is not in the same file")
    s.add_argument("--confine", action=argparse.BooleanOptionalAction, default=None,
                   help="keep client paths inside the workspace (default: only when listening beyond loopback)")

    e = sub.add_parser("extract", help="find, align and store the faces of a video")
    e.add_argument("--workspace", required=True)
    e.add_argument("--video", required=True)
    e.add_argument("--faceset", required=True)
    e.add_argument("--start", type=int, default=0)
    e.add_argument("--end", type=int, default=None, help="exclusive end frame")
    e.add_argument("--size", type=int, default=512, help="aligned crop side in pixels, 64..1024")
    e.add_argument("--face-type", default="full", help="half, mid_full, full, whole_face or head")
    e.add_argument("--no-smooth", action="store_true", help="store landmarks as measured, not steadied over time")

    add_train_parser(sub)

    add_merge_parser(sub)
    add_farm_parser(sub)

    add_bench_parser(sub)
    add_evaluate_parser(sub)

    _faceset_parser(sub)
    add_mask_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "extract":
            return run_job(args.workspace, "extract", {
                "video": str(Path(args.video).resolve()), "faceset": args.faceset, "frame_start": args.start,
                "frame_end": args.end, "size": args.size, "face_type": args.face_type, "smooth": not args.no_smooth})
        if args.command in ("train", "export-dfm"):
            return run_train(args)
        if args.command == "merge":
            return run_merge(args)
        if args.command == "farm-merge":
            return run_farm(args)
        if args.command == "bench":
            return run_bench(args)
        if args.command == "evaluate":
            return run_evaluate(args)
        if args.command == "faceset":
            return _faceset(args)
        if args.command == "mask":
            return run_mask(args)
    except EngineError as exc:
        print(f"error: {exc.message} [{exc.code}]", file=sys.stderr)
        return 2
    return 0
