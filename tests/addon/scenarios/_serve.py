"""Scenario support: `python -m engine serve` of this checkout on loopback, as a person starts a
remote engine (its own workspace, a token file, a fixed port)."""

from __future__ import annotations

import os
import socket
import subprocess
import threading

REPO = os.path.realpath(os.path.join(os.environ["SWAPLINE_TEST_EXTENSIONS"], "swapline"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(workspace: str, port: int, token_file: str, tls: bool = False, timeout: float = 180.0) -> subprocess.Popen:
    """Start the engine; returns once it listens (raises RuntimeError if it never does). With `tls`,
    the process's `tls_fingerprint` is the one it printed (its certificate stays in the workspace)."""
    process = subprocess.Popen([os.path.join(REPO, ".venv", "bin", "python"), "-m", "engine", "serve",
                                "--workspace", workspace, "--port", str(port), "--token-file", token_file,
                                *(["--tls"] if tls else [])],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    process.tls_fingerprint = ""
    ready = threading.Event()
    lines: list[str] = []

    def pump() -> None:  # reads the pipe for the engine's whole life, so it never fills up
        for line in process.stdout:
            lines.append(line)
            if line.startswith("tls fingerprint:"):
                process.tls_fingerprint = line.split(":", 1)[1].strip()
            if "listening on" in line:
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(timeout) or process.poll() is not None:
        process.kill()
        raise RuntimeError("the engine never listened: " + "".join(lines[-20:]))
    return process
