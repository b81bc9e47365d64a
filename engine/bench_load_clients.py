"""Service layer: the load generator of `bench load`, run as its own process by engine/bench_load.py.

`python -m engine.bench_load_clients --port P --token-file F --job ID [--clients 32] [--rate 10]
[--seconds 60]` runs that many clients on threads, each its own BridgeClient (its own connection and
handshake), calling job.get, job.list and engine.info in turn, paced or (rate 0) flat out, and
prints one JSON line: requests, requests/s, latency percentiles in ms, failures by code, connection
failures, its own CPU use in cores, and the window's start and end on time.monotonic() (on one
machine the bench's clock too).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

from bridge import BridgeClient, BridgeError

from .benchstats import p99, summary

CLIENTS = 32
RATE = 10.0  # requests/s per client when paced: a Blender add-on polls at most this often

OPS = ("job.get", "job.list", "engine.info")


def _client_loop(port: int, token: str, job_id: str, rate: float, start: float, end: float, out: dict) -> None:
    """One polling client: connect (again after a failure), then call in turn until `end`; paced
    clients start at `start` (staggered by the caller), each call 1/rate after the last was due."""
    latencies, failed, refused = out["latencies"], out["failed"], 0
    args = {"job.get": {"id": job_id}, "job.list": {}, "engine.info": {}}
    client, turn, due = None, 0, start - (1.0 / rate if rate > 0 else 0.0)
    while time.monotonic() < end:
        if client is None:
            try:
                client = BridgeClient("127.0.0.1", port, token, client_name="load", timeout=10)
                client.connect()
                client.start()
            except BridgeError:
                refused += 1
                client = None
                time.sleep(0.2)  # a retry pace, as the add-on's reconnect would keep
                continue
        if rate > 0:
            # A client that fell behind (a slow answer) goes on from now rather than catching up in a burst.
            due = max(due + 1.0 / rate, time.monotonic() - 1.0 / rate)
            if (pause := due - time.monotonic()) > 0:
                time.sleep(pause)  # the client's polling pace
            if time.monotonic() >= end:
                break
        op = OPS[turn % len(OPS)]
        turn += 1
        sent = time.perf_counter()
        try:
            client.call(op, args[op], timeout=30)
            latencies.append((time.perf_counter() - sent) * 1000)
        except BridgeError as err:
            failed[err.code] = failed.get(err.code, 0) + 1
            if not client.connected:
                client = None
    if client is not None:
        client.close()
    out["connection_failures"] += refused


def generate(port: int, token: str, job_id: str, clients: int, rate: float, seconds: float) -> dict:
    """Run `clients` polling clients for `seconds`; requests/s, latency, failures and the window's
    start and end (time.monotonic(), the same clock as the bench's on one machine)."""
    outs = [{"latencies": [], "failed": {}, "connection_failures": 0} for _ in range(clients)]
    # Every client starts at once, after a moment for the threads to exist: the window is the load's.
    start = time.monotonic() + 0.5
    end = start + seconds
    # Paced clients are spread over one period, as independent add-ons would be, not in lock-step.
    spread = [start + (i / clients) / rate if rate > 0 else start for i in range(clients)]
    threads = [threading.Thread(target=_client_loop, args=(port, token, job_id, rate, first, end, out), daemon=True)
               for first, out in zip(spread, outs)]
    for t in threads:
        t.start()
    time.sleep(max(0.0, start - time.monotonic()))  # the window's CPU count starts with the window
    cpu = _own_cpu()
    for t in threads:
        t.join()
    cpu_cores = None if cpu is None else (_own_cpu() - cpu) / (time.monotonic() - start)
    latencies = [x for out in outs for x in out["latencies"]]
    failed: dict[str, int] = {}
    for out in outs:
        for code, n in out["failed"].items():
            failed[code] = failed.get(code, 0) + n
    ordered = sorted(latencies) or [float("nan")]
    lat = summary(ordered)
    del lat["values"]  # tens of thousands of numbers say less than their percentiles
    lat["p99"] = p99(ordered)
    lat["mean"] = statistics.fmean(ordered)
    return {"requests": len(latencies), "requests_per_s": len(latencies) / seconds, "latency_ms": lat,
            "failed": sum(failed.values()), "failed_by_code": failed,
            "connection_failures": sum(out["connection_failures"] for out in outs), "generator_cpu_cores": cpu_cores,
            "start": start, "end": end}


def _own_cpu() -> float | None:
    try:
        import resource  # Unix only
    except ImportError:
        return None
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.bench_load_clients",
                                description="the load generator of bench load")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--token-file", required=True)
    p.add_argument("--job", required=True, help="the job id that job.get asks about")
    p.add_argument("--clients", type=int, default=CLIENTS)
    p.add_argument("--rate", type=float, default=RATE, help="requests/s per client; 0 = flat out")
    p.add_argument("--seconds", type=float, default=60.0)
    a = p.parse_args(argv)
    token = Path(a.token_file).read_text().strip()
    print(json.dumps(generate(a.port, token, a.job, a.clients, a.rate, a.seconds)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
