"""Connection layer (no bpy): start a local engine process and learn where it listens.

Runs on the link's worker thread only: launching waits for the engine's ready line, which can take
many seconds while torch imports, and Blender's main thread must never wait on that.
"""

from __future__ import annotations

import atexit
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..bridge import BridgeError

_LIVE: set[subprocess.Popen] = set()  # engines started here and not yet stopped
READY_LINE = re.compile(r"swapline-engine listening on (?P<host>\S+):(?P<port>\d+)")
LOG_NAME = "engine.log"


class LaunchError(BridgeError):
    """The local engine could not be started; `code` is stable, `message` is for a person.

    A BridgeError, so the link handles every failure to reach an engine as one domain error.
    """


def default_python(extension_root: Path) -> Path:
    """The project's own virtual environment, next to the add-on (a developer checkout)."""
    if sys.platform == "win32":
        return extension_root / ".venv" / "Scripts" / "python.exe"
    return extension_root / ".venv" / "bin" / "python"


@dataclass
class LocalEngine:
    """A running engine process started by the add-on, and where it listens."""

    process: subprocess.Popen
    host: str
    port: int
    log_path: Path

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, grace: float = 5.0) -> None:
        """Ask the engine to exit, then kill it if it has not after `grace` seconds (worker thread)."""
        _stop_process(self.process, grace)

    def signal_stop(self) -> None:
        """Send the terminate signal without waiting (safe on Blender's main thread)."""
        if self.process.poll() is None:
            try:
                self.process.terminate()
            except OSError:
                pass


def launch(python: str, workspace: str, token: str, *, cwd: str | None = None, timeout: float = 120.0,
           should_stop: Callable[[], bool] = lambda: False) -> LocalEngine:
    """Start `python -m engine serve` and return once it prints its ready line.

    stderr goes to `<workspace>/engine.log`; stdout is read for the ready line, then copied to the
    same log so the pipe never fills up.
    """
    python_path = Path(python)
    if not python_path.is_file():
        raise LaunchError("python_missing",
                          f"Engine Python not found: {python}. Set it in the Swapline add-on preferences.")
    ws = Path(workspace)
    log_path = ws / LOG_NAME
    # The token goes through a private file, not argv, which other local users can read (ps).
    token_path = ws / f".engine-token-{os.getpid()}"
    try:
        ws.mkdir(parents=True, exist_ok=True)
        with os.fdopen(os.open(token_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(token)
        log = open(log_path, "ab", buffering=0)
    except OSError as exc:
        raise LaunchError("workspace", f"Cannot write to the workspace {ws}: {exc.strerror or exc}") from exc
    command = [str(python_path), "-m", "engine", "serve", "--workspace", str(ws),
               "--host", "127.0.0.1", "--port", "0", "--token-file", str(token_path)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    flags = getattr(subprocess, "CREATE_NO_WINDOW", 0) if sys.platform == "win32" else 0
    try:
        process = subprocess.Popen(command, cwd=cwd or str(ws), stdout=subprocess.PIPE, stderr=log,
                                   stdin=subprocess.DEVNULL, env=env, creationflags=flags)
    except OSError as exc:
        log.close()
        token_path.unlink(missing_ok=True)
        raise LaunchError("launch_failed", f"Could not start the engine with {python}: {exc.strerror or exc}") from exc

    _LIVE.add(process)
    engine = LocalEngine(process, "", 0, log_path)
    ready: dict[str, str] = {}
    ready_event = threading.Event()

    def pump_stdout() -> None:
        # Copies stdout to the log for the life of the process; the first ready line wakes launch().
        with log:
            for raw in iter(process.stdout.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip()
                log.write(raw)
                match = READY_LINE.search(line)
                if match and not ready_event.is_set():
                    ready.update(match.groupdict())
                    ready_event.set()
            ready_event.set()

    threading.Thread(target=pump_stdout, name="swapline-engine-stdout", daemon=True).start()

    try:
        _wait_ready(engine, ready_event, timeout, should_stop)
    finally:
        token_path.unlink(missing_ok=True)  # read by the engine before it reports ready
    if not ready:
        code = process.wait(timeout=5)
        raise LaunchError("engine_exited", f"The engine exited (code {code}) before it was ready: "
                                           f"{_stderr_tail(log_path)} (log: {log_path})")
    engine.host, engine.port = ready["host"], int(ready["port"])
    return engine


def _wait_ready(engine: LocalEngine, ready: threading.Event, timeout: float, should_stop: Callable[[], bool]) -> None:
    deadline = time.monotonic() + timeout
    while not ready.wait(0.1):
        if should_stop():
            engine.stop()
            raise LaunchError("cancelled", "Engine launch cancelled")
        if time.monotonic() > deadline:
            engine.stop()
            raise LaunchError("timeout", f"The engine did not report ready within {timeout:.0f} s; "
                                         f"see {engine.log_path}")


def _stderr_tail(log_path: Path, lines: int = 3) -> str:
    try:
        text = log_path.read_text("utf-8", "replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])


def _stop_process(process: subprocess.Popen, grace: float) -> None:
    try:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=grace)
    except OSError:
        pass
    _LIVE.discard(process)


@atexit.register
def _stop_all() -> None:
    # Blender unregisters add-ons when it quits, which stops the engine; this catches the rest
    # (a script that exits while an engine is still starting, say), so none is left orphaned.
    for process in list(_LIVE):
        _stop_process(process, 3.0)
