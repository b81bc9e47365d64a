"""Service layer: the JSON record of a `python -m engine bench` run, its end table, and `bench compare`.

A figure alone says little across commits: the machine, its load and the code all move. So a run
is recorded with what it ran on (the commit, whether the tree had changes, the CPU, cores, memory,
Python, torch, GPU), the arguments, every bench's full result and its headline (engine/benchstats.py:
figure, reference measured in the same run, ratio). `bench compare OLD NEW` then sets two records'
headlines side by side: the figures' change, and the ratios, which survive noise and a change of
machine far better than raw speeds. A change counts as real only when the two runs' min-max
spreads do not overlap; anything else is within what these noisy machines do run to run.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import EngineError
from .files import atomic_write

SCHEMA = 1
RECORDS_DIR = "bench_records"
REPO = Path(__file__).resolve().parents[1]


def git_state(repo: Path = REPO) -> dict[str, Any]:
    """{"commit": full hash, "dirty": tracked files changed} of the code being measured; both None
    when it is not a git checkout (an installed wheel, a copied folder) or git is missing."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=30,
                              check=True).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gb() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):  # not a POSIX system
        return None


def machine_info() -> dict[str, Any]:
    """What the figures were measured on: enough to tell two machines (or one machine's upgrade) apart."""
    info: dict[str, Any] = {"cpu": _cpu_model(), "cores": os.cpu_count(), "memory_gb": _memory_gb(),
                            "python": platform.python_version(), "platform": platform.platform(),
                            "torch": None, "gpu": None}
    try:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def new_record(args: dict[str, Any], created: datetime | None = None) -> dict[str, Any]:
    """An empty record of a run about to start; add_result fills it in bench by bench."""
    created = created or datetime.now(timezone.utc)
    return {"schema": SCHEMA, "created": created.isoformat(timespec="seconds"), **git_state(),
            "machine": machine_info(), "args": args, "results": {}, "headlines": {}}


def add_result(record: dict[str, Any], name: str, result: dict[str, Any]) -> None:
    """One bench's full result (carrying its "headline") into the record."""
    record["results"][name] = result
    record["headlines"][name] = result["headline"]


def default_path(record: dict[str, Any], folder: Path | None = None) -> Path:
    """bench_records/<UTC yyyymmdd-hhmmss>-<short commit>.json under the current folder."""
    created = datetime.fromisoformat(record["created"]).astimezone(timezone.utc)
    short = (record.get("commit") or "nogit")[:10]
    return (folder or Path.cwd() / RECORDS_DIR) / f"{created:%Y%m%d-%H%M%S}-{short}.json"


def _plain(value: Any) -> Any:
    """JSON has no NaN or infinity: they become null (a figure that was not measured)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # a numpy scalar
        return _plain(value.item())
    return value


def write_record(record: dict[str, Any], path: Path) -> Path:
    """Write the record atomically (a run cut short leaves the last whole one), making the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(_plain(record), indent=2, default=str).encode())
    return path


def read_record(path: Path) -> dict[str, Any]:
    """A record written by write_record; a clear error for anything else."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise EngineError("not_found", f"no bench record at {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EngineError("bad_request", f"{path} is not a readable bench record: {exc}") from None
    if not isinstance(record, dict) or not isinstance(record.get("headlines"), dict):
        raise EngineError("bad_request", f"{path} is not a bench record (no headlines): "
                                         "write one with `python -m engine bench --record PATH`")
    if record.get("schema") != SCHEMA:
        raise EngineError("bad_request", f"{path} is a bench record of schema {record.get('schema')!r}; "
                                         f"this engine reads schema {SCHEMA}")
    return record


# --- printing -----------------------------------------------------------------------------------

def number(value: float | None) -> str:
    """A figure with about three significant digits, without exponents for everyday sizes."""
    if value is None or not math.isfinite(value):
        return "n/a"
    size = abs(value)
    if size >= 100 or size == 0:
        return f"{value:.0f}"
    if size >= 10:
        return f"{value:.1f}"
    if size >= 0.01:
        return f"{value:.{2 if size >= 1 else 3}f}"
    return f"{value:.2e}"


def spread(figure: dict[str, Any] | None, unit: str = "") -> str:
    """'median (min-max) unit' of a headline's figure or reference."""
    if not figure:
        return "n/a"
    text = number(figure["median"])
    if figure.get("runs", 1) > 1 or figure["min"] != figure["max"]:
        text += f" ({number(figure['min'])}-{number(figure['max'])})"
    return f"{text} {unit}".rstrip()


