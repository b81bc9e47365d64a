"""farm-merge: a shot merged by real engine processes on loopback, each with its own workspace and
token, gives every frame once, equal to one engine's merge of the whole shot; a range whose engine
fails is merged by another. And the plan: ranges by weight, widened by the smoothing window."""

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.append(str(Path(__file__).resolve().parent))  # the shared tiny pair (farm_pair.py)

from farm_pair import about_equal, copy_of, read_sequence, run_job, tiny_pair  # noqa: E402

from engine.farm_plan import Piece, job_range, smoothing_radius, split, steal_point  # noqa: E402
from engine.workspace import Workspace  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _serve(workspace: Path, token_file: Path, *extra: str) -> tuple[subprocess.Popen, int, str]:
    """An engine process: (process, port, its certificate's fingerprint when serving TLS)."""
    proc = subprocess.Popen([sys.executable, "-m", "engine", "serve", "--workspace", str(workspace), "--port", "0",
                             "--token-file", str(token_file), *extra], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    fingerprint = ""
    for _ in range(10):  # the listening line comes after the notices the engine prints first
        line = proc.stdout.readline()
        fingerprint = (re.findall(r"tls fingerprint: ([0-9a-f]{64})", line) or [fingerprint])[0]
        port = re.search(r"listening on [\d.]+:(\d+)", line)
        if port:
            return proc, int(port.group(1)), fingerprint
    proc.kill()
    raise AssertionError("the engine did not say where it listens")


@pytest.fixture(scope="module")
def pair(tmp_path_factory, portrait_clips):
    return tiny_pair(tmp_path_factory, portrait_clips)


@pytest.fixture(scope="module")
def engines(pair, tmp_path_factory):
    """Two engines with tokens of their own: the first holds the pair, the second an empty workspace
    and serves TLS (the farm pins its certificate)."""
    root = tmp_path_factory.mktemp("farm")
    specs, procs = [], []
    try:
        for name, workspace, extra in (("first", copy_of(pair, root / "first"), ()),
                                       ("second", root / "second", ("--tls",))):
            token = root / f"{name}.token"
            token.write_text(f"token-of-the-{name}-engine\n")
            proc, port, fingerprint = _serve(workspace, token, *extra)
            procs.append(proc)
            specs.append(f"127.0.0.1:{port}:{token}" + (f"#{fingerprint}" if fingerprint else ""))
        yield specs, root
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)


def _farm(specs: list[str], video: Path, output: Path, *extra: str) -> subprocess.CompletedProcess:
    args = [a for spec in specs for a in ("--engine", spec)]
    return subprocess.run([sys.executable, "-m", "engine", "farm-merge", *args, "--model", "m", "--faceset", "dst",
                           "--video", str(video), "--output", str(output), *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)


def _single(pair: Path, tmp: Path, video: Path, start: int, end: int, settings: dict) -> dict:
    """One in-process merge of the whole shot, on a copy of the first engine's workspace."""
    ws = Workspace(copy_of(pair, tmp / "single"))
    try:
        run_job(ws, "merge", {"model": "m", "faceset": "dst", "video": str(video), "frame_start": start,
                              "frame_end": end, "output": str(tmp / "single-out"), "settings": settings})
    finally:
        ws.close()
    return read_sequence(tmp / "single-out")


def _check_every_frame_once(output: Path, start: int, end: int, single: dict) -> dict:
    state = json.loads((output / "merge.json").read_text())
    assert state["done"] == list(range(start, end)) and state["complete"] is True
    ranges = sorted((e["first_frame"], e["end"]) for e in state["engines"])
    assert ranges[0][0] == start and ranges[-1][1] == end
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))  # contiguous, no frame twice
    farmed = read_sequence(output)
    assert sorted(farmed) == sorted(single) == sorted(f"{seq}/frame_{i:06d}.png"
                                                      for seq in ("layer", "matte") for i in range(start, end))
    for name in single:
        assert about_equal(farmed[name], single[name]), name
    assert not (output / ".farm").exists()
    return state


def test_a_shot_split_over_two_engines_equals_one_engines_merge(engines, pair, portrait_clips, tmp_path):
    specs, _ = engines
    video = portrait_clips["astronaut"]
    run = _farm(specs, video, tmp_path / "out", "--start", "1", "--end", "11", "--set", "smooth_colour=2")
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["frames"] == 10 and result["first_frame"] == 1
    state = _check_every_frame_once(tmp_path / "out", 1, 11, _single(pair, tmp_path, video, 1, 11,
                                                                      {"smooth_colour": 2}))
    # both engines merged a part (the second from the uploaded video and the unpacked bundle)
    assert {e["engine"] for e in state["engines"]} == {s.rsplit(":", 1)[0] for s in specs}
    assert "#" in specs[1]  # the second over TLS
    assert state["values"]["smooth_colour"] == 2


