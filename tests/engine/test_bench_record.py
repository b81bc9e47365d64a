"""The bench's JSON record and `bench compare`: what a run ran on, its headlines, two runs side by side."""

import json
import subprocess
from datetime import datetime, timezone

import pytest

from engine import bench, bench_faces, bench_record, bench_tables, benchstats
from engine.cli import main
from engine.errors import EngineError


def _headline(median, low, high, ratio, better="higher", name="fig", unit="frames/s"):
    return {"name": name, "unit": unit, "figure": {"median": median, "min": low, "max": high, "runs": 3},
            "reference": {"name": "decode only", "unit": unit, "median": 100.0, "min": 90.0, "max": 110.0, "runs": 3},
            "ratio": ratio, "better": better}


def _record(tmp_path, name, headlines, commit="a" * 40):
    record = bench_record.new_record({"bench": "all"}, datetime(2026, 11, 22, 13, 5, 9, tzinfo=timezone.utc))
    record["commit"] = commit
    for bench_name, h in headlines.items():
        bench_record.add_result(record, bench_name, {"detail": 1, "headline": h})
    return bench_record.write_record(record, tmp_path / name)


def test_a_record_says_what_it_ran_on_and_reads_back(tmp_path):
    record = bench_record.new_record({"bench": "merge", "seconds": 2.0})
    assert record["schema"] == bench_record.SCHEMA == 1
    assert datetime.fromisoformat(record["created"]).utcoffset().total_seconds() == 0  # UTC
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=bench_record.REPO, capture_output=True, text=True)
    if head.returncode == 0:  # a git checkout: the commit measured, and whether tracked files had changes
        assert len(record["commit"]) == 40 and isinstance(record["dirty"], bool)
        # HEAD itself, or an ancestor of it when another commit landed in between
        assert subprocess.run(["git", "merge-base", "--is-ancestor", record["commit"], "HEAD"],
                              cwd=bench_record.REPO).returncode == 0
    machine = record["machine"]
    assert machine["cores"] >= 1 and machine["memory_gb"] > 0 and machine["cpu"]
    assert machine["python"].count(".") == 2 and machine["torch"]
    assert machine["gpu"] is None or isinstance(machine["gpu"], str)

    bench_record.add_result(record, "merge", {"frames": 12, "odd": float("nan"),
                                              "headline": _headline(30.0, 29.0, 31.0, 0.3)})
    path = bench_record.default_path(record, tmp_path)
    stamp = datetime.fromisoformat(record["created"]).strftime("%Y%m%d-%H%M%S")
    assert path.name == f"{stamp}-{(record['commit'] or 'nogit')[:10]}.json"
    bench_record.write_record(record, tmp_path / "deeper" / "run.json")  # makes the folder
    back = bench_record.read_record(tmp_path / "deeper" / "run.json")
    assert back["results"]["merge"]["odd"] is None  # JSON has no NaN: a figure not measured is null
    assert back["headlines"]["merge"] == back["results"]["merge"]["headline"]
    assert back["args"] == {"bench": "merge", "seconds": 2.0}


def test_outside_a_git_checkout_the_commit_is_none(tmp_path):
    assert bench_record.git_state(tmp_path) == {"commit": None, "dirty": None}
    record = {"created": "2026-11-22T13:05:09+00:00", "commit": None}
    assert bench_record.default_path(record, tmp_path).name == "20261122-130509-nogit.json"


def test_unreadable_records_are_refused_clearly(tmp_path):
    with pytest.raises(EngineError) as err:
        bench_record.read_record(tmp_path / "missing.json")
    assert err.value.code == "not_found"
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(EngineError, match="not a readable bench record"):
        bench_record.read_record(tmp_path / "junk.json")
    (tmp_path / "old.json").write_text(json.dumps({"merge": {"figure": {"median": 1}}}))  # bench_results.json
    with pytest.raises(EngineError, match="no headlines"):
        bench_record.read_record(tmp_path / "old.json")
    (tmp_path / "future.json").write_text(json.dumps({"schema": 2, "headlines": {}}))
    with pytest.raises(EngineError, match="schema 2"):
        bench_record.read_record(tmp_path / "future.json")