def _columns(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def table(headlines: dict[str, dict[str, Any]]) -> str:
    """The end-of-run table: bench | figure median (min-max) unit | reference median (min-max) | ratio."""
    rows = [["bench", "figure median (min-max)", "reference median (min-max)", "ratio"]]
    for bench, h in headlines.items():
        ref = h.get("reference")
        if h.get("figure") is None:
            why = h.get("error") or h.get("skipped") or "no figure"
            rows.append([bench, f"{h['name']}: {why}"[:90], "", ""])
            continue
        rows.append([bench, f"{h['name']}: {spread(h['figure'], h['unit'])}",
                     f"{ref['name']}: {spread(ref, ref['unit'])}" if ref else "none",
                     number(h.get("ratio"))])
    return _columns(rows)


# --- bench compare --------------------------------------------------------------------------------

def _change(old: float | None, new: float | None) -> float | None:
    if old is None or new is None or not old:
        return None
    return 100 * (new - old) / abs(old)


def _verdict(old: dict | None, new: dict | None, better: str) -> str:
    """Whether the figure moved beyond both runs' min-max spread (their ranges do not overlap)."""
    if not old or not new:
        return "n/a"
    if new["min"] > old["max"]:
        up = True
    elif new["max"] < old["min"]:
        up = False
    else:
        return "within spread"
    return "BETTER" if up == (better == "higher") else "WORSE"


def compare(old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    """Per bench in either record: old and new median figures, change %, old and new ratios and
    their change %, and the verdict (BETTER / WORSE beyond both spreads, within spread, n/a)."""
    rows = []
    names = list(old["headlines"]) + [n for n in new["headlines"] if n not in old["headlines"]]
    for name in names:
        a, b = old["headlines"].get(name), new["headlines"].get(name)
        if a is None or b is None:
            rows.append({"bench": name, "only_in": "new" if a is None else "old"})
            continue
        fa, fb = a.get("figure"), b.get("figure")
        ma, mb = (fa or {}).get("median"), (fb or {}).get("median")
        rows.append({"bench": name, "name": b["name"], "unit": b["unit"], "old": ma, "new": mb,
                     "change_pct": _change(ma, mb), "old_ratio": a.get("ratio"), "new_ratio": b.get("ratio"),
                     "ratio_change_pct": _change(a.get("ratio"), b.get("ratio")),
                     "verdict": _verdict(fa, fb, b.get("better", "higher")),
                     "same_figure": a["name"] == b["name"] and a["unit"] == b["unit"]})
    return rows


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1f}%"


def compare_text(old: dict[str, Any], new: dict[str, Any]) -> str:
    """compare() as a table, under a line per record saying what it measured."""
    def about(label: str, r: dict) -> str:
        commit = (r.get("commit") or "no git")[:10] + ("+changes" if r.get("dirty") else "")
        m = r.get("machine", {})
        return f"{label}: {r.get('created')} {commit} on {m.get('cpu')} ({m.get('cores')} cores, gpu {m.get('gpu')})"
    rows = [["bench", "old", "new", "change", "old ratio", "new ratio", "ratio change", "beyond spread?"]]
    for r in compare(old, new):
        if "only_in" in r:
            rows.append([r["bench"], f"only in the {r['only_in']} record", "", "", "", "", "", ""])
            continue
        unit = r["unit"] if r["same_figure"] else f"{r['unit']} (figure renamed)"
        rows.append([r["bench"], number(r["old"]), f"{number(r['new'])} {unit}", _pct(r["change_pct"]),
                     number(r["old_ratio"]), number(r["new_ratio"]), _pct(r["ratio_change_pct"]), r["verdict"]])
    return "\n".join([about("old", old), about("new", new), "", _columns(rows)])


def main_compare(old_path: str, new_path: str) -> int:
    """`python -m engine bench compare OLD NEW`: print the comparison (an unreadable record is an EngineError)."""
    print(compare_text(read_record(Path(old_path)), read_record(Path(new_path))))
    return 0
