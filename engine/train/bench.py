"""Train stage: how fast training runs, and how close it comes to what this machine's convolutions can do.

For each preset: samples/s of the real training step (Trainer.step), the FLOPs of one step counted
from the model (torch.utils.flop_counter over forward and backward), the FLOP/s that makes, and
this machine's bf16 convolution peak measured in the same run, so the ratio says how much of the
hardware the model's shape and the step's overheads leave unused. A second pass feeds the step
through BatchStream with the default workers and reports the share of step time spent waiting for
batches. Every figure is the median of `runs` runs, with min and max: these machines are noisy.

Measured on the 2-core AMX Xeon (shared with other work, so rough): the bf16 conv peak is ~2.0-2.6
TFLOP/s when the cores are free (650-900 GFLOP/s under load). The 128 preset counts 218 GFLOP a step
and runs ~470 GFLOP/s at best (~35 samples/s), ~18% of the free peak; paired runs under load give
30-40% because load cuts the short peak bursts harder than the long steps. Where the rest goes
(profile of one step): convolutions ~70% (a training conv's forward, input and weight gradients run
at 55-70% of the forward-only peak even at ideal shapes; the 8x8 and 4x4 maps with 512-1024
channels run lower), the DSSIM's 11x11 depthwise convolutions ~8%, autocast's weight casts ~9%,
Adam ~3%. Wider layers raise the ratio but not the speed: e_dims=d_dims=96 gave ~24% at 22 samples/s,
batch 16 ~20% at ~38 samples/s. Data wait through one worker: ~1% (quick), <0.5% (128).
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from engine.benchstats import summary
from engine.geometry.align import face_type, template_points
from engine.models import native_bf16
from engine.train.samples import Batch, FaceSamples
from engine.train.settings import TrainSettings
from engine.train.workers import BatchStream, default_workers

PRESET_NAMES = ("quick", "128")
# (batch, channels, map side) of the peak convolutions: 3x3, channels in = out, channels_last, bf16;
# the best of them is the peak (small maps starve the cores, huge ones spill the caches)
PEAK_SHAPES = ((32, 256, 32), (16, 512, 16), (32, 128, 64))


def _timed(fn: Callable[[], Any], seconds: float, least: int = 2) -> float:
    """Calls per second of fn over at least `seconds` and `least` calls."""
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and calls >= least:
            return calls / elapsed


def conv_peak(seconds: float, device: torch.device, shapes: tuple[tuple[int, int, int], ...] = PEAK_SHAPES,
              bursts: int = 3) -> dict[str, Any]:
    """bf16 FLOP/s of large 3x3 convolutions (forward): the best of `shapes`, each timed `seconds`
    in `bursts` bursts of which the fastest counts (what the hardware does when others let it)."""
    rates = {}
    for n, c, side in shapes:
        x = torch.randn(n, c, side, side, device=device).to(torch.bfloat16, memory_format=torch.channels_last)
        w = torch.randn(c, c, 3, 3, device=device).to(torch.bfloat16, memory_format=torch.channels_last)
        flops = 2 * n * c * c * 9 * side * side

        def conv() -> None:
            F.conv2d(x, w, padding=1)
            if device.type == "cuda":
                torch.cuda.synchronize()

        with torch.no_grad():
            for _ in range(2):  # oneDNN picks and builds its kernel on the first calls
                conv()
            rate = max(_timed(conv, seconds / bursts) for _ in range(bursts)) * flops
        rates[f"{n}x{c}x{side}x{side}"] = rate
    best = max(rates, key=rates.get)  # type: ignore[arg-type]
    return {"flops_per_s": rates[best], "shape": best, "all": rates}


def synthetic_faces(n: int, size: int = 64, seed: int = 0) -> FaceSamples:
    """Cartoon faces (skin, eyes, mouth) drawn on jittered template landmarks: sampling costs the same
    whatever faces show, so the benchmark needs no real faceset (the sampler tests use them too)."""
    import cv2

    rng = np.random.default_rng(seed)
    images, landmarks = [], []
    for _ in range(n):
        lm = template_points(size, face_type("full")) + rng.normal(0, size / 100, (68, 2))
        img = np.full((size, size, 3), rng.integers(40, 90, 3), np.uint8)
        cv2.fillPoly(img, [cv2.convexHull(lm[:27].astype(np.int32))], (90, 140, 200))
        for eye in (lm[36:42], lm[42:48]):
            cv2.circle(img, tuple(int(v) for v in eye.mean(0)), max(1, size // 24), (30, 30, 30), -1)
        cv2.polylines(img, [lm[48:60].astype(np.int32)], True, (40, 40, 160), max(1, size // 40))
        images.append(img)
        landmarks.append(lm)
    return FaceSamples(np.stack(images), np.stack(landmarks).astype(np.float32))


def _random_batch(settings: TrainSettings, gen: torch.Generator) -> Batch:
    c = 1 if settings.grayscale else 3
    shape = (settings.batch_size, c, settings.resolution, settings.resolution)
    mask_shape = (settings.batch_size, 1, settings.resolution, settings.resolution)
    # channels_last, as BatchStream's batches are (NHWC memory viewed as NCHW): a plain NCHW batch
    # makes the first convolution and its backward reorder the layout, ~11% of a 64 px step
    fmt = torch.channels_last
    return Batch(torch.rand(shape, generator=gen).contiguous(memory_format=fmt),
                 torch.rand(shape, generator=gen).contiguous(memory_format=fmt),
                 (torch.rand(mask_shape, generator=gen) > 0.5).float(), (torch.rand(mask_shape, generator=gen) > 0.8).float())


def step_flops(trainer: Any, src: Batch, dst: Batch) -> int:
    """FLOPs of one whole training step (forward, backward; matmuls and convolutions), counted."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        trainer.step(src, dst)
    return int(counter.get_total_flops())


