"""Service layer: `python -m engine bench load`, training speed while many clients poll the engine.

An engine subprocess trains a small model on faces extracted from a generated clip. A load-generator
subprocess (so the clients' work and interpreter lock are not the engine's) runs N clients, each its
own BridgeClient with its own connection and handshake, calling job.get, job.list and engine.info in
turn at a set pace (a Blender add-on polls at most ~10 times a second). Training iterations/s come
from the job's progress events over each window: baseline, paced load, baseline, flat-out load
(every client calling again as soon as answered), baseline; then, with training stopped, the paced
load once more, for what answering it costs the engine alone (CPU ms a request). The load's figure
is compared with the mean of the baselines on either side of it; CPU use (in cores) of the engine
and of the load generator is reported for each window, as on a small machine they share the cores.
`--seconds` scales every window: at the default 10 the paced load lasts 60 s and each baseline, the
flat-out load and the idle engine's window 20 s. The load generator is engine/bench_load_clients.py.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bridge import BridgeClient

from .bench_bridge import served
from .bench_load_clients import CLIENTS, RATE

LOAD_FACTOR = 6      # paced load window = 6 x --seconds
BASE_FACTOR = 2      # each baseline and the flat-out window = 2 x --seconds
MAX_DROP = 0.10      # the paced load may cost training at most this share of its speed
CLIENT_NICE = 19     # the load generator's niceness (see _clients_aside)
WARMUP_S = 3.0       # training's first seconds (model build, first batches) are not a baseline
# Small enough to train at a steady pace on a CPU, big enough that a step is real work (tens of ms).
TRAIN = {"resolution": 64, "arch": "df", "ae_dims": 64, "e_dims": 16, "d_dims": 16, "d_mask_dims": 8,
         "batch_size": 4, "workers": 0, "seed": 0, "report_every_s": 0.25, "preview_every_s": 0,
         "save_every_s": 3600.0, "iterations": 10**9}
ROOT = Path(__file__).resolve().parents[1]


def _extract_faces(workspace: Path) -> int:
    """Faceset "f": the faces of a short generated portrait clip (source and destination both)."""
    from .faces.extract import ExtractParams, extract_faces
    from .media.synthetic import make_clip
    from .workspace import Workspace

    clip = make_clip("hopper", workspace.parent / "load.mp4", seconds=1.0, fps=12, size=(320, 240))
    ws = Workspace(workspace)
    try:
        found = extract_faces(ws, ExtractParams(video=str(clip), faceset="f", size=128), lambda *a: None,
                              lambda: False)["faces"]
    finally:
        ws.close()
    if not found:
        raise RuntimeError("bench load: no faces found in the generated clip")
    return found


class Progress:
    """(arrival time, iteration) of each progress event of one job, read off a client's inbox."""

    def __init__(self, client: BridgeClient, job_id: str) -> None:
        self.samples: list[tuple[float, int]] = []
        self.ended: dict | None = None
        self._job, self._inbox, self._changed = job_id, client.inbox, threading.Condition()
        threading.Thread(target=self._read, daemon=True, name="bench-load-progress").start()

    def _read(self) -> None:
        while True:
            message = self._inbox.get()
            job = message.payload.get("job") if message.kind == "event" else None
            with self._changed:
                if message.kind == "closed":
                    self.ended = self.ended or {"error": {"code": "closed", "message": message.payload}}
                elif job and job.get("id") == self._job:
                    if job["state"] in ("failed", "cancelled", "done"):
                        self.ended = job
                    iteration = (job.get("stats") or {}).get("iteration")
                    if isinstance(iteration, int):
                        self.samples.append((time.monotonic(), iteration))
                self._changed.notify_all()
            if message.kind == "closed":
                return

    def wait_for(self, seconds_of_training: float, timeout: float) -> None:
        """Block until training has reported for `seconds_of_training` (its start-up is over)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not (self.samples and self.samples[-1][0] - self.samples[0][0] >= seconds_of_training):
                if self.ended is not None:
                    raise RuntimeError(f"bench load: the training job ended: {self.ended.get('error')}")
                if not self._changed.wait(deadline - time.monotonic()):
                    raise RuntimeError(f"bench load: training did not get going within {timeout:g} s")

    def wait_ended(self, timeout: float) -> None:
        """Block until the job has ended (cancelled, failed or done)."""
        with self._changed:
            if not self._changed.wait_for(lambda: self.ended is not None, timeout):
                raise RuntimeError(f"bench load: the training job did not end within {timeout:g} s")

    def wait_for_events(self, since: float, count: int, timeout: float) -> None:
        """Block until `count` events have arrived since `since`, the job ended or the timeout passed."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while sum(t >= since for t, _ in self.samples) < count and self.ended is None:
                if not self._changed.wait(deadline - time.monotonic()):
                    return

    def rate(self, start: float, end: float) -> float:
        """Iterations/s over [start, end]: the count at each edge interpolated between the events either
        side of it, so a load that slows training to a step a second is still measured over its window."""
        self.wait_for_events(end, 1, timeout=120)  # without one, training is taken to have stopped at `end`
        with self._changed:
            samples = list(self.samples)
        return (_iteration_at(samples, end) - _iteration_at(samples, start)) / (end - start)


