"""Service layer: the live merge preview (`merge.preview`), answered at once from a warm session.

A session (the shot's merger with its model, a frame cache) takes seconds to open and ~1 GB to keep, so the
service keeps the two most recently used: the shot being tuned and the one before it (flipping
between two shots of a scene stays warm). An evicted session is closed: its decode thread stops
and its model is let go.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path

from .errors import EngineError
from .service_args import arg

SESSIONS = 2


class PreviewSessions:
    """The service's open preview sessions, most recently used last. Two requests for a shot whose
    session is opening wait for the one load; requests for other shots go on meanwhile."""

    def __init__(self, workspace, limit: int = SESSIONS) -> None:
        self.workspace = workspace
        self.limit = limit
        self._sessions: OrderedDict[tuple[str, str, str], object] = OrderedDict()
        self._opening: dict[tuple[str, str, str], threading.Lock] = {}  # shots whose session is loading
        self._lock = threading.Lock()

    def get(self, model: str, video: str, faceset: str):
        from .merge.preview import PreviewSession  # torch loads with the first preview

        key = (model, str(Path(video).resolve()), faceset)
        stamp = self._model_stamp(model)
        with self._lock:
            session = self._fresh(key, stamp)
            if session is not None:
                return session
            opening = self._opening.setdefault(key, threading.Lock())
        # a new session loads its model for seconds: only requests for this shot wait on it
        with opening:
            with self._lock:
                session = self._fresh(key, stamp)
                if session is not None:
                    return session
            try:
                session = PreviewSession(self.workspace, model, key[1], faceset)
            except BaseException:
                with self._lock:
                    self._opening.pop(key, None)
                raise
            session.stamp = stamp
            evicted = []
            with self._lock:
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

    def _fresh(self, key: tuple, stamp: tuple):
        """The open session of `key` when its model has not been saved since (under the lock)."""
        session = self._sessions.get(key)
        if session is None or session.stamp != stamp:
            return None
        self._sessions.move_to_end(key)
        return session

    def _model_stamp(self, model: str) -> tuple:
        """When the model's files last changed: a checkpoint saved since makes a session stale."""
        try:
            return tuple(sorted((e.name, e.stat().st_mtime_ns) for e in os.scandir(self.workspace.model_dir(model))
                                if e.is_file()))
        except OSError:
            return ()

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
    """{model, video, faceset, frame, settings} -> {frame, layer: PNG bytes, box, ms, cached}."""
    model = arg(args, "model", str)
    video = arg(args, "video", str)
    faceset = arg(args, "faceset", str)
    frame = arg(args, "frame", int)
    settings = arg(args, "settings", dict, {}, optional=True)
    if not model or "/" in model or "\\" in model or model in (".", ".."):
        raise EngineError("bad_request", f"'model' must be a plain name, not {model!r}")
    return _sessions(service).get(model, video, faceset).render(frame, settings)


MERGE_OPS: dict = {"merge.preview": merge_preview}
