"""Service layer: the bookkeeping of `farm-merge` (engine/cli_farm.py): which engine merges which
range, following the jobs, stealing from the slowest, retrying what failed, fetching the results.

Each finished range is downloaded on a worker thread into `<output>/.farm/` and only its own frames
are moved into place (a job merges its range widened by the smoothing window; the widening is
dropped). The loop runs on one thread: job events and lost connections arrive on one queue.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from bridge import BridgeClient, BridgeError
from bridge.transfer import download_files

from .errors import EngineError
from .farm_plan import Piece, job_range, split, steal_point
from .files import atomic_write

SEQUENCES = ("layer", "matte", "frames")
PATTERN = "frame_%06d.png"
STATE = "merge.json"
TERMINAL = ("done", "failed", "cancelled")


class _Inbox:
    """One engine's inbox, feeding the farm's single queue tagged with the engine's index."""

    def __init__(self, shared: queue.Queue, index: int) -> None:
        self.shared, self.index = shared, index

    def put(self, item, block: bool = True, timeout: float | None = None) -> None:
        self.shared.put((self.index, item))

    def get(self, block: bool = True, timeout: float | None = None):
        return self.shared.get(block, timeout)

    def qsize(self) -> int:
        return self.shared.qsize()

    def empty(self) -> bool:
        return self.shared.empty()


@dataclass
class Engine:
    index: int
    label: str
    client: BridgeClient
    info: dict
    video: str = ""  # how this engine names the video in job params
    model: str = ""
    faceset: str = ""
    settings: dict = field(default_factory=dict)  # merge settings of this engine's own (its mask model's name)
    alive: bool = True
    job: dict | None = None
    piece: Piece | None = None
    out: str = ""  # the running job's output folder in the engine's workspace
    base: int = 0  # the first frame the running job had left to merge
    cut: int | None = None  # a steal asked for: the job is being cancelled to end here
    frames_done: int = 0

    def position(self) -> int:
        return self.base + int(((self.job or {}).get("stats") or {}).get("frames") or 0)

    def weight(self) -> float:
        # a speed hint from the device: a GPU merges several times as fast as a CPU; steals even it out
        return 1.0 if str(self.info.get("device", "CPU")).startswith("CPU") else 6.0


