"""Service layer: the live merge preview (`merge.preview`), answered at once from a warm session.

A session (the shot's merger with its model, a frame cache) takes seconds to open and ~1 GB to keep, so the
service keeps the two most recently used: the shot being tuned and the one before it (flipping
between two shots of a scene stays warm). An evicted session is closed: its decode thread stops
and its model is let go.

A session is reopened when what it loaded changed: the model's files (trained further), or the
faceset's faces, chosen people, drawn labels or learned masks (FacesetStore.change_stamp). A session
that fails to open hands its error to the requests that waited on it, and the same error answers
requests for that shot for a few seconds (a scrub sends many; each would retry a multi-second load).
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from pathlib import Path

from .errors import EngineError
from .service_args import arg

SESSIONS = 2
FAILED_FOR = 3.0  # seconds a shot's failed open answers its requests at once


class PreviewSessions:
    """The service's open preview sessions, most recently used last. Two requests for a shot whose
    session is opening wait for the one load; requests for other shots go on meanwhile."""

    def __init__(self, workspace, limit: int = SESSIONS) -> None:
        self.workspace = workspace
        self.limit = limit
        self._sessions: OrderedDict[tuple[str, str, str], object] = OrderedDict()
        self._opening: dict[tuple[str, str, str], threading.Lock] = {}  # shots whose session is loading
        # shot -> (when, stamp, code, message) of its last failed open
        self._failed: dict[tuple[str, str, str], tuple[float, tuple, str, str]] = {}
        self._lock = threading.Lock()

    def get(self, model: str, video: str, faceset: str):
        from .merge.preview import PreviewSession  # torch loads with the first preview

        key = (model, str(Path(video).resolve()), faceset)
        asked = time.monotonic()
        stamp = self._stamp(model, faceset)
        with self._lock:
            self._raise_failed(key, stamp, asked - FAILED_FOR)
            session = self._fresh(key, stamp)
            if session is not None:
                return session
            opening = self._opening.setdefault(key, threading.Lock())
        # a new session loads its model for seconds: only requests for this shot wait on it
        with opening:
            with self._lock:
                self._raise_failed(key, stamp, asked - FAILED_FOR)  # the open this request waited on failed
                session = self._fresh(key, stamp)
                if session is not None:
                    return session
            try:
                session = PreviewSession(self.workspace, model, key[1], faceset)
            except BaseException as exc:
                with self._lock:
                    self._opening.pop(key, None)
                    if isinstance(exc, EngineError):  # bad input stays bad; anything else is tried again
                        self._failed[key] = (time.monotonic(), stamp, exc.code, exc.message)
                raise
            session.stamp = stamp
            evicted = []
            with self._lock:
                self._failed.pop(key, None)
                stale = self._sessions.pop(key, None)
                if stale is not None:  # the model was trained further (or replaced) since it opened
                    evicted.append(stale)
                self._sessions[key] = session
                self._opening.pop(key, None)  # in the same hold: a later request finds the session
                while len(self._sessions) > self.limit:
                    evicted.append(self._sessions.popitem(last=False)[1])
        for old in evicted:  # a render in flight on it finishes first (it holds the session's lock)
            old.close()
        return session

    def _raise_failed(self, key: tuple, stamp: tuple, since: float) -> None:
        """Raise the error of `key`'s open that failed after `since`, with what it loaded unchanged
        (under the lock)."""
        failed = self._failed.get(key)
        if failed is None:
            return
        when, failed_stamp, code, message = failed
        if failed_stamp != stamp or time.monotonic() - when > FAILED_FOR:
            self._failed.pop(key, None)
        elif when >= since:
            raise EngineError(code, message)

    def _fresh(self, key: tuple, stamp: tuple):
        """The open session of `key` when nothing it loaded has changed since (under the lock)."""
        session = self._sessions.get(key)
        if session is None or session.stamp != stamp:
            return None
        self._sessions.move_to_end(key)
        return session

    def _stamp(self, model: str, faceset: str) -> tuple:
        """What a session loaded, as it is now: the model's files (a checkpoint saved since makes a
        session stale) and the faceset's change stamp (faces, people, labels, learned masks)."""
        try:
            files = tuple(sorted((e.name, e.stat().st_mtime_ns) for e in os.scandir(self.workspace.model_dir(model))
                                 if e.is_file()))
        except OSError:
            files = ()
        try:
            faces = self.workspace.facesets.change_stamp(faceset)
        except EngineError:  # an unknown faceset: the open says so
            faces = ()
        return files, faces

    def keys(self) -> list[tuple[str, str, str]]:
        with self._lock:
            return list(self._sessions)

    def close(self) -> None:
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for session in sessions:
            session.close()


def _sessions(service) -> PreviewSessions:
    # kept on the service object (one per engine); made on first use so service.py needs no change
    sessions = getattr(service, "previews", None)
    if sessions is None:
        with _make_lock:
            sessions = getattr(service, "previews", None)
            if sessions is None:
                sessions = service.previews = PreviewSessions(service.workspace)
    return sessions


_make_lock = threading.Lock()


def merge_preview(service, args: dict) -> dict:
    """{model, video, faceset, frame, settings, range?} -> {frame, layer, matte: PNG bytes, box, ms, cached}.
    range: [start, end) of source frames the shot shows (its frame cache fills only those)."""
    model = arg(args, "model", str)
    video = arg(args, "video", str)
    faceset = arg(args, "faceset", str)
    frame = arg(args, "frame", int)
    settings = arg(args, "settings", dict, {}, optional=True)
    shown = _frame_range(args)
    if not model or "/" in model or "\\" in model or model in (".", ".."):
        raise EngineError("bad_request", f"'model' must be a plain name, not {model!r}")
    session = _sessions(service).get(model, video, faceset)
    if shown is None:
        return session.render(frame, settings)
    return session.render(frame, settings, frame_range=shown)


def _frame_range(args: dict) -> tuple[int, int] | None:
    """The optional "range": [start, end) source frames, start < end (checked before a session opens)."""
    value = args.get("range")
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 2 or \
            not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise EngineError("bad_request", f"argument 'range' must be [start, end), two integers, not {value!r}")
    start, end = value
    if not 0 <= start < end:
        raise EngineError("bad_request", f"argument 'range' [{start}, {end}) is empty or negative: start must be "
                          "at least 0 and below end")
    return start, end


MERGE_OPS: dict = {"merge.preview": merge_preview}
