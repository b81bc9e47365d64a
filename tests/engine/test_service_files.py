"""Media by content hash and files read back: through EngineService.handle, and over a real loopback bridge."""

import errno
import hashlib
import os
import threading
from types import SimpleNamespace

import pytest

from bridge import BridgeClient, BridgeError
from bridge.transfer import download_files, file_hash, upload_file
from engine import mediastore, service_files
from engine.mediastore import MediaStore, media_extension
from engine.service import EngineService

TOKEN = "files-test-token"


@pytest.fixture
def service(tmp_path):
    svc = EngineService(tmp_path / "ws", token=TOKEN)
    yield svc
    svc.stop()


@pytest.fixture
def engine(service):
    """The service listening on loopback; connect(): a new connected client (closed at the end)."""
    port = service.start()
    clients = []

    def connect() -> BridgeClient:
        client = BridgeClient("127.0.0.1", port, TOKEN, client_name="files-test", timeout=30)
        client.connect()
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()


def _code(fn, *args) -> BridgeError:
    with pytest.raises(BridgeError) as err:
        fn(*args)
    return err.value


def _upload_args(data: bytes, offset: int, end: int, size: int | None = None, name: str = "Clip.MP4") -> dict:
    return {"hash": hashlib.sha256(data).hexdigest(), "name": name, "size": len(data) if size is None else size,
            "offset": offset, "data": data[offset:end]}


def test_chunks_make_a_blob_named_by_its_hash(service):
    data = os.urandom(10_000)
    digest = hashlib.sha256(data).hexdigest()
    status = service.handle("media.status", {"hash": digest}, None)
    assert status == {"hash": digest, "present": False, "received": 0, "path": None}
    assert service.handle("media.upload", _upload_args(data, 0, 4000), None)["received"] == 4000
    assert service.handle("media.status", {"hash": digest}, None)["received"] == 4000
    done = service.handle("media.upload", _upload_args(data, 4000, 10_000), None)
    assert done == {"hash": digest, "present": True, "received": 10_000, "path": f"media/{digest}.mp4"}
    assert (service.workspace.root / done["path"]).read_bytes() == data
    assert not (service.workspace.root / "media" / ".partial" / digest).exists()
    again = service.handle("media.upload", _upload_args(data, 0, 10), None)  # already here: nothing written
    assert again == done


def test_a_wrong_offset_says_where_to_continue(service):
    data = os.urandom(1000)
    service.handle("media.upload", _upload_args(data, 0, 300), None)
    err = _code(service.handle, "media.upload", _upload_args(data, 500, 700), None)
    assert err.code == "bad_request" and "offset 300" in err.message
    err = _code(service.handle, "media.upload", _upload_args(data, 300, 1000, size=600), None)
    assert err.code == "bad_request" and "declared size" in err.message
    err = _code(service.handle, "media.upload", {**_upload_args(data, 300, 400), "size": 65 * 2**30}, None)
    assert err.code == "bad_request"
    for bad in ({"hash": "../../etc"}, {"hash": "A" * 64}, {}):
        assert _code(service.handle, "media.status", bad, None).code == "bad_request"
    assert service.handle("media.status", {"hash": hashlib.sha256(data).hexdigest()}, None)["received"] == 300


def test_a_hash_mismatch_discards_the_upload(service):
    data = os.urandom(1000)
    args = _upload_args(data, 0, 1000)
    args["hash"] = hashlib.sha256(b"something else").hexdigest()
    err = _code(service.handle, "media.upload", args, None)
    assert err.code == "hash_mismatch"
    assert service.handle("media.status", {"hash": args["hash"]}, None)["received"] == 0
    assert not any((service.workspace.root / "media").rglob(args["hash"] + "*"))


