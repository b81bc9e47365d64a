"""Fault injection: a real engine (`python -m engine serve`) killed with SIGKILL at random moments of
extract, train and merge jobs, restarted on the same workspace, and checked after every kill.

    python tests/faults/fault_injection.py --kills 5 --seed 1 [--workspace DIR] [--clip PATH]

--kills is per job kind. A job is restarted by the engine at most 3 times (engine.jobs.MAX_RESTARTS),
so kills beyond 3 go to the next round's jobs (a new faceset, the same model trained further, a new
merge); a job that ends before its next kill is followed by another of its kind (3 jobs at most).
Checked after every kill, with the engine down, and at the end:
- the catalog passes `PRAGMA integrity_check`; no face is stored twice; every face row's image exists,
  is not a temp file and decodes;
- every model checkpoint loads; every frame a merge.json lists is there once and decodes;
- the killed job comes back under the same id, queued again with its restart counted, and ends done;
- training never starts over: the history of the checkpoint the kill left is a prefix of the final
  one, which counts every iteration once;
- a merge carries on: frames it had listed are not merged again, and in the end it lists every frame
  once;
- an extraction ends with one face per frame of the clip (its portraits show one face each).
The last line is the summary: `kills survived: S/K (extract a, train b, merge c), invariant failures: F`
(exit status 0 when F is 0 and every kill landed). The clips, the engine's log and the default
workspace live in a temp folder, removed after a clean run unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bridge import BridgeClient  # noqa: E402  (the repository root goes on the path first)
from engine.jobs import MAX_RESTARTS, RESUMED  # noqa: E402

KINDS = ("extract", "train", "merge")
PER_JOB = MAX_RESTARTS  # a job killed more often is given up, by design
TINY = {"resolution": 32, "ae_dims": 32, "e_dims": 8, "d_dims": 8, "d_mask_dims": 4, "batch_size": 4,
        "workers": 0, "preview_every_s": 0.0, "save_every_s": 0.3, "report_every_s": 0.0}
TERMINAL = ("done", "failed", "cancelled")


class Engine:
    """One workspace's engine process: started, killed (SIGKILL to its process group) and started again."""

    def __init__(self, workspace: Path, base: Path) -> None:
        self.workspace, self.log = workspace, base / "engine.log"
        self.token_file = base / "token"
        self.token_file.write_text(secrets.token_urlsafe(24))
        self.proc: subprocess.Popen | None = None
        self.client: BridgeClient | None = None
        self.starts = 0

    def start(self, timeout: float = 180.0) -> None:
        offset = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "engine", "serve", "--workspace", str(self.workspace), "--port", "0",
                 "--token-file", str(self.token_file)],
                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + timeout
        port = None
        while port is None:
            text = self.log.read_bytes()[offset:].decode(errors="replace")
            for line in text.splitlines():
                if "listening on" in line:
                    port = int(line.rsplit(":", 1)[1].split()[0])
            if self.proc.poll() is not None:
                raise RuntimeError(f"the engine exited ({self.proc.returncode}) before listening:\n{text[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the engine did not listen within {timeout} s:\n{text[-2000:]}")
            time.sleep(0.1)  # polling the log for the line the engine prints once it listens
        self.client = BridgeClient("127.0.0.1", port, self.token_file.read_text().strip(),
                                   client_name="fault-injection", timeout=30)
        self.client.connect()
        self.client.start()
        self.starts += 1

    def call(self, op: str, args: dict | None = None):
        return self.client.call(op, args or {}, timeout=60)

    def kill(self) -> None:
        self.client.close()
        os.killpg(self.proc.pid, signal.SIGKILL)  # the engine and anything it started, at once
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.client.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


