"""Train stage: a benchmark of training speed in fp32 against bf16 autocast with channels_last."""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from engine.models import native_bf16
from engine.models.autoencoder import ModelConfig, build_model
from engine.train.loop import TrainSettings, make_optimizer, train_step


def _synthetic_batch(batch_size: int, resolution: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    images = torch.rand(batch_size, 3, resolution, resolution, generator=gen)
    target = torch.rand(batch_size, 3, resolution, resolution, generator=gen)
    mask = (torch.rand(batch_size, 1, resolution, resolution, generator=gen) > 0.5).float()
    # the sampler hands out channels_last tensors; the benchmark must feed the model the same way
    return tuple(t.contiguous(memory_format=torch.channels_last) for t in (images, target, mask))


def _steps_per_second(bf16: bool, config: ModelConfig, batches: list, seconds: float) -> float:
    torch.manual_seed(0)
    model = build_model(config).to(memory_format=torch.channels_last if bf16 else torch.contiguous_format)
    optimizer = make_optimizer(model, TrainSettings.learning_rate)
    src, dst = batches
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
    """Training it/s of the default model in fp32 and in bf16+channels_last: medians, min/max, ratio.

    Runs alternate between the two modes so that a load change on the machine hits both alike.
    `seconds` is the timed total; model builds and warm-up steps come on top.
    """
    config = ModelConfig(resolution=resolution)
    gen = torch.Generator().manual_seed(0)
    batches = [_synthetic_batch(batch_size, resolution, gen) for _ in range(2)]
    per_run = seconds / (2 * runs)
    results: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for _ in range(runs):
        for mode in results:
            results[mode].append(_steps_per_second(mode == "bf16", config, batches, per_run))

    def summary(values: list[float]) -> dict[str, Any]:
        return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}

    out: dict[str, Any] = {mode: summary(values) for mode, values in results.items()}
    out.update(
        ratio=out["bf16"]["median"] / out["fp32"]["median"],
        resolution=resolution,
        batch_size=batch_size,
        threads=torch.get_num_threads(),
        native_bf16=native_bf16(torch.device("cpu")),
        config=config.to_dict(),
    )
    return out
