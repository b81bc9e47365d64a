"""Service layer: the tables a bench run prints: its headlines at the end of the run, and `bench compare`.

`bench compare OLD NEW` sets two records' headlines side by side: the figures' change, and the
ratios to the same-run references, which survive noise and a change of machine far better than
raw speeds. A change counts as real only when the two runs' min-max spreads do not overlap;
anything else is within what these noisy machines do run to run.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .bench_record import read_record


# --- the end-of-run table -----------------------------------------------------------------------------------

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