class Invariants:
    """What must hold of the workspace whenever the engine is down; failures are collected, not raised."""

    def __init__(self, workspace: Path) -> None:
        self.ws = workspace
        self.failures: list[str] = []

    def fail(self, when: str, what: str) -> None:
        self.failures.append(f"{when}: {what}")
        print(f"  INVARIANT FAILED {when}: {what}", flush=True)

    def check(self, when: str) -> None:
        import cv2

        db = sqlite3.connect(self.ws / "catalog.sqlite")
        try:
            ok = db.execute("PRAGMA integrity_check").fetchone()[0]
            if ok != "ok":
                self.fail(when, f"catalog integrity: {ok}")
            twice = db.execute("SELECT faceset_id, media_id, frame, face_index, COUNT(*) FROM faces "
                               "GROUP BY faceset_id, media_id, frame, face_index HAVING COUNT(*) > 1").fetchall()
            if twice:
                self.fail(when, f"faces stored twice: {twice[:3]}")
            for face_id, image in db.execute("SELECT id, image FROM faces"):
                path = self.ws / image
                if path.name.endswith((".tmp", ".part")) or cv2.imread(str(path)) is None:
                    self.fail(when, f"face {face_id}: its image {image} is missing or does not decode")
        finally:
            db.close()
        for model in sorted((self.ws / "models").glob("*/model.safetensors")):
            try:
                load_model(model.parent)
            except Exception as exc:  # noqa: BLE001 - any failure to load is the finding
                self.fail(when, f"model {model.parent.name} does not load: {exc}")
        for state_file in sorted((self.ws / "renders").glob("*/merge.json")):
            try:
                state = json.loads(state_file.read_text())
            except ValueError as exc:
                self.fail(when, f"{state_file} is damaged: {exc}")
                continue
            done = state["done"]
            if len(done) != len(set(done)):
                self.fail(when, f"{state_file} lists a frame twice")
            for i in done:
                for name in ("layer", "matte", "frames"):
                    if name in state["outputs"] and \
                            cv2.imread(str(state_file.parent / name / f"frame_{i:06d}.png"), cv2.IMREAD_UNCHANGED) is None:
                        self.fail(when, f"{state_file.parent.name}: listed frame {i} has no whole {name} file")


def load_model(directory: Path) -> dict:
    from engine.models.checkpoint import load_checkpoint

    return load_checkpoint(directory)[2]


def wait_job(engine: Engine, job_id: str, until, timeout: float = 600.0) -> dict:
    """Poll the job until `until(job)` or it ends (the condition is the job's own state, not a time)."""
    deadline = time.monotonic() + timeout
    while True:
        job = engine.call("job.get", {"id": job_id})
        if until(job) or job["state"] in TERMINAL:
            return job
        if time.monotonic() > deadline:
            raise RuntimeError(f"job {job_id} ({job['kind']}) still {job['state']} after {timeout} s")
        time.sleep(0.02)


