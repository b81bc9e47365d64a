"""bridge/transfer.py against a small engine of the test's own (the four file ops over a dict): no torch."""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from typing import Any, Iterator

import pytest

from bridge import BridgeClient, BridgeError, BridgeServer, Message, Session
from bridge.transfer import download_files, file_hash, upload_file

TOKEN = "transfer-token"


class FileEngine:
    """media.status / media.upload / files.manifest / files.read, the way docs/protocol.md says, in memory.

    `corrupt` flips files.read's bytes; `manifest_extra` adds entries to every manifest; each upload
    chunk sends the uploading session an event first (an engine's job events arrive mid-transfer too).
    """

    def __init__(self) -> None:
        self.partial: dict[str, bytearray] = {}
        self.blobs: dict[str, bytes] = {}
        self.files: dict[str, bytes] = {}
        self.offsets: list[int] = []
        self.corrupt = False
        self.manifest_extra: list[dict] = []
        self.fail_upload: BridgeError | None = None
        self.gate: threading.Event | None = None  # holds the uploads back until set
        self.arrived = threading.Event()  # an upload chunk reached the engine
        self.lock = threading.Lock()

    def status(self, digest: str) -> dict:
        if digest in self.blobs:
            return {"hash": digest, "present": True, "received": len(self.blobs[digest]), "path": f"media/{digest}"}
        return {"hash": digest, "present": False, "received": len(self.partial.get(digest, b"")), "path": None}

    def __call__(self, op: str, args: dict, session: Session) -> Any:
        with self.lock:
            if op == "media.status":
                return self.status(args["hash"])
            if op == "media.upload":
                return self.upload(args, session)
            if op == "files.manifest":
                names = sorted(n for n in self.files if n.startswith(args["path"] + "/"))
                return {"root": args["path"], "files": [
                    {"path": n[len(args["path"]) + 1:], "size": len(self.files[n]),
                     "hash": hashlib.sha256(self.files[n]).hexdigest()} for n in names] + self.manifest_extra}
            if op == "files.read":
                data = self.files[args["path"]][args["offset"]:args["offset"] + args["size"]]
                if self.corrupt:
                    data = bytes(b ^ 1 for b in data)
                return {"data": data, "size": len(self.files[args["path"]])}
        raise BridgeError("unknown_op", op)

    def upload(self, args: dict, session: Session) -> dict:
        session.send_event({"event": "job", "offset": args["offset"]})
        self.arrived.set()
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail_upload is not None:
            raise self.fail_upload
        digest, buf = args["hash"], self.partial.setdefault(args["hash"], bytearray())
        if args["offset"] != len(buf):
            raise BridgeError("bad_request", f"continue at offset {len(buf)}, not {args['offset']}")
        self.offsets.append(args["offset"])
        buf += args["data"]
        if len(buf) == args["size"]:
            del self.partial[digest]
            if hashlib.sha256(buf).hexdigest() != digest:
                raise BridgeError("hash_mismatch", "the bytes do not match their hash")
            self.blobs[digest] = bytes(buf)
        return self.status(digest)


@pytest.fixture
def engine() -> FileEngine:
    return FileEngine()


@pytest.fixture
def client(engine: FileEngine) -> Iterator[BridgeClient]:
    server = BridgeServer(engine, host="127.0.0.1", port=0, token=TOKEN, engine_info={"name": "files"})
    port = server.start()
    c = BridgeClient("127.0.0.1", port, TOKEN, client_name="transfer-test", timeout=10)
    c.connect()
    yield c
    c.close()
    server.stop()


@pytest.fixture
def clip(tmp_path):
    path = tmp_path / "clip.mp4"
    path.write_bytes(os.urandom(100_000 + 7))
    return path


def _drain(inbox: queue.Queue) -> list[Message]:
    out = []
    while True:
        try:
            out.append(inbox.get_nowait())
        except queue.Empty:
            return out


def test_file_hash_is_the_sha256_of_the_bytes(clip):
    assert file_hash(clip) == hashlib.sha256(clip.read_bytes()).hexdigest()


