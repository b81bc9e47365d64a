"""Fuzz tests for EngineService.handle: every request op, with hypothesis-made arguments.

The property: an answer msgpack can carry, or a BridgeError with a known code; never another
exception (a handler bug surfaces on the wire as `internal`, which counts as a failure here too).
The ops come from the service's own tables, so a new op is fuzzed without touching this file.
Jobs started with fuzzed params either are refused at once or fail (or finish) cleanly, on an
engine whose workspace has nothing heavy to work on.
"""

from __future__ import annotations

import math
import re
import sys
import threading
import time
from pathlib import Path

import cv2
import msgpack
import numpy as np
import pytest
from hypothesis import given, strategies as st

from bridge import BridgeError
from engine.facesets import FaceRecord
from engine.geometry.align import FACE_TYPES, align_transform, template_points
from engine.service import FACESET_OPS, EngineService
from engine.service_bundle import BUNDLE_OPS
from engine.service_files import FILE_OPS
from engine.service_masks import MASK_OPS
from engine.service_merge import MERGE_OPS
from engine.service_train import TRAIN_OPS

sys.path.append(str(Path(__file__).resolve().parents[1]))  # tests/, for the shared fuzz counter
from fuzzcount import count_case, examples, fuzz_cases  # noqa: E402,F401 - fuzz_cases: autouse fixture

pytestmark = pytest.mark.timeout(600)

JOB_OPS = ["engine.info", "job.start", "job.get", "job.list", "job.cancel"]
TABLE_OPS = sorted({*FACESET_OPS, *MASK_OPS, *TRAIN_OPS, *MERGE_OPS, *FILE_OPS, *BUNDLE_OPS})
ALL_OPS = JOB_OPS + TABLE_OPS
ROOT = Path(__file__).resolve().parents[2]


def _domain_codes() -> set[str]:
    """Every code the engine and the bridge raise on purpose (a literal in EngineError/BridgeError), less
    `internal`: an expected refusal has one of these, so a new code needs no change here."""
    pattern = re.compile(r'(?:EngineError|BridgeError)\(\s*"([a-z_]+)"')
    sources = [*(ROOT / "engine").rglob("*.py"), *(ROOT / "bridge").glob("*.py")]
    return {code for path in sources for code in pattern.findall(path.read_text())} - {"internal"}


KNOWN_CODES = _domain_codes()
SEEN_CODES: dict[str, int] = {}

# Argument names the handlers read, so fuzzed maps reach past the first missing-key check.
ARG_NAMES = ["faceset", "face", "faces", "model", "video", "frame", "settings", "range", "job", "command",
             "kind", "params", "id", "tracks", "count", "limit", "offset", "sort", "everyone", "track", "space",
             "polygons", "options", "phase", "hash", "name", "size", "data", "path", "folder", "output",
             "source", "destination", "bundle", "engine", "preset", "iterations"]
PATHS = ["..", "../..", "../../etc/passwd", "/etc/hostname", "/", "/nonexistent/x", "a/../../b", "f", "m",
         "clip.mp4", "faceset/../..", "\x00", "C:\\Windows", "~", "media/" + "0" * 64]
huge_ints = st.sampled_from([-1, 0, 1, 2, 3, -2**31, 2**31, 2**53 + 1, 2**63 - 1, -2**63, 2**64 - 1])
texts = st.text(max_size=30) | st.sampled_from(PATHS) | st.sampled_from(["x" * 100_000, "é" * 5000])
leaves = (st.none() | st.booleans() | st.integers(-10, 10) | huge_ints | texts | st.binary(max_size=40)
          | st.sampled_from([math.inf, -math.inf, math.nan, 0.5, -1e308]))
values = st.recursive(leaves | st.just(list(range(100_000))),
                      lambda inner: st.lists(inner, max_size=5) | st.dictionaries(
                          st.sampled_from(ARG_NAMES) | st.text(max_size=8), inner, max_size=5),
                      max_leaves=12)
args_maps = st.dictionaries(st.sampled_from(ARG_NAMES) | st.text(max_size=10), values, max_size=7)
SIZE = 64