@dataclass
class Farm:
    engines: list[Engine]
    params: dict  # the merge job's params but for video, names, range and output
    start: int
    end: int
    radius: int
    run_id: str
    output: Path
    steal: bool = True
    pending: list[Piece] = field(default_factory=list)
    done: set[int] = field(default_factory=set)
    states: list[dict] = field(default_factory=list)  # each downloaded piece's merge.json
    placed: list[dict] = field(default_factory=list)  # {"engine", "first", "end"} per merged piece
    error: str = ""

    events: queue.Queue = field(default_factory=queue.Queue)  # every engine's inbox, tagged (_Inbox)
    poll: float = 1.0  # seconds without an event before each job is asked how it is doing

    def __post_init__(self) -> None:
        self.downloads: dict[Future, tuple[Engine, Piece, str]] = {}
        self.pool = ThreadPoolExecutor(max_workers=len(self.engines), thread_name_prefix="swapline-farm-download")

    # Jobs --------------------------------------------------------------------------------------

    def start_job(self, e: Engine, piece: Piece, out: str | None = None, base: int | None = None) -> None:
        lo, hi = job_range(piece, self.radius, self.start, self.end)
        e.out = out or f"farm/{self.run_id}/{piece.name}"
        e.base = lo if base is None else base
        params = {**self.params, "video": e.video, "model": e.model, "faceset": e.faceset,
                  "frame_start": lo, "frame_end": hi, "output": e.out,
                  "settings": {**self.params.get("settings", {}), **e.settings}}
        try:
            e.job, e.piece = e.client.call("job.start", {"kind": "merge", "params": params}), piece
        except BridgeError as exc:
            e.piece = piece
            self.lost(e, exc.message)

    def try_steal(self) -> None:
        """Cut the running piece with the most frames left, so an idle engine takes its second half."""
        if any(e.cut is not None for e in self.engines):
            return  # one steal at a time
        best, most = None, 0
        for e in self.engines:
            if e.alive and e.job and e.job["state"] == "running":
                cut = steal_point(e.position(), e.piece, self.radius)
                if cut is not None and e.piece.hi - e.position() > most:
                    best, most = (e, cut), e.piece.hi - e.position()
        if best is not None:
            e, e.cut = best
            try:
                e.client.call("job.cancel", {"id": e.job["id"]})
            except BridgeError as exc:
                self.lost(e, exc.message)

    def finished(self, e: Engine, job: dict) -> None:
        piece, cut, out = e.piece, e.cut, e.out
        position = e.position()
        e.job, e.piece, e.cut = None, None, None
        if job["state"] == "done":
            self.downloads[self.pool.submit(self.fetch, e, piece, out)] = (e, piece, out)
            return
        if job["state"] == "cancelled" and cut is not None:
            self.pending.insert(0, Piece(cut, piece.hi))
            piece.hi = cut
            self.start_job(e, piece, out, base=position)  # the same folder: what it wrote is kept
            return
        err = job.get("error") or {"message": job.get("message", job["state"])}
        self.retire(e, piece, f"merge {job['state']}: {err.get('message')}")

    def lost(self, e: Engine, reason: str) -> None:
        if e.alive:
            print(f"\n{e.label}: {reason}; its frames go to another engine", file=sys.stderr)
        job, piece, e.job, e.piece, e.cut = e.job, e.piece, None, None, None
        e.alive = False
        if job is not None:
            # A failed download or a slow answer leaves the connection up: its job would go on merging
            # frames another engine now merges (a closed connection refuses at once).
            try:
                e.client.call("job.cancel", {"id": job["id"]}, timeout=5.0)
            except BridgeError:
                pass
        if piece is not None:
            self.retry(piece, reason)

    def retire(self, e: Engine, piece: Piece, reason: str) -> None:
        print(f"\n{e.label}: {reason}", file=sys.stderr)
        e.alive = False  # an engine that failed a range is not trusted with another
        self.retry(piece, reason)

    def retry(self, piece: Piece, reason: str) -> None:
        piece.tries += 1
        self.error = reason
        self.pending.append(piece)

    # Results -----------------------------------------------------------------------------------

    def fetch(self, e: Engine, piece: Piece, out: str) -> dict:
        """Download a finished piece and move its own frames into place; returns its merge.json."""
        stage = self.output / ".farm" / f"{e.index}-{piece.name}"
        download_files(e.client, out, stage)
        state = json.loads((stage / STATE).read_text())
        frames = range(piece.lo, piece.hi)
        if not set(frames) <= set(state.get("done") or []):
            raise EngineError("merge_failed", f"{e.label} did not merge every frame of {piece.lo}..{piece.hi}")
        for name in SEQUENCES:
            if name in state.get("outputs", ()):
                (self.output / name).mkdir(parents=True, exist_ok=True)
                for i in frames:
                    os.replace(stage / name / (PATTERN % i), self.output / name / (PATTERN % i))
        shutil.rmtree(stage, ignore_errors=True)
        return state

    def collect(self) -> None:
        for future in [f for f in self.downloads if f.done()]:
            e, piece, _ = self.downloads.pop(future)
            try:
                state = future.result()
            except (BridgeError, EngineError, OSError, ValueError, KeyError) as exc:
                self.lost(e, f"its frames {piece.lo}..{piece.hi} could not be fetched ({exc})")
                self.retry(piece, str(exc))
                continue
            self.states.append({**state, "engine": e.index})
            self.done.update(range(piece.lo, piece.hi))
            e.frames_done += piece.hi - piece.lo
            self.placed.append({"engine": e.label, "first_frame": piece.lo, "end": piece.hi})

    # The loop ----------------------------------------------------------------------------------

    def wait(self) -> None:
        """Handle the next job event or lost connection; without one in `poll` seconds, ask each job."""
        try:
            index, message = self.events.get(timeout=self.poll)
        except queue.Empty:
            for e in self.engines:
                if e.alive and e.job:
                    try:
                        self.update(e, e.client.call("job.get", {"id": e.job["id"]}))
                    except BridgeError as exc:
                        self.lost(e, exc.message)
            return
        e = self.engines[index]
        if message.kind == "closed":
            self.lost(e, f"disconnected ({message.payload})")
        elif message.kind == "event" and message.payload.get("event") == "job":
            self.update(e, message.payload.get("job") or {})

    def update(self, e: Engine, job: dict) -> None:
        if e.job and job.get("id") == e.job["id"]:
            e.job = job
            if job["state"] in TERMINAL:
                self.finished(e, job)

    def show(self, stream=sys.stderr) -> None:
        total = self.end - self.start
        running = sum(min(max(e.position(), e.piece.lo), e.piece.hi) - e.piece.lo for e in self.engines if e.job)
        running += sum(piece.hi - piece.lo for _, piece, _ in self.downloads.values())  # merged, on their way
        done = len(self.done) + running
        width = 30
        filled = int(done / total * width)
        who = " ".join(f"{e.label}:{(e.piece.name if e.piece else 'idle') if e.alive else '-'}" for e in self.engines)
        bar = "#" * filled + " " * (width - filled)
        stream.write(f"\r[{bar}] {done / total * 100:5.1f}% {done}/{total} frames {who[:80]}")
        stream.flush()

    def run(self) -> None:
        alive = [e for e in self.engines if e.alive]
        self.pending = split(self.start, self.end, [e.weight() for e in alive])
        while self.pending or self.downloads or any(e.job for e in self.engines):
            for e in self.engines:
                if e.alive and e.job is None and self.pending:
                    piece = self.pending.pop(0)
                    if piece.tries > len(self.engines):
                        raise EngineError("merge_failed", f"frames {piece.lo}..{piece.hi} failed on every engine: "
                                                          f"{self.error}")
                    self.start_job(e, piece)
            if self.steal and not self.pending and any(e.alive and e.job is None for e in self.engines):
                self.try_steal()
            if not any(e.alive for e in self.engines) and (self.pending or not self.downloads):
                raise EngineError("engines_lost", f"every engine failed or disconnected; last: {self.error}")
            self.wait()
            self.collect()
            self.show()
        self.pool.shutdown()
        sys.stderr.write("\n")

    def cancel(self) -> None:
        for e in self.engines:
            if e.alive and e.job:
                try:
                    e.client.call("job.cancel", {"id": e.job["id"]}, timeout=5.0)
                except BridgeError:
                    pass  # it is going away anyway
        self.pool.shutdown(wait=False, cancel_futures=True)

    def write_state(self, video: Path) -> dict:
        """The combined merge.json: every frame once, which engine merged which range."""
        template = next((s for s in self.states if s["engine"] == 0), self.states[0])
        state = {k: v for k, v in template.items() if k != "engine"}
        st = video.stat()
        state.update({"video": str(video), "video_stamp": [st.st_size, st.st_mtime_ns],
                      "first_frame": self.start, "end": self.end, "done": sorted(self.done),
                      "complete": len(self.done) == self.end - self.start,
                      "engines": sorted(self.placed, key=lambda p: p["first_frame"])})
        if template["engine"] != 0:
            state["model_stamp"] = None  # another engine's file: a local re-run must not trust it
        atomic_write(self.output / STATE, json.dumps(state, indent=1).encode())
        return state