def test_a_range_whose_engine_fails_is_merged_by_another(engines, pair, portrait_clips, tmp_path):
    specs, root = engines
    video = portrait_clips["astronaut"]
    # a third engine whose copy of the video is damaged: its merge fails, whatever it is given
    broken = tmp_path / "broken"
    (broken / "media").mkdir(parents=True)
    (broken / "media" / f"{hashlib.sha256(video.read_bytes()).hexdigest()}.mp4").write_bytes(b"not a video")
    proc, port, _ = _serve(broken, Path(specs[0].split(":", 2)[2]))
    try:
        third = f"127.0.0.1:{port}:{specs[0].split(':', 2)[2]}"
        run = _farm([*specs, third], video, tmp_path / "out", "--no-steal")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"127.0.0.1:{port}: merge failed" in run.stderr
    state = _check_every_frame_once(tmp_path / "out", 0, 12, _single(pair, tmp_path, video, 0, 12, {}))
    assert f"127.0.0.1:{port}" not in {e["engine"] for e in state["engines"]}


def test_a_bad_engine_address_or_token_is_refused_before_anything_starts(engines, portrait_clips, tmp_path):
    specs, root = engines
    wrong = root / "wrong.token"
    wrong.write_text("not the token")
    for spec, code in ((specs[0].rsplit(":", 1)[0] + f":{wrong}", ""), ("nohost", "[bad_request]")):
        run = _farm([spec], portrait_clips["astronaut"], tmp_path / "out")
        assert run.returncode == 2 and "Traceback" not in run.stderr and code in run.stderr, run.stderr[-2000:]
    assert not (tmp_path / "out" / "merge.json").exists()


# The plan ---------------------------------------------------------------------------------------


def test_ranges_are_contiguous_sized_by_weight_and_never_empty():
    pieces = split(0, 100, [1, 3])
    assert [(p.lo, p.hi) for p in pieces] == [(0, 25), (25, 100)]
    assert [(p.lo, p.hi) for p in split(5, 8, [1, 1, 1, 1, 1])] == [(5, 6), (6, 7), (7, 8)]
    tiny = split(0, 4, [100, 1, 1])
    assert [p.hi - p.lo for p in tiny] == [2, 1, 1]
    for weights in ([1], [2, 1, 7], [1] * 9):
        pieces = split(3, 50, weights)
        assert pieces[0].lo == 3 and pieces[-1].hi == 50 and all(a.hi == b.lo for a, b in zip(pieces, pieces[1:]))


def test_a_job_covers_its_range_and_the_smoothing_window_within_the_shot():
    assert smoothing_radius({}) == 9 and smoothing_radius({"smooth_colour": 0}) == 9
    assert smoothing_radius({"smooth_colour": 2}) == 6
    assert job_range(Piece(10, 20), 6, 0, 100) == (4, 26)
    assert job_range(Piece(2, 20), 6, 0, 22) == (0, 22)


def test_a_steal_takes_the_second_half_of_what_is_left_only_when_it_is_worth_it():
    piece = Piece(0, 1000)
    cut = steal_point(100, piece, 9)
    assert 100 < cut < 1000 and abs((1000 - cut) - (cut - 124)) <= 1
    assert steal_point(900, piece, 9) is None  # too little left for a second model load


# The farm's bookkeeping, with simulated engines --------------------------------------------------


class _SimulatedEngine:
    """Answers the job ops as an engine would, merging `speed` frames each time it is asked how a
    job is doing; a job started again into a folder skips the frames it holds (the merge's resume).
    With `drop_after`, the connection breaks after that many answers."""

    def __init__(self, name: str, speed: int, drop_after: int | None = None) -> None:
        self.name, self.speed, self.drop_after, self.answers = name, speed, drop_after, 0
        self.jobs: dict[str, dict] = {}
        self.folders: dict[str, set[int]] = {}

    def call(self, op: str, args: dict | None = None, timeout: float = 30.0) -> dict:
        from bridge import BridgeError

        self.answers += 1
        if self.drop_after is not None and self.answers > self.drop_after:
            raise BridgeError("unreachable", "the engine went away")
        if op == "job.start":
            p = args["params"]
            done = self.folders.setdefault(p["output"], set())
            job = {"id": f"{self.name}-{len(self.jobs)}", "state": "running", "stats": {"frames": 0}, "error": None,
                   "message": "", "out": p["output"],
                   "todo": [i for i in range(p["frame_start"], p["frame_end"]) if i not in done]}
            self.jobs[job["id"]] = job
        elif op == "job.cancel":
            job = self.jobs[args["id"]]
            job["cancel"] = True
        else:
            job = self.jobs[args["id"]]
            if job.get("cancel"):
                job["state"] = "cancelled"
            elif job["state"] == "running":
                step, job["todo"] = job["todo"][:self.speed], job["todo"][self.speed:]
                self.folders[job["out"]].update(step)
                job["stats"] = {"frames": job["stats"]["frames"] + len(step)}
                job["state"] = "running" if job["todo"] else "done"
        return {k: v for k, v in job.items() if k not in ("todo", "cancel")}

    def download(self, out: str, stage: Path) -> None:
        (stage / "layer").mkdir(parents=True, exist_ok=True)
        for i in self.folders[out]:
            (stage / "layer" / f"frame_{i:06d}.png").write_text(f"{self.name} {i}")
        (stage / "merge.json").write_text(json.dumps({"done": sorted(self.folders[out]), "outputs": ["layer"]}))


