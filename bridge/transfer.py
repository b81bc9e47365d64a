"""Bridge, transfers (client side): files to an engine by content hash and results back, in chunks.

A remote engine cannot read the user's disk, so a clip goes up once, known by its SHA-256
(`media.status`, `media.upload`); a broken connection loses nothing, as the next upload of the same
file, on a new connection, carries on from what the engine has (`received`). Results come back by
`files.manifest` and `files.read`, each file checked against its hash before it takes its name.
docs/protocol.md, "Media and files", describes the ops. Works with any connected BridgeClient.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import queue
import threading
import time
import weakref
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Any, Callable

from .client import BridgeClient, Message
from .protocol import BridgeError

__all__ = ["file_hash", "upload_file", "download_files", "CHUNK"]

CHUNK = 4 * 2**20          # bytes per request: big enough to amortise a round trip, well under a frame
ANSWER_TIMEOUT = 120.0     # seconds for one chunk's answer (the last one hashes the file on a slow disk)
MANIFEST_TIMEOUT = 600.0   # listing hashes every new file of a folder
RESYNCS = 32               # times an upload follows another connection's progress on the same file

Progress = Callable[[int, int], None]

_uploading: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # client -> lock: one upload at a time
_uploading_guard = threading.Lock()


def file_hash(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes as hex, read in 1 MiB pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(2**20):
            h.update(block)
    return h.hexdigest()


def _check_stop(should_stop: Callable[[], bool] | None) -> None:
    if should_stop is not None and should_stop():
        raise BridgeError("cancelled", "the transfer was cancelled")


class _Answers(queue.Queue):
    """Stands in for a client's inbox while an upload pipelines its chunks with send(): answers to
    the upload's own requests stay here; everything else goes on to the real inbox at once, in order,
    and whoever drains the client's inbox keeps reading the real one."""

    def __init__(self, client: BridgeClient) -> None:
        super().__init__()
        self.client = client
        self.inbox: queue.Queue = client.inbox
        self.cond = threading.Condition()
        self.mine: set[int] = set()      # ids sent and not yet answered
        self.answers: dict[int, dict] = {}
        self.closed: str | None = None

    def __enter__(self) -> "_Answers":
        self.client.inbox = self
        return self

    def __exit__(self, *exc) -> None:
        # Unanswered chunks (a cancel, an error) are waited for briefly, so their answers do not
        # reach the real inbox as responses nobody asked for; late ones are dropped in put().
        deadline = time.monotonic() + 10.0
        with self.cond:
            while self.mine - set(self.answers) and self.closed is None and time.monotonic() < deadline:
                self.cond.wait(deadline - time.monotonic())
            self.client.inbox = self.inbox

    # what the client's reader thread calls
    def put(self, item: Message, block: bool = True, timeout: float | None = None) -> None:
        with self.cond:
            if item.kind == "response" and item.payload.get("id") in self.mine:
                self.answers[item.payload["id"]] = item.payload
                self.cond.notify_all()
                return
            if item.kind == "closed":
                self.closed = item.payload
                self.cond.notify_all()
        self.inbox.put(item)

    # a consumer that reads client.inbox meanwhile reads the real one
    def get(self, block: bool = True, timeout: float | None = None) -> Message:
        return self.inbox.get(block, timeout)

    def qsize(self) -> int:
        return self.inbox.qsize()

    def empty(self) -> bool:
        return self.inbox.empty()

    def send(self, op: str, args: dict) -> int:
        # held while sending, so the answer cannot be routed before its id is known as ours
        with self.cond:
            request_id = self.client.send(op, args)
            self.mine.add(request_id)
        return request_id

    def answer(self, request_id: int, timeout: float = ANSWER_TIMEOUT) -> Any:
        deadline = time.monotonic() + timeout
        with self.cond:
            while request_id not in self.answers:
                if self.closed is not None:
                    raise BridgeError("unreachable", self.closed)
                if (remaining := deadline - time.monotonic()) <= 0:
                    raise BridgeError("timeout", f"no answer to an upload chunk within {timeout:g} s")
                self.cond.wait(remaining)
            reply = self.answers.pop(request_id)
            self.mine.discard(request_id)
        if reply["ok"]:
            return reply.get("result")
        raise BridgeError.from_wire(reply.get("error"))


def _client_lock(client: BridgeClient) -> threading.Lock:
    with _uploading_guard:
        lock = _uploading.get(client)
        if lock is None:
            lock = _uploading[client] = threading.Lock()
        return lock


def upload_file(client: BridgeClient, path: str | os.PathLike, *, digest: str | None = None, chunk: int = CHUNK,
                window: int = 4, progress: Progress | None = None,
                should_stop: Callable[[], bool] | None = None) -> dict:
    """Send a file to the engine's media store unless it has it; returns the final media.status map
    ({hash, present, received, path}; `path` is what job params name it by).

    Resumes from what the engine already has; keeps `window` chunks in flight on the connection.
    Uploads on one client take turns; another connection sending the same file at the same time is
    followed (its bytes are the same). Raises BridgeError: the engine's (hash_mismatch, disk_full...),
    "unreachable" when the connection breaks (upload again on a new client to resume), "cancelled".
    """
    path = Path(path)
    size = path.stat().st_size
    digest = digest or file_hash(path)
    if chunk < 1 or window < 1:
        raise BridgeError("bad_request", "chunk and window must be at least 1")
    with _client_lock(client):
        state = client.call("media.status", {"hash": digest})
        for _ in range(RESYNCS):
            if state["present"]:
                break
            if state["received"] > size:
                raise BridgeError("bad_request", f"the engine holds {state['received']} bytes of {path.name}, "
                                                 f"which has {size}")
            if progress is not None:
                progress(state["received"], size)
            state = _send_chunks(client, path, digest, size, state, chunk, window, progress, should_stop)
        if not state["present"]:
            raise BridgeError("busy", f"the upload of {path.name} kept moving under other connections; try again")
        if progress is not None:
            progress(size, size)
        return state


