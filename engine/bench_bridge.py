"""Service layer: `python -m engine bench bridge`, the bridge's own figures against raw loopback TCP,
and the engine subprocess that it, bench preview and bench load talk to (start_engine, served).

An engine subprocess (so the client's interpreter lock is not the server's) serves a fresh
workspace on loopback; one client measures (a) the round trip of `engine.info`, median and p99 over
many calls, (b) a 200 MB file up through upload_file (the blob is deleted between runs, so each is a
real upload) and back through download_files, and (c) the reference: the same bytes copied
between two plain loopback sockets (sendall / recv_into) in the same run; ratios are to it.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from bridge import BridgeClient
from bridge.transfer import download_files, file_hash, upload_file

from .benchstats import measure, p99, summary

ROOT = Path(__file__).resolve().parents[1]  # where `python -m engine` runs from
FILE_MB = 200      # at the default 10 s; a shorter --seconds scales it (and the call count) down
CALLS = 2000
MB = 1e6


# The engine the benches talk to: `engine serve` on a free port, read off its first line ---------------

def start_engine(workspace: Path, auth: list[str], bench: str = "bench bridge") -> tuple[subprocess.Popen, int]:
    """`engine serve` on a free loopback port with `auth` (["--token", t] or ["--token-file", f]); (process, port).
    `bench` names the caller in the error when the engine exits before it listens."""
    proc = subprocess.Popen([sys.executable, "-m", "engine", "serve", "--workspace", str(workspace), "--port", "0",
                             *auth], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in proc.stdout:  # the engine prints what it listens on once it is ready
        if match := re.search(r"listening on \S+:(\d+)", line):
            threading.Thread(target=shutil.copyfileobj, args=(proc.stdout, open(os.devnull, "w")), daemon=True).start()
            return proc, int(match.group(1))
    proc.wait(timeout=30)
    raise RuntimeError(f"{bench}: the engine did not start (exit code {proc.returncode})")


@contextmanager
def served(workspace: Path, bench: str, token_file: Path | None = None, client_name: str = "bench",
           timeout: float = 300) -> Iterator[tuple[BridgeClient, subprocess.Popen, int]]:
    """(connected client, engine process, port) of an engine subprocess serving `workspace`, with a
    fresh token or the one in `token_file` (for a bench whose other clients read it there); the
    client closes and the engine stops on leaving."""
    token = token_file.read_text().strip() if token_file else secrets.token_urlsafe(16)
    proc, port = start_engine(workspace, ["--token-file", str(token_file)] if token_file else ["--token", token], bench)
    client = None
    try:
        client = BridgeClient("127.0.0.1", port, token, client_name=client_name, timeout=timeout)
        client.connect()
        client.start()
        yield client, proc, port
    finally:
        if client is not None:
            client.close()
        proc.terminate()
        proc.wait(timeout=60)


# bench bridge ----------------------------------------------------------------------------------------

def _write_random(path: Path, size: int) -> None:
    with open(path, "wb") as f:  # random bytes: nothing on the way can compress them
        for start in range(0, size, 2**24):
            f.write(os.urandom(min(2**24, size - start)))


def loopback_copy(data: bytes) -> float:
    """MB/s of copying `data` from one loopback TCP socket to another (sendall, recv_into)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        got = 0

        def receive() -> None:
            nonlocal got
            conn, _ = listener.accept()
            buffer = memoryview(bytearray(2**20))
            with conn:
                while count := conn.recv_into(buffer):
                    got += count

        reader = threading.Thread(target=receive)
        reader.start()
        with socket.create_connection(listener.getsockname()) as sender:
            start = time.perf_counter()
            sender.sendall(data)
            sender.shutdown(socket.SHUT_WR)
            reader.join()
            elapsed = time.perf_counter() - start
    if got != len(data):
        raise RuntimeError(f"bench bridge: the loopback reference received {got} of {len(data)} bytes")
    return len(data) / MB / elapsed


def _latency(client: BridgeClient, calls: int) -> dict:
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        client.call("engine.info")
        times.append((time.perf_counter() - start) * 1000)
    stats = summary(times)
    del stats["values"]  # thousands of numbers say less than their percentiles
    return {**stats, "p99": p99(sorted(times)), "unit": "ms"}


def bench_bridge(seconds: float) -> dict:
    """Round-trip latency and transfer speed over a real bridge connection, with a loopback reference."""
    scale = min(1.0, seconds / 10.0)
    size = max(2**20, int(FILE_MB * MB * scale))
    calls = max(50, int(CALLS * scale))
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        workspace, source, back = tmp / "ws", tmp / "bench.bin", tmp / "back"
        _write_random(source, size)
        digest = file_hash(source)
        with served(workspace, "bench bridge") as (client, _, _):
            latency = _latency(client, calls)
            print(f"  engine.info round trip: median {latency['median']:.3f} ms, p99 {latency['p99']:.3f} ms "
                  f"(min {latency['min']:.3f}, max {latency['max']:.3f}) over {calls} calls")
            remote = ""

            def upload() -> float:
                nonlocal remote
                for blob in (workspace / "media").glob(f"{digest}*"):  # each run a real upload
                    blob.unlink()
                start = time.perf_counter()
                remote = upload_file(client, source, digest=digest)["path"]
                return size / MB / (time.perf_counter() - start)

            def download() -> float:
                shutil.rmtree(back, ignore_errors=True)
                start = time.perf_counter()
                (local,) = download_files(client, remote, back)
                rate = size / MB / (time.perf_counter() - start)
                if file_hash(local) != digest:
                    raise RuntimeError("bench bridge: the downloaded file differs from the uploaded one")
                return rate

            up, down = measure(upload), measure(download)
        data = source.read_bytes()
        reference = measure(lambda: loopback_copy(data))
    result = {"size_mb": size / MB, "latency": latency, "upload": {"unit": "MB/s", **up},
              "download": {"unit": "MB/s", **down},
              "reference": {"name": "raw loopback TCP", "unit": "MB/s", **reference},
              "upload_ratio": up["median"] / reference["median"],
              "download_ratio": down["median"] / reference["median"]}
    for name in ("upload", "download", "reference"):
        r = result[name]
        print(f"  {name} of {size / MB:.0f} MB: median {r['median']:.0f} MB/s (min {r['min']:.0f}, max {r['max']:.0f})")
    print(f"  transfer / raw loopback: upload {result['upload_ratio']:.2f}x, download {result['download_ratio']:.2f}x")
    return result