def _simulate(tmp_path, monkeypatch, sims: list[_SimulatedEngine], end: int, steal: bool = True):
    from engine import cli_farm_loop as cli_farm

    by_client = {id(s): s for s in sims}
    monkeypatch.setattr(cli_farm, "download_files",
                        lambda client, out, stage: by_client[id(client)].download(out, stage))
    engines = [cli_farm.Engine(i, s.name, s, {"device": "CPU"}) for i, s in enumerate(sims)]
    farm = cli_farm.Farm(engines, {}, 0, end, 0, "run", tmp_path, steal=steal, poll=0.001)
    farm.run()
    return farm, {p.name: p.read_text() for p in (tmp_path / "layer").iterdir()}


def test_an_engine_that_finishes_early_takes_half_of_the_slowest_ones_frames(tmp_path, monkeypatch):
    slow, fast = _SimulatedEngine("slow", 1), _SimulatedEngine("fast", 10)
    farm, frames = _simulate(tmp_path, monkeypatch, [slow, fast], 400)
    assert sorted(frames) == [f"frame_{i:06d}.png" for i in range(400)] and farm.done == set(range(400))
    pieces = sorted((p["first_frame"], p["end"], p["engine"]) for p in farm.placed)
    assert all(a[1] == b[0] for a, b in zip(pieces, pieces[1:])) and pieces[-1][1] == 400
    slow_frames = sum(hi - lo for lo, hi, who in pieces if who == "slow")
    assert slow_frames < 120 and sum(who == "fast" for _, _, who in pieces) >= 3  # it stole, more than once
    assert all(frames[f"frame_{i:06d}.png"] == f"{who} {i}" for lo, hi, who in pieces for i in range(lo, hi))
    # the slow engine's restarted jobs went on in its first folder, never merging a frame twice
    assert len(slow.folders) == 1


def test_without_stealing_each_engine_keeps_its_range(tmp_path, monkeypatch):
    farm, frames = _simulate(tmp_path, monkeypatch, [_SimulatedEngine("slow", 1), _SimulatedEngine("fast", 10)],
                             100, steal=False)
    assert sorted((p["first_frame"], p["end"], p["engine"]) for p in farm.placed) == [(0, 50, "slow"),
                                                                                      (50, 100, "fast")]
    assert len(frames) == 100


def test_a_lost_engines_range_is_merged_by_another(tmp_path, monkeypatch):
    lost = _SimulatedEngine("lost", 5, drop_after=3)
    farm, frames = _simulate(tmp_path, monkeypatch, [_SimulatedEngine("steady", 5), lost], 90, steal=False)
    assert sorted(frames) == [f"frame_{i:06d}.png" for i in range(90)]
    assert {p["engine"] for p in farm.placed} == {"steady"} and not farm.engines[1].alive


def test_an_engine_dropped_for_a_failed_download_has_its_running_job_cancelled(tmp_path, monkeypatch):
    """Its connection still works, so the job it was given meanwhile must not go on merging frames
    that another engine now merges (and keep that engine busy after farm-merge has ended)."""
    import threading

    second_started = threading.Event()

    class Flaky(_SimulatedEngine):
        def call(self, op, args=None, timeout=30.0):
            if op == "job.start" and self.jobs:  # its second job (a stolen range) gets nowhere
                self.speed = 0
                second_started.set()
            return super().call(op, args, timeout)

        def download(self, out, stage):
            second_started.wait(30)
            raise ValueError("merge.json is not JSON")

    flaky, slow = Flaky("flaky", 10), _SimulatedEngine("slow", 1)
    farm, frames = _simulate(tmp_path, monkeypatch, [flaky, slow], 400)
    assert second_started.is_set() and not farm.engines[0].alive
    assert sorted(frames) == [f"frame_{i:06d}.png" for i in range(400)]
    assert {p["engine"] for p in farm.placed} == {"slow"}
    assert flaky.jobs["flaky-1"].get("cancel"), flaky.jobs["flaky-1"]


def test_a_confined_first_engine_gets_the_video_without_hashing_it_again(tmp_path, monkeypatch):
    """farm-merge hashes the video once, before anything else; a long clip takes seconds a hash."""
    import argparse

    from bridge import transfer

    from engine import cli_farm

    video = tmp_path / "shot.mp4"
    video.write_bytes(b"the shot's frames")
    digest = hashlib.sha256(video.read_bytes()).hexdigest()
    hashed = []
    monkeypatch.setattr(transfer, "file_hash", lambda path: hashed.append(path) or digest)

    class Confined:  # an engine that has the clip already: only media.status is asked
        def call(self, op, args=None, timeout=30.0):
            assert (op, args["hash"]) == ("media.status", digest), (op, args)
            return {"hash": digest, "present": True, "received": 0, "path": f"media/{digest}.mp4"}

    first = cli_farm.Engine(0, "confined", Confined(), {"confined": True})
    cli_farm._distribute([first], argparse.Namespace(model="m", faceset="d"), video, digest, tmp_path / ".farm", None)
    assert first.video == f"media/{digest}.mp4"
    assert hashed == []