def test_an_upload_goes_in_order_and_others_messages_reach_the_inbox(engine, client, clip):
    inbox = client.inbox
    progress = []
    status = upload_file(client, clip, chunk=10_000, window=3, progress=lambda d, t: progress.append((d, t)))
    digest = file_hash(clip)
    assert status == {"hash": digest, "present": True, "received": clip.stat().st_size, "path": f"media/{digest}"}
    assert engine.blobs[digest] == clip.read_bytes()
    assert engine.offsets == list(range(0, clip.stat().st_size, 10_000))  # every chunk once, in order
    assert progress[0] == (0, clip.stat().st_size) and progress[-1] == (clip.stat().st_size,) * 2
    assert client.inbox is inbox  # the client's own inbox is back
    messages = _drain(inbox)
    assert [m.payload["offset"] for m in messages if m.kind == "event"] == engine.offsets  # in order, none lost
    assert all(m.kind == "event" for m in messages)  # the upload's own answers were not left there
    engine.offsets.clear()
    assert upload_file(client, clip) == status and engine.offsets == []  # present: nothing sent


def test_an_empty_file_takes_one_empty_chunk(engine, client, tmp_path):
    empty = tmp_path / "empty.mov"
    empty.write_bytes(b"")
    assert upload_file(client, empty)["present"]
    assert engine.blobs[hashlib.sha256(b"").hexdigest()] == b""


def test_a_request_sent_meanwhile_is_answered_on_the_inbox(engine, client, clip):
    engine.gate = threading.Event()
    worker = threading.Thread(target=upload_file, args=(client, clip), kwargs={"chunk": 20_000, "window": 2})
    worker.start()
    assert engine.arrived.wait(10)  # the upload is in flight
    request_id = client.send("media.status", {"hash": "0" * 64})  # someone else's send() mid-upload
    engine.gate.set()
    worker.join(10)
    responses = [m for m in _drain(client.inbox) if m.kind == "response"]
    assert [m.payload["id"] for m in responses] == [request_id]


def test_a_refused_chunk_or_a_cancel_ends_the_upload_cleanly(engine, client, clip):
    engine.fail_upload = BridgeError("disk_full", "the engine's disk is full")
    inbox = client.inbox
    with pytest.raises(BridgeError) as err:
        upload_file(client, clip, chunk=10_000, window=4)
    assert err.value.code == "disk_full" and client.inbox is inbox
    engine.fail_upload = None
    with pytest.raises(BridgeError) as err:
        upload_file(client, clip, chunk=10_000, should_stop=lambda: len(engine.offsets) >= 2)
    assert err.value.code == "cancelled" and client.inbox is inbox
    assert not [m for m in _drain(inbox) if m.kind == "response"]  # late answers were not leaked
    assert upload_file(client, clip, chunk=10_000)["present"]  # and it resumes where it stopped
    assert engine.offsets == sorted(set(engine.offsets))


def test_a_hash_mismatch_is_the_engines_error(engine, client, clip):
    with pytest.raises(BridgeError) as err:
        upload_file(client, clip, digest="1" * 64)
    assert err.value.code == "hash_mismatch"


def test_a_broken_connection_fails_the_upload_as_unreachable(engine, client, clip):
    def drop(done, total):
        if done >= 30_000:
            client.close()

    with pytest.raises(BridgeError) as err:
        upload_file(client, clip, chunk=10_000, window=2, progress=drop)
    assert err.value.code == "unreachable"


def test_download_writes_checked_files_under_the_folder(engine, client, tmp_path):
    engine.files = {"renders/j/a.png": os.urandom(5000), "renders/j/sub/b.png": os.urandom(12), "other/c": b"x"}
    got = download_files(client, "renders/j", tmp_path / "out", chunk=1000, window=3)
    assert [p.relative_to(tmp_path / "out").as_posix() for p in got] == ["a.png", "sub/b.png"]
    assert (tmp_path / "out" / "a.png").read_bytes() == engine.files["renders/j/a.png"]


def test_download_refuses_a_corrupt_file_and_names_outside_the_folder(engine, client, tmp_path):
    engine.files = {"r/a.png": os.urandom(3000)}
    engine.corrupt = True
    with pytest.raises(BridgeError) as err:
        download_files(client, "r", tmp_path / "out")
    assert err.value.code == "hash_mismatch"
    assert not list((tmp_path / "out").iterdir())  # neither the file nor its .part
    engine.corrupt = False
    for name in ("../evil", "/etc/evil", "a/../../evil", "a\\..\\evil", "C:evil", "C:/evil", "a.png:stream",
                 "a\0b", 7):
        engine.manifest_extra = [{"path": name, "size": 1, "hash": "0" * 64}]
        with pytest.raises(BridgeError) as err:
            download_files(client, "r", tmp_path / "out")
        assert err.value.code == "protocol"
    assert not (tmp_path / "evil").exists()