def _send_chunks(client: BridgeClient, path: Path, digest: str, size: int, state: dict, chunk: int, window: int,
                 progress: Progress | None, should_stop: Callable[[], bool] | None) -> dict:
    """Chunks from state["received"] to the end; returns the last answer, or the new status when
    another connection moved the same upload on meanwhile (the caller carries on from there)."""
    sent = state["received"]
    started = False  # an empty file still takes one (empty) chunk
    with open(path, "rb") as f, _Answers(client) as answers:
        f.seek(sent)
        pending: deque[tuple[int, int]] = deque()  # (request id, offset)
        while True:
            while len(pending) < window and (sent < size or not started):
                _check_stop(should_stop)
                data = f.read(min(chunk, size - sent))
                if len(data) != min(chunk, size - sent):
                    raise BridgeError("io_error", f"{path.name} changed while it was being sent")
                pending.append((answers.send("media.upload", {"hash": digest, "name": path.name, "size": size,
                                                              "offset": sent, "data": data}), sent))
                sent, started = sent + len(data), True
            if not pending:
                return state
            request_id, offset = pending.popleft()
            try:
                state = answers.answer(request_id)
            except BridgeError as err:
                if err.code != "bad_request":
                    raise
                now = client.call("media.status", {"hash": digest})
                if not now["present"] and now["received"] == offset:
                    raise  # not a moved offset: the chunk itself was refused
                return now
            if progress is not None:
                progress(state["received"], size)


def _local_name(local_dir: Path, name: str) -> Path:
    """Where a manifest's file goes: refused unless it stays under local_dir (an engine is not
    trusted to write the user's disk anywhere it likes)."""
    # ":" is a drive ("C:evil" leaves local_dir on Windows) or an alternate data stream there
    if not isinstance(name, str) or not name or any(c in name for c in ("\\", ":", "\0")):
        raise BridgeError("protocol", f"the engine listed a file outside the folder asked for: {name!r}")
    rel = PurePosixPath(name)
    if rel.is_absolute() or any(part in ("", ".", "..") for part in name.split("/")):
        raise BridgeError("protocol", f"the engine listed a file outside the folder asked for: {name!r}")
    return local_dir.joinpath(*rel.parts)


def download_files(client: BridgeClient, remote_path: str, local_dir: str | os.PathLike, *,
                   progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
                   chunk: int = CHUNK, window: int = 4) -> list[Path]:
    """Copy a workspace file or folder of the engine into local_dir; returns the local paths.

    Files already there with the right hash are not fetched again. Each file is written as
    `<name>.part`, checked against the manifest's hash, then renamed, so a file under its own name
    is always whole. Raises BridgeError("hash_mismatch") if a file changed on the engine meanwhile.
    """
    local_dir = Path(local_dir)
    manifest = client.call("files.manifest", {"path": remote_path}, timeout=MANIFEST_TIMEOUT)
    root, files = manifest["root"], manifest["files"]
    total, done, out = sum(f["size"] for f in files), 0, []
    with ThreadPoolExecutor(max_workers=window, thread_name_prefix="swapline-download") as pool:
        for entry in files:
            target = _local_name(local_dir, entry["path"])
            if not (target.is_file() and target.stat().st_size == entry["size"] and file_hash(target) == entry["hash"]):
                remote = entry["path"] if root in ("", ".") else f"{root}/{entry['path']}"
                _fetch(client, pool, remote, target, entry, window, chunk, should_stop,
                       None if progress is None else (lambda n, base=done: progress(base + n, total)))
            done += entry["size"]
            if progress is not None:
                progress(done, total)
            out.append(target)
    return out


def _fetch(client: BridgeClient, pool: ThreadPoolExecutor, remote: str, target: Path, entry: dict, window: int,
           chunk: int, should_stop: Callable[[], bool] | None, progress: Callable[[int], None] | None) -> None:
    """One file by `files.read`, `window` reads in flight (the answers are written in order)."""
    def read(offset: int) -> bytes:
        answer = client.call("files.read", {"path": remote, "offset": offset, "size": chunk}, timeout=ANSWER_TIMEOUT)
        return answer["data"]

    size, h = entry["size"], hashlib.sha256()
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    offsets = iter(range(0, size, chunk))
    reads = deque(pool.submit(read, o) for o in itertools.islice(offsets, window))
    written = 0
    try:
        with open(part, "wb") as f:
            while reads:
                _check_stop(should_stop)
                data = reads.popleft().result()
                if len(data) != min(chunk, size - written):
                    raise BridgeError("hash_mismatch", f"{entry['path']} changed on the engine while it was read")
                f.write(data)
                h.update(data)
                written += len(data)
                if (nxt := next(offsets, None)) is not None:
                    reads.append(pool.submit(read, nxt))
                if progress is not None:
                    progress(written)
            f.flush()
            os.fsync(f.fileno())
        if h.hexdigest() != entry["hash"]:
            raise BridgeError("hash_mismatch", f"{entry['path']} arrived with another hash than the engine "
                                               "listed; download it again")
        os.replace(part, target)
    except BaseException:
        for pending in reads:
            pending.cancel()
        part.unlink(missing_ok=True)
        raise