class _FullDisk:
    """A file whose write puts part of the bytes on disk, then fails the way a full disk does."""

    def __init__(self, f):
        self._f = f

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()

    def write(self, data):
        self._f.write(bytes(data[:100]))
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_keeps_what_arrived_for_a_resume(service, monkeypatch):
    data = os.urandom(1000)
    service.handle("media.upload", _upload_args(data, 0, 400), None)
    monkeypatch.setattr(mediastore, "open", lambda *a, **kw: _FullDisk(open(*a, **kw)), raising=False)
    err = _code(service.handle, "media.upload", _upload_args(data, 400, 1000), None)
    assert err.code == "disk_full" and "free some space" in err.message
    digest = hashlib.sha256(data).hexdigest()
    assert service.handle("media.status", {"hash": digest}, None)["received"] == 400  # no half chunk kept
    monkeypatch.undo()
    assert service.handle("media.upload", _upload_args(data, 400, 1000), None)["present"]
    # a file that cannot fit is refused before its first byte
    monkeypatch.setattr(mediastore.shutil, "disk_usage", lambda p: SimpleNamespace(free=10))
    err = _code(service.handle, "media.upload", _upload_args(os.urandom(100), 0, 50), None)
    assert err.code == "disk_full"


def test_the_extension_comes_from_the_name_sanitised():
    assert media_extension("shot.MOV") == ".mov"
    assert media_extension("a.tar.gz") == ".gz"
    assert media_extension("noext") == media_extension("x.toolongext") == media_extension("x.mp-4") == ""
    assert media_extension("../../x/.bashrc") == ""


def test_two_connections_sending_the_same_file_make_one_good_blob(engine, service, tmp_path):
    source = tmp_path / "clip.mp4"
    source.write_bytes(os.urandom(3 * 2**20 + 17))
    results, errors = [], []

    def send(client):
        try:
            results.append(upload_file(client, source, chunk=64 * 1024, window=3))
        except BridgeError as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=send, args=(engine(),)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and len(results) == 2 and all(r["present"] for r in results)
    assert file_hash(service.workspace.root / results[0]["path"]) == file_hash(source)


def test_an_upload_resumes_on_a_new_connection_after_a_drop(engine, service, tmp_path):
    source = tmp_path / "clip.mp4"
    source.write_bytes(os.urandom(2 * 2**20 + 5))
    first = engine()
    seen = []

    def drop_after_a_chunk(done, total):
        seen.append(done)
        if done >= 256 * 1024:
            first.close()  # the connection breaks mid-upload

    err = _code(lambda: upload_file(first, source, chunk=128 * 1024, window=2, progress=drop_after_a_chunk))
    assert err.code == "unreachable"
    digest = file_hash(source)
    second = engine()
    received = second.call("media.status", {"hash": digest})["received"]
    assert 256 * 1024 <= received < source.stat().st_size
    progress = []
    status = upload_file(second, source, digest=digest, chunk=128 * 1024, progress=lambda d, t: progress.append(d))
    assert progress[0] == received and progress[-1] == source.stat().st_size  # it carried on, not over
    assert status["present"] and (service.workspace.root / status["path"]).read_bytes() == source.read_bytes()
    assert upload_file(second, source, progress=lambda d, t: progress.append(d)) == status  # present: no bytes sent
    assert progress[-1] == source.stat().st_size


def test_an_uploaded_copy_is_the_same_media_as_the_clip_it_copies(engine, service, tmp_path):
    original = tmp_path / "clip.mp4"
    original.write_bytes(os.urandom(5000))
    ws = service.workspace
    media_id = ws.register_media(original, 64, 48, 25.0, 10)
    status = upload_file(engine(), original)
    assert ws.register_media(ws.root / status["path"], 64, 48, 25.0, 10) == media_id


def _results(root):
    folder = root / "renders" / "job1"
    (folder / "frames").mkdir(parents=True)
    (folder / "a.png").write_bytes(os.urandom(3000))
    (folder / "frames" / "000001.png").write_bytes(os.urandom(1234))
    (folder / "frames" / "empty.txt").write_bytes(b"")
    (folder / ".partial").mkdir()
    (folder / ".partial" / "x").write_bytes(b"half")
    return folder


def test_manifest_lists_and_hashes_a_folder_once(service, monkeypatch):
    folder = _results(service.workspace.root)
    hashed = []
    real = service_files.content_hash
    monkeypatch.setattr(service_files, "content_hash", lambda p: hashed.append(p) or real(p))
    m = service.handle("files.manifest", {"path": "renders/job1"}, None)
    assert m["root"] == "renders/job1"
    assert [f["path"] for f in m["files"]] == ["a.png", "frames/000001.png", "frames/empty.txt"]
    assert m["files"][0] == {"path": "a.png", "size": 3000, "hash": file_hash(folder / "a.png")}
    assert len(hashed) == 3
    (folder / "a.png").write_bytes(os.urandom(10))
    m2 = service.handle("files.manifest", {"path": str(folder)}, None)  # absolute inside: fine
    assert len(hashed) == 4 and m2["files"][0]["size"] == 10  # only the changed file hashed again
    one = service.handle("files.manifest", {"path": "renders/job1/frames/000001.png"}, None)
    assert one["root"] == "renders/job1/frames" and [f["path"] for f in one["files"]] == ["000001.png"]
    assert _code(service.handle, "files.manifest", {"path": "renders/none"}, None).code == "not_found"


