"""The mask-temporal benchmark runs end to end on a short clip and reports what it promises."""

import math

from engine.faces.extract import ExtractParams, extract_faces
from engine.masks.temporal_bench import bench_mask_temporal


def _extract(ws, video, faceset, frames, steady):
    extract_faces(ws, ExtractParams(video=str(video), faceset=faceset, frame_end=frames, size=128, smooth=steady),
                  lambda *a: None, lambda: False)


def test_bench_reports_change_and_shimmer_with_and_without_smoothing(portrait_clips):
    r = bench_mask_temporal(1.0, _extract, clips=[portrait_clips["hopper"]])
    assert r["sigma_frames"] > 0 and len(r["clips"]) == 1
    row = r["clips"][0]
    assert row["pairs"] >= 10 and row["face_px"] > 20
    for name in ("steadied", "raw_landmarks"):
        figures = r[name]
        assert set(figures) == {f"{k}_{w}_{u}" for k in ("change", "shimmer") for w in ("none", "smoothed")
                                for u in ("px", "pct")}
        assert all(math.isfinite(v) and v >= 0 for v in figures.values())
        # smoothing takes out wobble, never adds it
        assert figures["shimmer_smoothed_px"] <= figures["shimmer_none_px"] + 1e-6
        assert math.isclose(figures["change_none_pct"], 100 * figures["change_none_px"] / row["face_px"], rel_tol=0.02)