def test_compare_flags_only_changes_beyond_both_runs_spread(tmp_path, capsys):
    old = _record(tmp_path, "old.json", {
        "merge": _headline(30.0, 28.0, 32.0, 0.30),
        "extraction": _headline(20.0, 19.0, 21.0, 0.50),
        "flicker": _headline(1.5, 1.5, 1.5, 1.5, better="lower", unit="mean |F_t - F_t-1| in the face"),
        "gone": _headline(1.0, 1.0, 1.0, 1.0),
        "skipped": {**_headline(0, 0, 0, None), "figure": None, "reference": None}})
    new = _record(tmp_path, "new.json", {
        "merge": _headline(33.0, 31.0, 35.0, 0.33),       # overlaps 28-32: noise
        "extraction": _headline(25.0, 24.0, 26.0, 0.60),  # above 19-21 all the way: better
        "flicker": _headline(1.8, 1.8, 1.8, 1.8, better="lower", unit="mean |F_t - F_t-1| in the face"),  # worse
        "skipped": {**_headline(0, 0, 0, None), "figure": None, "reference": None},
        "added": _headline(1.0, 1.0, 1.0, 1.0)}, commit="b" * 40)
    rows = {r["bench"]: r for r in bench_tables.compare(bench_record.read_record(old), bench_record.read_record(new))}
    assert rows["merge"]["verdict"] == "within spread" and rows["merge"]["change_pct"] == pytest.approx(10.0)
    assert rows["merge"]["old_ratio"] == 0.30 and rows["merge"]["new_ratio"] == 0.33
    assert rows["merge"]["ratio_change_pct"] == pytest.approx(10.0)
    assert rows["extraction"]["verdict"] == "BETTER" and rows["extraction"]["change_pct"] == pytest.approx(25.0)
    assert rows["flicker"]["verdict"] == "WORSE"  # lower is better: up beyond the spread is worse
    assert rows["skipped"]["verdict"] == "n/a" and rows["skipped"]["change_pct"] is None
    assert rows["gone"] == {"bench": "gone", "only_in": "old"} and rows["added"]["only_in"] == "new"
    assert list(rows) == ["merge", "extraction", "flicker", "gone", "skipped", "added"]

    # the command: `python -m engine bench compare OLD NEW`
    assert main(["bench", "compare", str(old), str(new)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("old: 2026-11-22T13:05:09+00:00 aaaaaaaaaa") and "\nnew: " in out
    line = next(x for x in out.splitlines() if x.startswith("extraction"))
    assert "20.0" in line and "25.0 frames/s" in line and "+25.0%" in line and "0.500" in line and "BETTER" in line
    assert "only in the old record" in out and "only in the new record" in out
    assert main(["bench", "compare", str(old)]) == 2
    assert "needs two records" in capsys.readouterr().err
    assert main(["bench", "compare", str(old), str(tmp_path / "nope.json")]) == 2
    assert "no bench record" in capsys.readouterr().err
    assert main(["bench", "merge", str(old)]) == 2  # files without compare: a mistake, said so


def test_the_cli_runs_a_small_real_bench_by_alias_and_compares_two_runs(monkeypatch, tmp_path, capsys):
    """Two tiny real extraction runs (`bench extract`, the old name) through the command line,
    each recorded where --record says, then compared."""
    clip = tmp_path / "clip.mp4"
    from engine.media.synthetic import make_clip

    make_clip("hopper", clip, seconds=0.5, fps=12, size=(320, 240))
    monkeypatch.setattr(bench_faces, "extract_clips", lambda d: {"small": clip})
    monkeypatch.setattr(benchstats, "RUNS", 2)
    monkeypatch.chdir(tmp_path)
    paths = [tmp_path / "a.json", tmp_path / "b.json"]
    for path in paths:
        assert main(["bench", "extract", "--seconds", "0.1", "--record", str(path)]) == 0
    out = capsys.readouterr().out
    table = out[out.index("bench       "):]
    assert "extraction  extraction small:" in table and "decode only:" in table
    records = [bench_record.read_record(p) for p in paths]
    for r in records:
        assert r["args"]["bench"] == "extract" and r["args"]["benches"] == ["extraction"]
        assert r["args"]["seconds"] == 0.1 and r["args"]["runs"] == 2
        h = r["headlines"]["extraction"]
        assert h["name"] == "extraction small" and h["unit"] == "frames/s" and h["figure"]["runs"] == 2
        assert 0 < h["ratio"] < 1  # extraction cannot beat decoding alone
        assert h == r["results"]["extraction"]["headline"]
        assert r["results"]["extraction"]["small"]["figure"]["runs"] == 2  # the full result, kept
    assert not (tmp_path / "bench_records").exists()  # --record put them where it said
    assert main(["bench", "compare", *map(str, paths)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("extraction"))
    assert "frames/s" in line and "%" in line

    assert main(["bench", "extract", "--seconds", "0.1", "--no-record"]) == 0
    assert not (tmp_path / "bench_records").exists()


def test_the_help_names_every_bench(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "300")  # argparse wraps at hyphens: mask-temporal stays whole
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in bench.BENCHMARKS:
        assert name in text
    assert "compare" in text and "--record" in text


def test_a_real_shot_for_bench_flicker_is_checked_before_anything_runs(capsys):
    shot = ["--workspace", "ws", "--model", "m", "--faceset", "f", "--video", "v.mp4"]
    assert main(["bench", "merge", *shot]) == 2  # merge would ignore the shot: said, not run
    assert "for bench flicker, not bench merge" in capsys.readouterr().err
    assert main(["bench", "flicker", "--workspace", "ws", "--model", "m"]) == 2
    assert "missing --faceset, --video" in capsys.readouterr().err