def test_a_file_deleted_while_it_is_listed_is_left_out(service, monkeypatch):
    folder = _results(service.workspace.root)
    real = service.hashes.hash

    def hash_then_delete(path, st):
        (folder / "frames" / "000001.png").unlink(missing_ok=True)  # a job removes it meanwhile
        return real(path, st)

    monkeypatch.setattr(service.hashes, "hash", hash_then_delete)
    m = service.handle("files.manifest", {"path": "renders/job1"}, None)
    assert [f["path"] for f in m["files"]] == ["a.png", "frames/empty.txt"]


def test_read_returns_a_slice_and_the_whole_size(service):
    _results(service.workspace.root)
    data = (service.workspace.root / "renders" / "job1" / "a.png").read_bytes()
    r = service.handle("files.read", {"path": "renders/job1/a.png", "offset": 1000, "size": 500}, None)
    assert r == {"data": data[1000:1500], "size": 3000}
    assert service.handle("files.read", {"path": "renders/job1/a.png", "offset": 5000}, None)["data"] == b""
    too_big = {"path": "renders/job1/a.png", "size": 9 * 2**20}
    assert _code(service.handle, "files.read", too_big, None).code == "bad_request"
    assert _code(service.handle, "files.read", {"path": "renders/job1"}, None).code == "not_found"


def test_files_ops_stay_inside_the_workspace(service, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("not yours")
    os.symlink(tmp_path, service.workspace.root / "up")
    for op in ("files.manifest", "files.read"):
        for path in ("../secret.txt", str(secret), "up/secret.txt", "/etc/hostname"):
            err = _code(service.handle, op, {"path": path}, None)
            assert err.code == "forbidden_path", (op, path)
    (service.workspace.root / "tls").mkdir()
    (service.workspace.root / "tls" / "engine-key.pem").write_text("private")
    assert _code(service.handle, "files.read", {"path": "tls/engine-key.pem"}, None).code == "forbidden_path"
    listed = [f["path"] for f in service.handle("files.manifest", {"path": "."}, None)["files"]]
    assert not any("secret" in p for p in listed)  # the symlinked folder is not walked
    assert not any(p.startswith(("tls", "catalog", "jobs.lock")) for p in listed)  # nor the engine's own files


def test_download_fetches_checks_and_skips_what_is_already_here(engine, service, tmp_path):
    folder = _results(service.workspace.root)
    client = engine()
    local = tmp_path / "local"
    reads = []
    call = client.call
    client.call = lambda op, args=None, timeout=30.0: (reads.append(args["path"]) if op == "files.read" else None) \
        or call(op, args, timeout)
    got = download_files(client, "renders/job1", local, chunk=1000)
    assert sorted(p.relative_to(local).as_posix() for p in got) == ["a.png", "frames/000001.png", "frames/empty.txt"]
    for p in got:
        assert p.read_bytes() == (folder / p.relative_to(local)).read_bytes()
    assert not list(local.rglob("*.part"))
    assert reads.count("renders/job1/a.png") == 3 and reads.count("renders/job1/frames/empty.txt") == 0
    (local / "a.png").write_bytes(b"stale")
    reads.clear()
    progress = []
    download_files(client, "renders/job1", local, progress=lambda d, t: progress.append((d, t)))
    assert reads == ["renders/job1/a.png"]  # only the file whose hash differs
    assert (local / "a.png").read_bytes() == (folder / "a.png").read_bytes()
    assert progress[-1] == (3000 + 1234, 3000 + 1234)


def test_a_store_refuses_oversized_chunks(tmp_path):
    store = MediaStore(tmp_path)
    with pytest.raises(Exception) as err:
        store.append("0" * 64, "x", 2 * mediastore.MAX_CHUNK, 0, b"\0" * (mediastore.MAX_CHUNK + 1))
    assert err.value.code == "bad_request"