def _fill(ws, name: str = "f", frames: int = 3) -> None:
    """A small faceset of synthetic faces over a fake clip, so face and mask ops reach their real work."""
    rng = np.random.default_rng(0)
    video = ws.root / "clip.mp4"
    video.write_bytes(b"not really a clip")
    media = ws.register_media(video, 320, 240, 25.0, frames)
    faceset = ws.facesets.ensure(name, "full", SIZE)
    template = template_points(100, FACE_TYPES["full"])
    for frame in range(frames):
        landmarks = (template + [100 + 3 * frame, 60]).astype(np.float32)
        image = rng.integers(0, 120, (SIZE, SIZE, 3)).astype(np.uint8)
        path = ws.faceset_dir(name) / f"m{media}_f{frame:06d}_0.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), image)
        ws.facesets.add(faceset, FaceRecord(
            media_id=media, frame=frame, face_index=0, box=(0, 0, 1, 1), score=0.9,
            landmarks=np.zeros((468, 2), np.float32), landmarks68=landmarks,
            transform=align_transform(landmarks, SIZE, "full"), image=path, track=1, face_type="full", size=SIZE))


class _Session:
    """What a handler may use of a bridge session: an id, a client name, a place for events."""

    id, client, peer = 1, "fuzz", "127.0.0.1:0"

    def send_event(self, event: dict) -> None:
        msgpack.packb(event, use_bin_type=True)


@pytest.fixture(scope="module")
def held_service(tmp_path_factory):
    """An engine over a small workspace whose one job worker is held by a job that waits: fuzzed
    job.start calls queue up behind it and never run (running them is the next test's business)."""
    service = EngineService(tmp_path_factory.mktemp("fuzz") / "ws")
    _fill(service.workspace)
    release = threading.Event()
    service.jobs.stages["hold"] = lambda ws, params, ctx: release.wait(600) and {}
    hold = service.jobs.submit("hold", {})
    deadline = time.monotonic() + 30
    while service.jobs.get(hold["id"])["state"] != "running":
        assert time.monotonic() < deadline, "the holding job never started"
        time.sleep(0.01)
    yield service
    release.set()
    service.stop()


def _answer(service: EngineService, op: str, args: dict):
    """handle()'s answer (checked to be encodable) or its BridgeError, whose code must be known."""
    try:
        result = service.handle(op, args, _Session())
    except BridgeError as err:
        SEEN_CODES[err.code] = SEEN_CODES.get(err.code, 0) + 1
        assert err.code in KNOWN_CODES, f"{op} {args!r:.300} -> {err.code}: {err.message}"
        assert isinstance(err.message, str) and err.message
        return err
    msgpack.packb(result, use_bin_type=True)  # the server would fail to send anything else
    return result


def _tidy(service: EngineService, result) -> None:
    """A job a fuzzed job.start queued is cancelled before it can ever run."""
    if isinstance(result, dict) and result.get("state") == "queued" and "id" in result:
        assert service.jobs.cancel(result["id"])["state"] == "cancelled"


@examples(300)
@given(op=st.sampled_from(ALL_OPS), args=args_maps, confine=st.booleans())
def test_every_op_answers_or_refuses_with_a_known_code(held_service, op, args, confine):
    count_case(f"service: {op}")
    held_service.confine = confine  # as a remote engine (or `serve --confine`) would be
    try:
        _tidy(held_service, _answer(held_service, op, args))
    finally:
        held_service.confine = False


@examples(60)
@given(op=st.sampled_from(ALL_OPS) | st.text(max_size=40), args=args_maps)
def test_unknown_and_misspelt_ops_are_refused(held_service, op, args):
    count_case("service: any op name")
    result = _answer(held_service, op, args)
    if op not in ALL_OPS:
        assert isinstance(result, BridgeError) and result.code == "unknown_op"
    _tidy(held_service, result)


@examples(100)
@given(op=st.sampled_from(ALL_OPS), faceset=st.sampled_from(["f", "g", ""]), face=st.integers(-2, 5),
       faces=st.lists(st.integers(-2, 5), max_size=4), model=st.sampled_from(["m", "f", "../m", ""]),
       polygons=values, path=st.sampled_from(PATHS), digest=st.sampled_from(["0" * 64, "ab" * 32, "0" * 63]),
       data=st.binary(max_size=120), args=args_maps)
def test_plausible_arguments_on_real_faces(held_service, op, faceset, face, faces, model, polygons, path, digest,
                                           data, args):
    """Well-typed names, paths, hashes and ids of faces that exist, so the handlers go past their
    argument checks (an upload of up to 120 bytes of a 100-byte file, say)."""
    count_case(f"service: {op} (plausible)")
    plausible = {"faceset": faceset, "face": face, "faces": faces, "model": model, "polygons": polygons,
                 "tracks": faces, "count": face, "path": path, "video": path, "hash": digest, "data": data,
                 "name": "clip.mp4", "offset": 0, "size": 100, **args}
    held_service.confine = True
    try:
        _tidy(held_service, _answer(held_service, op, plausible))
    finally:
        held_service.confine = False