class Run:
    def __init__(self, engine: Engine, invariants: Invariants, rng: random.Random) -> None:
        self.engine, self.inv, self.rng = engine, invariants, rng
        self.kills = {k: 0 for k in KINDS}
        self.survived = {k: 0 for k in KINDS}
        self.missed = 0

    def job(self, kind: str, params: dict, kills: int, absolute: float | None = None) -> tuple[dict, list]:
        """Start a job, kill the engine `kills` times while it runs, and return the finished job and
        what each kill left (snapshot). `absolute`: the job's progress counts from its very start
        (training, which starts at this fraction), so the kill marks rise from there; otherwise each
        run after a restart counts from zero."""
        begun = time.monotonic()
        job = self.engine.call("job.start", {"kind": kind, "params": params})
        job_id, snapshots = job["id"], []
        if absolute is not None:
            marks = sorted(absolute + (1 - absolute) * self.rng.uniform(0.1, 0.85) for _ in range(kills))
        else:
            marks = [self.rng.uniform(0.05, 0.8) for _ in range(kills)]
        for n, mark in enumerate(marks, 1):
            job = wait_job(self.engine, job_id, lambda j: j["state"] == "running" and j["progress"] >= mark
                           and not j["message"].startswith(("starting", RESUMED)))  # this run's own progress
            if job["state"] in TERMINAL:
                self.missed += 1  # it ended before the mark: no kill to count
                break
            time.sleep(self.rng.uniform(0.0, 0.2))  # a random moment past the mark
            before = len(self.inv.failures)
            self.engine.kill()
            self.kills[kind] += 1
            when = f"{kind} kill {n} (job {job_id}, mark {mark:.2f})"
            print(f"killed the engine during {when}", flush=True)
            snapshots.append(self.snapshot(kind, job_id, params))
            self.inv.check(when)
            self.engine.start()
            back = self.engine.call("job.get", {"id": job_id})
            if back["state"] == "done" and back["restarts"] == n - 1:  # it ended in the moment past the mark
                self.kills[kind] -= 1
                self.missed += 1
                break
            if back["restarts"] != n or back["state"] not in ("queued", "running", "done"):
                self.inv.fail(when, f"the job did not come back queued: {back['state']}, {back['error']}, "
                                    f"restarts {back.get('restarts')}")
            elif back["state"] == "queued" and RESUMED not in back["message"]:
                self.inv.fail(when, f"a resumed job should say so: {back['message']!r}")
            if len(self.inv.failures) == before:
                self.survived[kind] += 1
        job = wait_job(self.engine, job_id, lambda j: False)
        print(f"{kind} job {job_id} {job['state']} after {len(snapshots)} kills, "
              f"{time.monotonic() - begun:.0f} s", flush=True)
        if job["state"] != "done":
            self.inv.fail(f"{kind} job {job_id}", f"ended {job['state']}: {job['error']}")
        return job, snapshots

    def snapshot(self, kind: str, job_id: str, params: dict):
        """What the kill left that the finished job must build on."""
        ws = self.inv.ws
        if kind == "train":
            model = ws / "models" / params["model"]
            return load_model(model)["history"] if (model / "model.safetensors").is_file() else None
        if kind == "merge":
            state = ws / "renders" / job_id / "merge.json"
            if not state.is_file():
                return {}
            return {i: (state.parent / "layer" / f"frame_{i:06d}.png").stat().st_mtime_ns
                    for i in json.loads(state.read_text())["done"]}
        return None


def plan(kills: int) -> list[int]:
    """Kills per round: at most PER_JOB to one job."""
    rounds = []
    while kills > 0:
        rounds.append(min(PER_JOB, kills))
        kills -= rounds[-1]
    return rounds or [0]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=2, help="kills per job kind")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workspace", help="a new or empty folder for the workspace (default: a temp folder)")
    p.add_argument("--clip", help="a talking-head clip to extract from (default: one made from a bundled portrait)")
    p.add_argument("--iterations", type=int, default=60, help="training iterations per round")
    p.add_argument("--seconds", type=float, default=8.0, help="length of the made clip extracted from (12 fps)")
    p.add_argument("--keep", action="store_true", help="keep the temp folder (clips, engine log) after a clean run")
    p.add_argument("--merge-seconds", type=float, default=6.0, help="length of the made clip merged into (12 fps)")
    args = p.parse_args(argv)

    base = Path(tempfile.mkdtemp(prefix="swapline-faults-"))
    workspace = Path(args.workspace).resolve() if args.workspace else base / "ws"
    if workspace.exists() and any(workspace.iterdir()):
        p.error(f"{workspace} is not empty: the checks need a workspace of their own")
    workspace.mkdir(parents=True, exist_ok=True)
    from engine.media.synthetic import make_clip

    source = Path(args.clip).resolve() if args.clip else \
        make_clip("hopper", base / "hopper.mp4", seconds=args.seconds, fps=12, size=(320, 240))
    destination = make_clip("astronaut", base / "astronaut.mp4", seconds=args.merge_seconds, fps=12,
                            size=(480, 360), seed=1)
    engine = Engine(workspace, base)
    inv = Invariants(workspace)
    run = Run(engine, inv, random.Random(args.seed))
    started = time.monotonic()
    print(f"workspace {workspace}, engine log {engine.log}", flush=True)
    try:
        engine.start()
        run.job("extract", {"video": str(destination), "faceset": "dst", "size": 64}, 0)
        trained = [0]  # iterations the model "m" is trained to so far
        for r, kills in enumerate(plan(args.kills)):
            for kind in KINDS:
                landed, attempt = 0, 0
                while attempt == 0 or (landed < kills and attempt < 3):  # a job that ended first: another
                    before = run.kills[kind]
                    one_job(run, kind, f"{r}" + (f"-{attempt}" if attempt else ""), kills - landed, args,
                            source, destination, trained)
                    landed += run.kills[kind] - before
                    attempt += 1
        engine.stop()
        inv.check("at the end")
    except Exception as exc:  # noqa: BLE001 - reported as a failure with the summary line
        inv.fail("the run", f"{type(exc).__name__}: {exc}")
    finally:
        engine.stop()
    total, survived = sum(run.kills.values()), sum(run.survived.values())
    print(f"engine starts: {engine.starts}, kills that missed (job ended first): {run.missed}, "
          f"{time.monotonic() - started:.0f} s", flush=True)
    print(f"kills survived: {survived}/{total} ({', '.join(f'{k} {run.survived[k]}' for k in KINDS)}), "
          f"invariant failures: {len(inv.failures)}", flush=True)
    clean = not inv.failures and survived == total == args.kills * len(KINDS)
    if clean and not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    return 0 if clean else 1