def bench_preset(name: str, seconds: float, runs: int, device: torch.device, peak: Callable[[], float],
                 overrides: dict[str, Any] | None = None, workers: int | None = None) -> dict[str, Any]:
    """One preset: compute-only samples/s and FLOP/s on fixed batches, then data-wait through BatchStream.

    `peak()` measures the convolution peak; it runs right before each timed run, so a run and its
    reference see the same load on the machine (a shared 2-core box swings by 2-3x)."""
    from engine.train.trainer import Trainer

    settings = TrainSettings.from_preset(name, {"seed": 0, "device": str(device), **(overrides or {})})
    trainer = Trainer(settings, device)
    gen = torch.Generator().manual_seed(0)
    src, dst = _random_batch(settings, gen), _random_batch(settings, gen)
    for _ in range(2):  # kernels are chosen and built on the first steps; that is not training speed
        trainer.step(src, dst)
    flops = step_flops(trainer, src, dst)
    per_run = seconds / (2 * runs)
    peaks, steps = [], []
    for _ in range(runs):
        peaks.append(peak())
        steps.append(_timed(lambda: trainer.step(src, dst), per_run))
    samples = [2 * settings.batch_size * s for s in steps]  # a step trains a source and a destination batch
    achieved = [flops * s for s in steps]

    n_workers = default_workers() if workers is None else workers
    faces = [synthetic_faces(16, settings.resolution, seed) for seed in (1, 2)]
    shares, fed = [], []
    with BatchStream(faces[0], faces[1], settings.resolution, settings.batch_size, settings.augmentation("src"),
                     settings.augmentation("dst"), n_workers, seed=0, grayscale=settings.grayscale,
                     colour_transfer=settings.colour_transfer) as stream:
        trainer.step(*stream.next())  # the workers' start is not a steady-state wait
        for _ in range(runs):
            wait0, count, start = stream.wait_seconds, 0, time.perf_counter()
            while True:
                trainer.step(*stream.next())
                count += 1
                elapsed = time.perf_counter() - start
                if elapsed >= per_run and count >= 2:
                    break
            shares.append((stream.wait_seconds - wait0) / elapsed)
            fed.append(2 * settings.batch_size * count / elapsed)
    return {
        "preset": name, "resolution": settings.resolution, "batch_size": settings.batch_size, "arch": settings.arch,
        "dims": {k: getattr(settings, k) for k in ("ae_dims", "e_dims", "d_dims", "d_mask_dims")},
        "samples_per_s": summary(samples), "flops_per_step": flops, "flops_per_s": summary(achieved),
        "peak_flops_per_s": summary(peaks), "ratio_to_peak": summary([a / p for a, p in zip(achieved, peaks)]),
        # each at its best: on a quiet machine the two meet, and other work depresses the short
        # peak bursts and the long training runs differently, which skews the paired ratios
        "best_ratio": max(achieved) / max(peaks),
        "with_workers": {"workers": n_workers, "samples_per_s": summary(fed), "data_wait_share": summary(shares)},
    }


def bench_training(seconds: float = 20, runs: int = 3, presets: tuple[str, ...] = PRESET_NAMES,
                   overrides: dict[str, Any] | None = None, peak_shapes: tuple[tuple[int, int, int], ...] = PEAK_SHAPES,
                   workers: int | None = None) -> dict[str, Any]:
    """The training benchmark: every preset against this machine's bf16 convolution peak.

    `seconds` is the timed total per preset (model builds, warm-up steps and the peak's own
    measurement come on top); `overrides` go onto every preset (tests shrink them).
    """
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    peak_seconds = max(0.05, seconds / (20 * len(peak_shapes)))
    shapes: list[str] = []

    def peak() -> float:
        p = conv_peak(peak_seconds, device, peak_shapes)
        shapes.append(p["shape"])
        return p["flops_per_s"]

    out: dict[str, Any] = {"unit": "samples/s", "device": str(device), "threads": torch.get_num_threads(),
                           "native_bf16": native_bf16(device), "peak": "bf16 3x3 convolution, channels_last, forward, "
                           f"best of {['x'.join(map(str, s)) for s in peak_shapes]} (batch x channels x side)",
                           "presets": {}}
    for name in presets:
        r = bench_preset(name, seconds, runs, device, peak, overrides, workers)
        out["presets"][name] = r
        print(f"  train {name}: {r['samples_per_s']['median']:.1f} samples/s, "
              f"{r['flops_per_s']['median'] / 1e9:.1f} GFLOP/s, bf16 conv peak {r['peak_flops_per_s']['median'] / 1e9:.0f} "
              f"GFLOP/s, ratio {100 * r['ratio_to_peak']['median']:.0f}% (min {100 * r['ratio_to_peak']['min']:.0f}%, "
              f"max {100 * r['ratio_to_peak']['max']:.0f}%; best/best {100 * r['best_ratio']:.0f}%), data wait {100 * r['with_workers']['data_wait_share']['median']:.0f}% "
              f"with {r['with_workers']['workers']} workers")
    out["peak_shapes_best"] = sorted(set(shapes))
    return out
