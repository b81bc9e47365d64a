"""Train stage: a benchmark of training speed, bf16 autocast with channels_last against plain fp32."""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from engine.models import native_bf16
from engine.models.autoencoder import ModelConfig, build_model
from engine.train.loop import TrainSettings, make_optimizer, train_step

# (name, bf16 autocast, channels_last); the first is the figure, the second the reference
MODES = (
    ("bf16 autocast + channels_last", True, True),
    ("fp32", False, False),
    ("fp32 + channels_last", False, True),
)


def _batch(batch_size: int, resolution: int, gen: torch.Generator, channels_last: bool) -> tuple[torch.Tensor, ...]:
    shape = (batch_size, 3, resolution, resolution)
    images, target = torch.rand(shape, generator=gen), torch.rand(shape, generator=gen)
    mask = (torch.rand(batch_size, 1, resolution, resolution, generator=gen) > 0.5).float()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return tuple(t.contiguous(memory_format=fmt) for t in (images, target, mask))


def _steps_per_second(bf16: bool, channels_last: bool, config: ModelConfig, batch_size: int, seconds: float) -> float:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = build_model(config).to(memory_format=fmt)
    optimizer = make_optimizer(model, TrainSettings.learning_rate)
    src, dst = (_batch(batch_size, config.resolution, gen, channels_last) for _ in range(2))
    for _ in range(2):  # oneDNN builds its kernels on the first calls; that is not training speed
        train_step(model, optimizer, src, dst, True, bf16)
    steps, start = 0, time.perf_counter()
    while True:
        train_step(model, optimizer, src, dst, True, bf16)
        steps += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and steps >= 2:
            return steps / elapsed


def bench_training(seconds: float = 20, resolution: int = 64, batch_size: int = 8, runs: int = 3) -> dict[str, Any]:
    """Training it/s of the default model: bf16+channels_last (figure) against fp32 (reference).

    Medians, min and max of `runs` runs per mode; runs alternate between modes so that a change of
    load on the machine hits all of them alike. `seconds` is the timed total (model builds and
    warm-up steps come on top). The same training step as train_pair, on random batches.
    """
    config = ModelConfig(resolution=resolution)
    per_run = seconds / (len(MODES) * runs)
    values: dict[str, list[float]] = {name: [] for name, _, _ in MODES}
    for _ in range(runs):
        for name, bf16, channels_last in MODES:
            values[name].append(_steps_per_second(bf16, channels_last, config, batch_size, per_run))
    summaries = [
        {"name": name, "median": statistics.median(v), "min": min(v), "max": max(v), "runs": v}
        for name, v in values.items()
    ]
    figure, reference, *others = summaries
    return {
        "unit": "it/s",
        "figure": figure,
        "reference": reference,
        "ratio": figure["median"] / reference["median"],
        "others": others,
        "resolution": resolution,
        "batch_size": batch_size,
        "threads": torch.get_num_threads(),
        "native_bf16": native_bf16(torch.device("cpu")),
        "config": config.to_dict(),
    }