def _iteration_at(samples: list[tuple[float, int]], when: float) -> float:
    before = [s for s in samples if s[0] <= when]
    after = [s for s in samples if s[0] > when]
    if not before:
        raise RuntimeError("bench load: no progress event before the window began")
    (t0, i0) = before[-1]
    if not after:
        return float(i0)
    (t1, i1) = after[0]
    return i0 + (i1 - i0) * (when - t0) / (t1 - t0)


def _cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system, all threads) a process has used so far; None where /proc is not there."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def _machine_ticks() -> tuple[int, int] | None:
    """(steal, total) CPU ticks of the whole machine so far; None where /proc/stat is not there."""
    try:
        ticks = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    return (ticks[7] if len(ticks) > 7 else 0), sum(ticks[:8])


class EngineCPU:
    """The engine's CPU use over a window, in cores (1.0 = one core busy throughout), and the share
    of the machine's CPU time the hypervisor took for other guests meanwhile (a VM's noise)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.start, self.cpu = pid, time.monotonic(), _cpu_seconds(pid)
        self.ticks = _machine_ticks()

    def cores(self) -> float | None:
        now = _cpu_seconds(self.pid)
        return None if now is None or self.cpu is None else (now - self.cpu) / (time.monotonic() - self.start)

    def stolen(self) -> float | None:
        now = _machine_ticks()
        if now is None or self.ticks is None or now[1] <= self.ticks[1]:
            return None
        return (now[0] - self.ticks[0]) / (now[1] - self.ticks[1])


def _baseline(progress: Progress, pid: int, seconds: float) -> dict:
    cpu = EngineCPU(pid)
    time.sleep(seconds)  # a measuring window: training runs meanwhile, nothing is waited for
    cores = cpu.cores()
    return {"train_rate": progress.rate(cpu.start, cpu.start + seconds), "engine_cpu_cores": cores,
            "stolen": cpu.stolen()}


def _load(progress: Progress | None, pid: int, port: int, token_file: Path, job_id: str, clients: int, rate: float,
          seconds: float) -> dict:
    """Run the load generator for `seconds`; its figures and training's rate over its window."""
    cpu = EngineCPU(pid)  # from the generator's start-up on: a second more than its window, at most
    cmd = [sys.executable, "-m", "engine.bench_load_clients", "--port", str(port), "--token-file", str(token_file),
           "--job", job_id, "--clients", str(clients), "--rate", str(rate), "--seconds", str(seconds)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=seconds + 300,
                          preexec_fn=_clients_aside if hasattr(os, "nice") else None)
    if done.returncode != 0:
        raise RuntimeError(f"bench load: the load generator failed: {done.stderr.strip()[-2000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    figures["engine_cpu_cores"] = cpu.cores()
    figures["stolen"] = cpu.stolen()
    start, end = figures.pop("start"), figures.pop("end")
    figures["train_rate"] = progress.rate(start, end) if progress is not None else None
    return figures


def _clients_aside() -> None:
    """The load generator stands in for Blender on other machines: at the lowest priority it takes
    only what the engine leaves idle, so on one small box it does not eat training's cores. The
    engine's own cost of answering stays in the figures (engine CPU, and the idle-engine window)."""
    os.nice(CLIENT_NICE)


def bench_load(seconds: float, clients: int = CLIENTS, rate: float = RATE, flat_out: bool = True) -> dict:
    """Training iterations/s with `clients` polling clients (paced, then flat out) against baselines."""
    base_s, load_s = BASE_FACTOR * seconds, LOAD_FACTOR * seconds
    with tempfile.TemporaryDirectory(prefix="swapline-bench-load-") as d:
        tmp = Path(d)
        faces = _extract_faces(tmp / "ws")
        token_file = tmp / "token"
        token_file.write_text(secrets.token_urlsafe(24))
        served_engine = served(tmp / "ws", "bench load", token_file, client_name="bench-load", timeout=60)
        with served_engine as (monitor, proc, port):
            engine = monitor.call("engine.info", timeout=60)
            job = monitor.call("job.start", {"kind": "train", "params": {
                "model": "m", "source": "f", "destination": "f", **TRAIN}}, timeout=60)
            progress = Progress(monitor, job["id"])
            progress.wait_for(WARMUP_S, timeout=600)
            baselines = [_baseline(progress, proc.pid, base_s)]
            paced = _load(progress, proc.pid, port, token_file, job["id"], clients, rate, load_s)
            baselines.append(_baseline(progress, proc.pid, base_s))
            result = {"clients": clients, "rate_per_client": rate, "seconds": {"baseline": base_s, "load": load_s},
                      "device": engine.get("device"), "faces": faces, "train": {"unit": "iterations/s", **TRAIN}}
            result["paced"] = _judge(paced, baselines[0], baselines[1])
            if flat_out:
                flat = _load(progress, proc.pid, port, token_file, job["id"], clients, 0.0, base_s)
                baselines.append(_baseline(progress, proc.pid, base_s))
                result["flat_out"] = _judge(flat, baselines[1], baselines[2])
            result["baselines"] = baselines
            result["ok"] = result["paced"]["train_drop"] < MAX_DROP and result["paced"]["failed"] == 0
            monitor.call("job.cancel", {"id": job["id"]}, timeout=60)
            progress.wait_ended(timeout=120)
            # The same paced load on the idle engine: what answering it costs the engine, alone.
            idle = _load(None, proc.pid, port, token_file, job["id"], clients, rate, base_s)
            idle.pop("train_rate")
            cpu_ms = idle["engine_cpu_cores"] * 1000 / idle["requests_per_s"] if idle["engine_cpu_cores"] else None
            result["idle_engine"] = {**idle, "engine_cpu_ms_per_request": cpu_ms}
    _print(result)
    return result


def _judge(load: dict, before: dict, after: dict) -> dict:
    baseline = (before["train_rate"] + after["train_rate"]) / 2
    drop = 1 - load["train_rate"] / baseline if baseline > 0 else math.nan  # nan: training stood still
    return {**load, "train_baseline": baseline, "train_drop": drop}


def _print(result: dict) -> None:
    for name in ("paced", "flat_out"):
        r = result.get(name)
        if r is None:
            continue
        lat = r["latency_ms"]
        pace = f"{result['rate_per_client']:g}/s each" if name == "paced" else "flat out"
        print(f"  {name} ({result['clients']} clients, {pace}): {r['requests_per_s']:.0f} requests/s, latency median "
              f"{lat['median']:.2f} ms p90 {lat['p90']:.2f} p99 {lat['p99']:.2f} max {lat['max']:.1f}; "
              f"{r['failed']} failed, {r['connection_failures']} connection failures; training "
              f"{r['train_rate']:.2f} it/s vs {r['train_baseline']:.2f} baseline ({100 * r['train_drop']:+.1f}% drop); "
              f"CPU in cores: engine {_cores(r['engine_cpu_cores'])}, "
              f"load generator {_cores(r['generator_cpu_cores'])}; stolen by the hypervisor {_share(r['stolen'])}")
    idle = result["idle_engine"]
    cpu_ms = "?" if idle["engine_cpu_ms_per_request"] is None else f"{idle['engine_cpu_ms_per_request']:.3f}"
    print(f"  idle engine, same paced load: {idle['requests_per_s']:.0f} requests/s cost it "
          f"{_cores(idle['engine_cpu_cores'])} cores ({cpu_ms} ms CPU a request); load generator "
          f"{_cores(idle['generator_cpu_cores'])} cores")
    rates = ", ".join(f"{b['train_rate']:.2f}" for b in result["baselines"])
    cores = ", ".join(_cores(b["engine_cpu_cores"]) for b in result["baselines"])
    stolen = ", ".join(_share(b["stolen"]) for b in result["baselines"])
    print(f"  (the load generator ran at nice {CLIENT_NICE}: its clients stand in for other machines)")
    print(f"  baselines {rates} it/s, engine CPU {cores} cores, stolen {stolen}; "
          f"paced drop under {100 * MAX_DROP:.0f}%: {'yes' if result['ok'] else 'NO'}")


def _cores(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f}"


def _share(value: float | None) -> str:
    return "?" if value is None else f"{100 * value:.0f}%"