@pytest.fixture(scope="module")
def bare_service(tmp_path_factory):
    """An engine over an empty workspace (no facesets, no models): a fuzzed job has nothing heavy
    to start on, so it fails at its first check. Confined, so no job writes outside its workspace."""
    root = tmp_path_factory.mktemp("fuzzjobs")
    (root / "ws").mkdir()
    (root / "ws" / "junk.mp4").write_bytes(b"\x00\x01junk" * 100)
    service = EngineService(root / "ws", confine=True)
    yield service
    service.stop()


JOB_PARAMS = ["video", "faceset", "model", "source", "destination", "folder", "output", "frame_start",
              "frame_end", "size", "dfl", "iterations", "settings", "outputs", "preset", "resolution", "device"]


@examples(25)
@given(kind=st.sampled_from(["extract", "merge", "import_faceset", "export_faceset", "train", "pretrain",
                             "export_dfm", "mask_matte", "mask_train", "mask_apply", "nope", ""]),
       params=st.dictionaries(st.sampled_from(JOB_PARAMS) | st.text(max_size=6),
                              values | st.sampled_from(["junk.mp4", "f", "m", "out"]), max_size=6))
def test_fuzzed_jobs_are_refused_or_fail_cleanly(bare_service, kind, params):
    count_case("service: job.start run")
    result = _answer(bare_service, "job.start", {"kind": kind, "params": params})
    if isinstance(result, BridgeError):
        return
    deadline = time.monotonic() + 120
    while (job := bare_service.jobs.get(result["id"]))["state"] in ("queued", "running", "paused"):
        if time.monotonic() > deadline:  # a fuzzed job that found real work: stop it, then judge it
            bare_service.jobs.cancel(job["id"])
            job = bare_service.jobs.wait(job["id"], 60)
            break
        time.sleep(0.02)
    assert job["state"] in ("failed", "cancelled", "done"), job
    if job["state"] == "failed":
        code = job["error"]["code"]
        SEEN_CODES[code] = SEEN_CODES.get(code, 0) + 1
        assert code in KNOWN_CODES, f"job {kind} {params!r:.300} failed with {code}: {job['error']['message']}"


@pytest.mark.parametrize("params", [{"video": b"clip"}, {"video": "v.mp4", "x": [math.nan]}])
def test_job_params_json_cannot_hold_are_refused(held_service, params):
    """Found by the fuzzing: msgpack carries bytes (and NaN), the job catalog (JSON) does not; the job
    was answered with `internal`."""
    with pytest.raises(BridgeError) as err:
        held_service.handle("job.start", {"kind": "extract", "params": params}, _Session())
    assert err.value.code == "bad_request"


@pytest.mark.parametrize("op, args", [
    ("files.manifest", {"path": "x" * 300}), ("files.read", {"path": "x" * 300, "offset": 0, "size": 1}),
    ("bundle.pack", {"video": "x" * 300, "model": "m", "faceset": "f"}), ("bundle.unpack", {"path": "x" * 300}),
    ("merge.preview", {"model": "m", "video": "x" * 300, "faceset": "f", "frame": 0}),
    ("job.start", {"kind": "extract", "params": {"video": "x" * 300, "faceset": "f"}}),
    ("job.start", {"kind": "import_faceset", "params": {"folder": "x" * 300, "faceset": "f"}})])
def test_a_path_part_longer_than_a_file_name_is_refused(held_service, op, args):
    """Found by the fuzzing (long profile): stat() raised ENAMETOOLONG, answered as `internal` (or a
    job failed with it)."""
    for confine in (False, True):
        held_service.confine = confine
        try:
            with pytest.raises(BridgeError) as err:
                held_service.handle(op, args, _Session())
        finally:
            held_service.confine = False
        assert err.value.code == "bad_request", err.value


def test_the_fuzzing_reached_every_op_and_saw_refusals():
    """Runs after the fuzz tests above (file order): every op was tried, and refusals were seen."""
    tried = {name.removeprefix("service: ").removesuffix(" (plausible)") for name in fuzz_cases_seen()}
    assert set(ALL_OPS) <= tried, sorted(set(ALL_OPS) - tried)
    assert all(SEEN_CODES.get(code, 0) > 0 for code in ("bad_request", "unknown_op", "not_found", "forbidden_path")), \
        SEEN_CODES
    print(f"error codes seen: {SEEN_CODES}")


def fuzz_cases_seen() -> list[str]:
    from fuzzcount import CASES

    return [name for name in CASES if name.startswith("service: ")]