def one_job(run: Run, kind: str, name: str, kills: int, args, source: Path, destination: Path,
            trained: list[int]) -> None:
    """One job of `kind` killed up to `kills` times, then checked for what it must have kept."""
    ws = run.inv.ws
    if kind == "extract":
        job, _ = run.job("extract", {"video": str(source), "faceset": f"src{name}", "size": 64}, kills)
        if job["state"] == "done" and not args.clip:
            check_one_face_per_frame(run.inv, f"src{name}", job)
    elif kind == "train":  # the same model trained further each time: resuming a finished model too
        floor = trained[0] / (trained[0] + args.iterations)
        trained[0] += args.iterations
        _, kept = run.job("train", {"model": "m", "source": "src0", "destination": "dst",
                                    "iterations": trained[0], **TINY}, kills, absolute=floor)
        check_training(run.inv, ws / "models" / "m", trained[0], kept)
    else:
        job, kept = run.job("merge", {"model": "m", "video": str(destination), "faceset": "dst",
                                      "outputs": ["layer", "matte", "frames"], "batch_size": 1}, kills)
        check_merge(run.inv, ws / "renders" / job["id"], job, kept)


def check_one_face_per_frame(inv: Invariants, faceset: str, job: dict) -> None:
    """The portrait clip shows one face in every frame: after any number of kills, each is there once."""
    db = sqlite3.connect(inv.ws / "catalog.sqlite")
    try:
        frames = [r[0] for r in db.execute("SELECT frame FROM faces JOIN facesets ON facesets.id = faces.faceset_id "
                                           "WHERE facesets.name = ? ORDER BY frame", (faceset,))]
    finally:
        db.close()
    if frames != list(range(job["result"]["frames"])):
        inv.fail(f"extract {faceset}", f"frames with a face {frames}, expected each of {job['result']['frames']} once")


def check_training(inv: Invariants, model_dir: Path, iterations: int, kept: list) -> None:
    history = load_model(model_dir)["history"]
    if history["iterations"] != list(range(1, iterations + 1)):
        inv.fail("training", f"the history does not count each of {iterations} iterations once")
    for n, earlier in enumerate(kept, 1):
        if earlier is None:
            continue  # killed before its first checkpoint: starting from zero is right
        size = len(earlier["iterations"])
        if history["iterations"][:size] != earlier["iterations"] or history["src"][:size] != earlier["src"]:
            inv.fail("training", f"after kill {n} it did not resume from its checkpoint (iteration {size})")


def check_merge(inv: Invariants, out: Path, job: dict, kept: list) -> None:
    if job["state"] != "done":
        return  # already a failure
    state = json.loads((out / "merge.json").read_text())
    first, count = job["result"]["first_frame"], job["result"]["count"]
    if state["done"] != list(range(first, first + count)) or not state["complete"]:
        inv.fail("merge", f"merge.json does not list each of {count} frames once")
    for n, frames in enumerate(kept, 1):
        redone = [i for i, stamp in frames.items() if (out / "layer" / f"frame_{i:06d}.png").stat().st_mtime_ns != stamp]
        if redone:
            inv.fail("merge", f"frames done before kill {n} were merged again: {redone[:5]}")


if __name__ == "__main__":
    raise SystemExit(main())
