"""Service layer: `python -m engine farm-merge ...`: one shot merged by several engines at once.

The first engine holds the model and the destination faceset. It packs them into a bundle
(engine/bundle.py); the bundle and the video go to every other engine by content hash (resumable,
skipped when there already) and the bundle is unpacked there. The shot's frames are then cut into
one range per engine (engine/farm_plan.py), each merged by one job into that engine's workspace and
downloaded into --output as soon as it is done: files are named by source frame, so the ranges
meet without colliding, and one merge.json lists every frame once. An engine that finishes early
takes half of the slowest one's remaining frames; a range whose engine fails or disconnects is
merged again by another engine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import queue
import re
import shutil
import sys
import time
from pathlib import Path

from bridge import BridgeClient, BridgeError
from bridge.tls import TLSConfig
from bridge.transfer import download_files, file_hash, upload_file

from .cli_farm_loop import Engine, Farm, _Inbox
from .cli_merge import merge_params
from .errors import EngineError
from .farm_plan import smoothing_radius

LONG_CALL = 600.0  # seconds: packing or unpacking hashes a model of hundreds of megabytes


def add_farm_parser(sub) -> None:
    f = sub.add_parser("farm-merge", help="merge one shot on several engines at once, each a range of frames",
                       description="Merge a trained model's face into a video's frames on several engines. The "
                                   "first engine holds the model and faceset; the others receive them.")
    f.add_argument("--engine", dest="engines", action="append", required=True,
                   metavar="HOST:PORT[:TOKENFILE][#FINGERPRINT]",
                   help="an engine (repeat); the token comes from TOKENFILE, else $SWAPLINE_TOKEN; with "
                        "#FINGERPRINT the connection is TLS, pinned to that certificate (serve --tls prints it)")
    f.add_argument("--tls-ca", help="connect to every engine with TLS, trusting certificates this CA file signed")
    f.add_argument("--model", required=True)
    f.add_argument("--video", required=True, help="the destination video, on this machine")
    f.add_argument("--faceset", required=True, help="the faceset holding the video's (destination) faces")
    f.add_argument("--start", type=int, default=0)
    f.add_argument("--end", type=int, default=None, help="exclusive end frame")
    f.add_argument("--output", required=True, help="local folder receiving every engine's frames")
    f.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                   help="any merge setting, as for the merge command")
    f.add_argument("--outputs", help="comma-separated, any of layer,matte,frames (default: layer,matte)")
    f.add_argument("--no-steal", action="store_true", help="keep each engine to its first range")


def parse_engine(spec: str, tls_ca: str = "") -> tuple[str, int, str, TLSConfig | None]:
    """(host, port, token, TLS settings) of `host:port[:tokenfile][#fingerprint]` (an IPv6 host in
    brackets; the fingerprint pins the engine's certificate, `tls_ca` verifies it against a CA)."""
    m = re.fullmatch(r"(\[[^\]]+\]|[^:\[\]]+):(\d{1,5})(?::([^#]+))?(?:#([0-9a-fA-F:]+))?", spec)
    if not m:
        raise EngineError("bad_request", f"--engine {spec!r} is not HOST:PORT[:TOKENFILE][#FINGERPRINT]")
    host, port, token_file, fingerprint = m.group(1).strip("[]"), int(m.group(2)), m.group(3), m.group(4)
    try:
        token = Path(token_file).read_text().strip() if token_file else os.environ.get("SWAPLINE_TOKEN", "")
    except OSError as exc:
        raise EngineError("not_found", f"cannot read the token file {token_file}: {exc.strerror}") from None
    if not token:
        raise EngineError("bad_request", f"no token for {spec}: give HOST:PORT:TOKENFILE or set SWAPLINE_TOKEN")
    tls = TLSConfig(fingerprint=fingerprint or "", cafile=tls_ca) if fingerprint or tls_ca else None
    return host, port, token, tls


def _connect(specs: list[str], shared: queue.Queue, tls_ca: str = "") -> list[Engine]:
    engines = []
    for i, spec in enumerate(specs):
        host, port, token, tls = parse_engine(spec, tls_ca)
        client = BridgeClient(host, port, token, client_name="swapline-farm", timeout=30.0, inbox=_Inbox(shared, i),
                              tls=tls)
        try:
            info = client.connect()
            client.start()
        except BridgeError as exc:
            client.close()
            for e in engines:
                e.client.close()
            raise EngineError(exc.code, f"{spec}: {exc.message}") from None
        engines.append(Engine(i, f"{host}:{port}", client, info))
    return engines


def _distribute(engines: list[Engine], args: argparse.Namespace, video: Path, digest: str, staging: Path,
                mask_model: str | None) -> None:
    """Give every engine the video, the model, the faceset and the mask model the settings name (the
    first has all but the video). An engine that cannot take them is left out of the merge."""
    first = engines[0]
    first.model, first.faceset = args.model, args.faceset
    # an unconfined engine is on this machine and reads the file where it is
    first.video = str(video) if not first.info.get("confined") \
        else upload_file(first.client, video, digest=digest)["path"]
    if len(engines) == 1:
        return
    packed = first.client.call("bundle.pack", {"model": args.model, "faceset": args.faceset, "video": first.video,
                                               "mask_model": mask_model}, timeout=LONG_CALL)
    local = download_files(first.client, packed["path"], staging / "bundle")[0]
    if file_hash(local) != packed["hash"]:
        raise EngineError("hash_mismatch", "the bundle changed while it was downloaded; run again")
    for e in engines[1:]:
        try:
            e.video = upload_file(e.client, video, digest=digest)["path"]
            uploaded = upload_file(e.client, local, digest=packed["hash"])["path"]
            names = e.client.call("bundle.unpack", {"path": uploaded}, timeout=LONG_CALL)
        except BridgeError as exc:
            e.alive = False
            print(f"{e.label}: left out, it could not take the shot: {exc.message} [{exc.code}]", file=sys.stderr)
            continue
        e.model, e.faceset = names["model"], names["faceset"]
        if mask_model:
            e.settings = {"seg_model": names["mask_model"]}
        print(f"{e.label}: model {e.model}, faceset {e.faceset} ({names['faces']} faces)", file=sys.stderr)


def run_farm(args: argparse.Namespace) -> int:
    from .media.decode import frame_range, probe
    from .merge.settings import MergeSettings

    params = merge_params(args)
    if "video" in params.get("outputs", ()):
        raise EngineError("bad_request", "a farm merge writes frame sequences (layer, matte, frames); "
                                         "encode the video from them")
    video = Path(args.video).resolve()
    start, end = frame_range(probe(video), args.start, args.end)
    radius = smoothing_radius(params["settings"])
    wanted = MergeSettings.from_dict(params["settings"])
    mask_model = wanted.seg_model if "seg-" in wanted.mask else None  # the other engines need it too
    output = Path(args.output).resolve()
    output.mkdir(parents=True, exist_ok=True)
    digest = file_hash(video)
    run = hashlib.sha256(json.dumps([digest, args.model, args.faceset, params["settings"],
                                     params.get("outputs"), start, end], sort_keys=True).encode()).hexdigest()[:12]
    shared: queue.Queue = queue.Queue()
    engines = _connect(args.engines, shared, args.tls_ca or "")
    farm = Farm(engines, {k: v for k, v in params.items() if k not in ("video", "frame_start", "frame_end", "output")},
                start, end, radius, run, output, steal=not args.no_steal, events=shared)
    began = time.monotonic()
    try:
        _distribute(engines, args, video, digest, output / ".farm", mask_model)
        farm.run()
    except KeyboardInterrupt:
        farm.cancel()
        print("\nfarm-merge cancelled", file=sys.stderr)
        return 130
    except BridgeError as exc:
        farm.cancel()
        raise EngineError(exc.code, exc.message) from None
    finally:
        for e in engines:
            e.client.close()
    state = farm.write_state(video)
    shutil.rmtree(output / ".farm", ignore_errors=True)
    print(json.dumps({"directory": str(output), "first_frame": start, "count": end - start,
                      "frames": len(state["done"]), "engines": state["engines"],
                      "seconds": round(time.monotonic() - began, 2)}))
    return 0
