"""Service layer: each bench's headline, the one figure it leads with, in one shape for all of them.

A bench returns its details in whatever shape suits what it measures (per clip, per preset, per
window); the end table and `bench compare` read only the headline: figure (median, min, max over
runs, or over clips where a figure is one value per clip), the reference measured in the same run,
the ratio to it, and which way is better (engine/benchstats.headline).
"""

from __future__ import annotations

import math
import statistics
from typing import Callable

from .benchstats import brief, headline, summary


def _finite(values) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def _over(values) -> dict | None:
    """summary of the finite values (over clips or windows rather than runs), None if there are none."""
    values = _finite(values)
    return summary(values) if values else None


def _ratio(figure: dict | None, reference: dict | None) -> float | None:
    if not figure or not reference or not reference["median"]:
        return None
    return figure["median"] / reference["median"]


def _figure_headline(name: str, r: dict, unit: str, **notes) -> dict:
    """The shape the extraction and merge benches already have: figure, reference, ratio."""
    return headline(name, unit, r["figure"], {"unit": unit, **r["reference"]}, r["ratio"], **notes)


def _headline_extraction(r: dict) -> dict:
    clip = next(iter(r))  # the first clip: the real 720p one when ../shared is here
    return _figure_headline(f"extraction {clip}", r[clip], "frames/s", ratio_of="extraction / decoding alone")


def _headline_training(r: dict) -> dict:
    preset, p = next(iter(r["presets"].items()))  # quick: the preset the figures use
    peak = {"name": "bf16 conv peak", "unit": "GFLOP/s", **brief(p["peak_flops_per_s"], 1e-9)}
    return headline(f"training {preset}", "samples/s", p["samples_per_s"], peak, p["ratio_to_peak"]["median"],
                    ratio_of="the step's counted FLOP/s / the peak (median of paired runs)")


def _headline_merge(r: dict) -> dict:
    return _figure_headline(f"merge {r['size']}", r, "frames/s", ratio_of="merge / decode + H.264 encode")


def _headline_bridge(r: dict) -> dict:
    return headline("bridge upload", "MB/s", r["upload"], r["reference"], r["upload_ratio"],
                    ratio_of="upload through the bridge / raw loopback copy")


def _headline_flicker(r: dict) -> dict:
    unit = "mean |F_t - F_t-1| in the face"
    own = {"name": "destination's own", "unit": unit, **summary([r["reference"]["value"]])}
    return headline("flicker merged", unit, summary([r["figure"]]), own, r["ratio"], better="lower",
                    ratio_of="merged / untouched destination (1.0: no flicker added; target <= 1.2)",
                    over="one merge of the shot: the same model merges the same frames the same way every run")


def _headline_jitter(r: dict) -> dict:
    rows, unit = r["clips"], "% of face size per frame"
    raw = _over(row["raw"] for row in rows)
    ratios = _finite(row["ratio"] for row in rows)
    return headline("jitter steadied", unit, _over(row["smoothed"] for row in rows),
                    raw and {"name": "raw landmarks", "unit": unit, **raw},
                    statistics.median(ratios) if ratios else None, better="lower",
                    ratio_of="steadied / raw (median over clips)", over=f"{len(rows)} clips")


def _headline_recall(r: dict) -> dict:
    return headline("recall", "% of frames with a face", _over(100 * row["recall"] for row in r["clips"]),
                    over=f"{len(r['clips'])} clips")


def _headline_preview(r: dict) -> dict:
    return headline("preview scrubbing", "ms", r["sequential"]["ms"], better="lower")


def _headline_mask_temporal(r: dict) -> dict:
    rows, unit = r["clips"], "px of mask edge per frame"
    figure = _over(row["steadied"]["change_smoothed_px"] for row in rows)
    plain = _over(row["steadied"]["change_none_px"] for row in rows)
    ratios = _finite(row["steadied"]["change_smoothed_px"] / row["steadied"]["change_none_px"] for row in rows
                     if row["steadied"]["change_none_px"])
    reference = plain and {"name": "no smoothing", "unit": unit, **plain}
    return headline("mask edge change, smoothed", unit, figure, reference,
                    statistics.median(ratios) if ratios else None, better="lower",
                    ratio_of="smoothed / unsmoothed (median over clips)", over=f"{len(rows)} clips")


def _headline_occlusion(r: dict) -> dict:
    if "skipped" in r:
        return headline("learned mask IoU", "IoU", None, skipped=r["skipped"])
    learned = summary([d["seen_people"]["learned_iou"] for d in r["details"]])
    hull = summary([d["seen_people"]["hull_iou"] for d in r["details"]])
    return headline("learned mask IoU", "IoU", learned, {"name": "landmark hull", "unit": "IoU", **hull},
                    _ratio(learned, hull), ratio_of="learned / hull")


def _headline_load(r: dict) -> dict:
    unit = "iterations/s"
    base = {"name": "no clients", "unit": unit, **summary([b["train_rate"] for b in r["baselines"]])}
    paced = r["paced"]
    return headline(f"training under {r['clients']} polling clients", unit, summary([paced["train_rate"]]), base,
                    paced["train_rate"] / paced["train_baseline"] if paced["train_baseline"] else None,
                    ratio_of="under load / the baselines either side")


HEADLINES: dict[str, Callable[[dict], dict]] = {
    "extraction": _headline_extraction, "training": _headline_training, "merge": _headline_merge,
    "bridge": _headline_bridge, "flicker": _headline_flicker, "jitter": _headline_jitter,
    "recall": _headline_recall, "preview": _headline_preview, "mask-temporal": _headline_mask_temporal,
    "occlusion": _headline_occlusion, "load": _headline_load,
}


def headline_of(name: str, result: dict) -> dict:
    """The bench's headline; a bench without its own reads the common figure/reference/ratio shape."""
    if name in HEADLINES:
        return HEADLINES[name](result)
    figure, reference = result.get("figure"), result.get("reference")
    whole = lambda d: isinstance(d, dict) and all(k in d for k in ("median", "min", "max"))  # noqa: E731
    unit = result.get("unit", "")
    return headline(name, unit, figure if whole(figure) else None,
                    {"unit": unit, **reference} if whole(reference) and "name" in reference else None,
                    result.get("ratio") if isinstance(result.get("ratio"), (int, float)) else None)
