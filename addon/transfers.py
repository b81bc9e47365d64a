"""Connection layer (no bpy): media up to a remote engine and results back, on a thread of their own.

A remote engine cannot read Blender's files, so a request that names a local file (`LOCAL_FILES`)
is held back until the file is on the engine: uploaded by content hash (bridge/transfer.py), once
per file and engine, resumed after a broken connection, then sent with the engine's
workspace-relative path instead. Finished results come back the other way (`download`). The
worker has its own BridgeClient, so a long upload never holds up the link's requests, and it posts
`Transfer` messages (progress and outcome) to the link's inbox for the drain in sync.py.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

from ..bridge import BridgeClient, BridgeError
from ..bridge import transfer as wire
from ..bridge.tls import TLSConfig

# Which local files each request names: (op, job kind) -> keys of the map that holds them (the job's
# params for job.start, the args otherwise).
LOCAL_FILES = {("job.start", "extract"): ("video",), ("job.start", "merge"): ("video",),
               ("job.start", "mask_matte"): ("video",), ("merge.preview", None): ("video",)}
# Files a job writes where the user asked: a remote engine writes them in its workspace under the
# file's name, and the add-on fetches them to the asked place when the job is done.
LOCAL_OUTPUTS = {("job.start", "export_dfm"): "output"}
RETRY_CODES = ("unreachable", "timeout")  # a broken connection: try again; anything else is final
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0, 10.0)
GIVE_UP_SECONDS = 60.0  # a transfer that gets no further for this long fails (the link's queue bound)
PROGRESS_SECONDS = 0.1  # at most this often a progress message per transfer

_digests: dict[tuple[str, int, int], str] = {}  # (path, size, mtime) -> sha256: hash a file once
_digests_lock = threading.Lock()


class Transfer(NamedTuple):
    """Progress or outcome of one upload or download, for the drain (a line under the job's kind)."""

    key: str          # "upload-<n>" or "download-<job id>"
    kind: str         # the job kind it serves (extract, merge, ...)
    label: str
    state: str        # running | done | failed | cancelled
    done: int         # bytes so far
    total: int        # bytes in all
    message: str
    sent: int = 0     # bytes sent by the attempt that finished it (0: the engine had them already)
    result: Any = None  # a finished download: {"remote": engine folder or file, "local": folder here}


@dataclass(frozen=True)
class Endpoint:
    """Where the engine listens and how to authenticate: what every client of the link uses."""

    host: str
    port: int
    token: str
    tls: TLSConfig | None = None  # None: plain TCP
    timeout: float = 10.0

    def client(self, inbox: Any = None, name: str = "swapline-blender") -> BridgeClient:
        return BridgeClient(self.host, self.port, self.token, client_name=name, timeout=self.timeout, inbox=inbox,
                            tls=self.tls)


def local_files(op: str, args: dict) -> dict[str, str]:
    """The local files a request names: {key: absolute path} (empty when it names none)."""
    keys = LOCAL_FILES.get((op, args.get("kind") if op == "job.start" else None), ())
    holder = args.get("params") if op == "job.start" else args
    if not isinstance(holder, dict):
        return {}
    return {key: holder[key] for key in keys if isinstance(holder.get(key), str) and os.path.isabs(holder[key])}


def remote_output(op: str, args: dict) -> tuple[dict, str] | None:
    """For a job that writes a file at a local path: (args naming only the file's name, which a remote
    engine writes in its workspace; the local path to fetch it to). None for any other request."""
    key = LOCAL_OUTPUTS.get((op, args.get("kind")))
    params = args.get("params")
    if key is None or not isinstance(params, dict) or not isinstance(params.get(key), str) \
            or not os.path.isabs(params[key]):
        return None
    return dict(args, params=dict(params, **{key: os.path.basename(params[key])})), params[key]


def with_remote_paths(op: str, args: dict, remote: dict[str, str]) -> dict:
    """A copy of `args` with each local file replaced by its path in the engine's workspace."""
    if op == "job.start":
        return dict(args, params=dict(args.get("params") or {}, **remote))
    return dict(args, **remote)


def known_digest(path: str) -> str | None:
    """The file's sha256 if it was hashed since it last changed (cheap: one stat)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    with _digests_lock:
        return _digests.get((path, st.st_size, st.st_mtime_ns))


def digest_of(path: str) -> str:
    """The file's sha256, hashed once per change of the file (worker thread: hashing takes a while)."""
    found = known_digest(path)
    if found is not None:
        return found
    st = os.stat(path)
    value = wire.file_hash(path)
    with _digests_lock:
        _digests[(path, st.st_size, st.st_mtime_ns)] = value
    return value


def localize(value: Any, remote_root: str, local_root: str) -> Any:
    """`value` (a job result) with every path inside the engine's `remote_root` moved under `local_root`."""
    if isinstance(value, dict):
        return {k: localize(v, remote_root, local_root) for k, v in value.items()}
    if isinstance(value, list):
        return [localize(v, remote_root, local_root) for v in value]
    if isinstance(value, str):
        root = remote_root.rstrip("/\\")
        if value == root:
            return local_root
        if value.startswith(root) and value[len(root):len(root) + 1] in ("/", "\\"):
            parts = value[len(root) + 1:].replace("\\", "/").split("/")
            return os.path.join(local_root, *parts)
    return value


class _Discard:
    """The transfer connection's inbox: its answers are awaited by call(); the engine's job events,
    which every connection gets, are the link's business and are dropped here."""

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        pass


@dataclass
class _Task:
    key: str
    kind: str
    label: str
    run: Callable[[BridgeClient, "_Task"], Any]
    finished: Callable[[Any], None]
    failed: Callable[[str, str], None]
    last_post: float = 0.0
    extra: dict = field(default_factory=dict)


class TransferWorker:
    """Uploads and downloads for one link, one at a time, on their own thread and connection."""

    def __init__(self, endpoint: Endpoint, post: Callable[[Any], None]) -> None:
        self.endpoint = endpoint
        self._post = post
        self._tasks: queue.Queue = queue.Queue()
        self._cancelled: set[str] = set()
        self._present: dict[str, str] = {}  # sha256 -> workspace path, known to be on this engine
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()      # cuts a retry wait short (cancel, close)
        self._client: BridgeClient | None = None
        self._thread = threading.Thread(target=self._run, name="swapline-transfers", daemon=True)
        self._thread.start()

    # Any thread ------------------------------------------------------------------------------

    def remote_paths(self, files: dict[str, str]) -> dict[str, str] | None:
        """{key: engine path} when every file is known to be on the engine already, else None."""
        found = {}
        with self._lock:
            for key, path in files.items():
                digest = known_digest(path)
                if digest is None or digest not in self._present:
                    return None
                found[key] = self._present[digest]
        return found

    def upload(self, key: str, kind: str, label: str, files: dict[str, str],
               finished: Callable[[dict], None], failed: Callable[[str, str], None]) -> None:
        """Put `files` on the engine; `finished({key: engine path})` or `failed(code, message)` follows."""
        self._submit(_Task(key, kind, label, self._upload, finished, failed, extra={"files": dict(files)}))

    def download(self, key: str, kind: str, label: str, remote_dir: str, local_dir: str,
                 finished: Callable[[list], None], failed: Callable[[str, str], None]) -> None:
        """Copy the engine's folder `remote_dir` into `local_dir` (files already there and equal stay)."""
        self._submit(_Task(key, kind, label, self._download, finished, failed,
                           extra={"remote": remote_dir, "local": local_dir}))

    def _submit(self, task: _Task) -> None:
        with self._lock:
            if not self._stop.is_set():
                self._tasks.put(task)
                return
        self._end(task, "cancelled", self._stop_reason(task))

    def cancel(self, key: str) -> None:
        with self._lock:
            self._cancelled.add(key)
        self._wake.set()

    def close(self) -> None:
        """Stop: the running transfer ends as cancelled, queued ones too (the link is gone). Never
        blocks: the connection is closed on a thread of its own (closing waits for its reader)."""
        with self._lock:
            self._stop.set()
            self._tasks.put(None)
        self._wake.set()
        client = self._client
        if client is not None:
            threading.Thread(target=client.close, name="swapline-transfers-close", daemon=True).start()

    # Worker thread ---------------------------------------------------------------------------

    def _stopped(self, key: str) -> bool:
        with self._lock:
            return self._stop.is_set() or key in self._cancelled

    def _run(self) -> None:
        while True:
            task = self._tasks.get()
            if task is None:
                break
            self._perform(task)
        # what is left was never started: say so, so no request waits for it
        while True:
            try:
                task = self._tasks.get_nowait()
            except queue.Empty:
                break
            if task is not None:
                self._end(task, "cancelled", self._stop_reason(task))

    def _perform(self, task: _Task) -> None:
        attempt, lost_since, done_then = 0, None, -1
        while True:
            if self._stopped(task.key):
                self._end(task, "cancelled", self._stop_reason(task))
                return
            try:
                result = task.run(self._connected(), task)
            except BridgeError as exc:
                if exc.code == "cancelled" or self._stopped(task.key):
                    self._end(task, "cancelled", self._stop_reason(task))
                    return
                if exc.code not in RETRY_CODES:
                    self._end(task, "failed", exc.message)
                    return
                self._drop_client()
                done = task.extra.get("done", 0)
                if done != done_then:  # it got further since the last break: a fresh bound
                    lost_since, done_then, attempt = time.monotonic(), done, 0
                if time.monotonic() - lost_since > GIVE_UP_SECONDS:
                    self._end(task, "failed", f"The engine has been unreachable for {GIVE_UP_SECONDS:.0f} s "
                                              f"({exc.message}); asked again, it carries on where it stopped")
                    return
                delay = RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)]
                attempt += 1
                self._progress(task, done, task.extra.get("total", 0), force=True,
                               text=f"Connection lost ({exc.message}); retrying in {delay:g} s…")
                self._wake.clear()
                self._wake.wait(delay)
                continue
            except OSError as exc:
                self._end(task, "failed", f"{task.label}: {exc.strerror or exc}")
                return
            except Exception as exc:  # noqa: BLE001 - one bad transfer must not end the worker for all
                self._end(task, "failed", f"{task.label}: {type(exc).__name__}: {exc}")
                return
            if self._stopped(task.key):  # cancelled as the last answer came: the request stays unsent
                self._end(task, "cancelled", self._stop_reason(task))
                return
            task.finished(result)
            self._post(Transfer(task.key, task.kind, task.label, "done", task.extra.get("total", 0),
                                task.extra.get("total", 0), "Done", task.extra.get("sent", 0),
                                task.extra.get("result")))
            return

    def _stop_reason(self, task: _Task) -> str:
        if self._stop.is_set():
            return "The engine link was closed"
        return "Upload cancelled" if task.key.startswith("upload") else "Download cancelled"

    def _end(self, task: _Task, state: str, message: str) -> None:
        task.failed(state if state == "cancelled" else "transfer_failed", message)
        self._post(Transfer(task.key, task.kind, task.label, state, task.extra.get("done", 0),
                            task.extra.get("total", 0), message, task.extra.get("sent", 0)))

    def _connected(self) -> BridgeClient:
        if self._client is None or not self._client.connected:
            self._drop_client()
            client = self.endpoint.client(inbox=_Discard(), name="swapline-blender-transfers")
            client.connect()  # BridgeError("unreachable") when the engine is away: retried
            self._client = client
            if self._stop.is_set():
                client.close()
        return self._client

    def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def _progress(self, task: _Task, done: int, total: int, force: bool = False, text: str = "") -> None:
        task.extra["done"], task.extra["total"] = done, total
        now = time.monotonic()
        if not force and now - task.last_post < PROGRESS_SECONDS and done < total:
            return
        task.last_post = now
        verb = "Uploading" if task.key.startswith("upload") else "Downloading"
        line = text or f"{verb} {task.extra.get('name', '')}: {_megabytes(done)} of {_megabytes(total)}"
        self._post(Transfer(task.key, task.kind, task.label, "running", done, total, line, task.extra.get("sent", 0)))

    def _upload(self, client: BridgeClient, task: _Task) -> dict:
        files = task.extra["files"]
        total = sum(os.path.getsize(path) for path in files.values())
        remote, base = {}, 0
        for key, path in files.items():
            size = os.path.getsize(path)
            task.extra["name"] = os.path.basename(path)
            self._progress(task, base, total, force=True, text=f"Hashing {task.extra['name']}…")
            digest = digest_of(path)
            with self._lock:
                known = self._present.get(digest)
            if known is None:
                status = client.call("media.status", {"hash": digest})
                if not status.get("present"):
                    before = int(status.get("received") or 0)
                    status = wire.upload_file(
                        client, path, digest=digest, should_stop=lambda: self._stopped(task.key),
                        progress=lambda done, _total, b=base: self._progress(task, b + done, total))
                    task.extra["sent"] = task.extra.get("sent", 0) + size - before
                known = str(status["path"])
                with self._lock:
                    self._present[digest] = known
            remote[key] = known
            base += size
            self._progress(task, base, total, force=True)
        return remote

    def _download(self, client: BridgeClient, task: _Task) -> list:
        task.extra["name"] = os.path.basename(task.extra["remote"].rstrip("/\\")) or "result"
        paths = wire.download_files(client, task.extra["remote"], task.extra["local"],
                                    should_stop=lambda: self._stopped(task.key),
                                    progress=lambda done, total: self._progress(task, done, total))
        task.extra["result"] = {"remote": task.extra["remote"], "local": task.extra["local"]}
        return paths


def _megabytes(count: int) -> str:
    return f"{count / 1e6:.1f} MB"
