"""Masks stage: training the segmentation network from labelled crops (engine.models.segmenter runs it).

One visible loop (draw an augmented batch, one Adam step on BCE + dice, report, checkpoint), like the
swap model's. The checkpoint is engine.models.checkpoint's single safetensors file: weights, Adam
state, the SegNetConfig and the training state (iteration count, loss history), so a run resumes
where it stopped and models.segmenter.Segmenter.load rebuilds the network from the folder alone.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import torch
from torch.nn import functional as F

from engine.config import check_types, from_dict
from engine.errors import Cancelled, EngineError
from engine.models import check_compute, resolve_device, use_bf16
from engine.models.checkpoint import has_checkpoint, load_optimizer_state, save_checkpoint
from engine.masks.augment import MaskAugmentation, PairAugmenter, Prefetcher
from engine.models.segmenter import KIND, load_model, read_seg_checkpoint, resize_stack, to_input
from engine.models.segnet import SegNet, SegNetConfig


@dataclass(frozen=True)
class SegTrainSettings:
    """What a mask training job is asked to do; the network's shape comes from the same fields."""

    resolution: int = 128  # 128 trains in minutes on a CPU; 256 (DeepFaceLab's XSeg) wants a GPU
    width: int = SegNetConfig.width
    iterations: int = 3000  # absolute target: a resumed model counts the iterations it already has
    max_seconds: float | None = None  # stop earlier than `iterations` after this long
    # 4, not 8: at a fixed CPU budget twice the steps of half the size learnt more (occlusion bench,
    # 240 s at 128 px: IoU on unseen frames 0.886 -> 0.900)
    batch_size: int = 4
    learning_rate: float = 2e-3  # decays along a cosine to a tenth of this by the end of the run
    precision: str = "auto"  # "bf16", "fp32", or "auto": bf16 where the hardware does it natively
    device: str = "auto"  # the GPU when there is one
    seed: int | None = None
    save_every_s: float = 60.0
    report_every_s: float = 0.5

    def __post_init__(self) -> None:
        check_types(self, "mask training setting")
        if self.iterations < 0 or self.batch_size < 1 or self.learning_rate <= 0:
            raise ValueError("iterations must be >= 0, batch_size >= 1 and learning_rate > 0")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise ValueError("max_seconds must be positive")
        check_compute(self.device, self.precision)
        self.config()  # a bad network shape is reported now, not after the data is loaded

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SegTrainSettings":
        return from_dict(cls, d, "mask training setting")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def config(self) -> SegNetConfig:
        return SegNetConfig(resolution=self.resolution, width=self.width)


def seg_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """(Weighted) BCE plus soft dice, in fp32: BCE drives every pixel, dice keeps a small occluder
    from being outvoted by the many easy background and cheek pixels."""
    logits, target = logits.float(), target.float()
    bce = F.binary_cross_entropy_with_logits(logits, target, weight=weight)
    p = torch.sigmoid(logits)
    inter = (p * target).sum(dim=(1, 2, 3))
    dice = 1 - (2 * inter + 1) / (p.sum(dim=(1, 2, 3)) + target.sum(dim=(1, 2, 3)) + 1)
    return bce + dice.mean()


def train_segmenter(images: np.ndarray, masks: np.ndarray, model_dir: Path, settings: SegTrainSettings,
                    report: Callable[[float, str, dict], None], should_stop: Callable[[], bool],
                    augmentation: MaskAugmentation = MaskAugmentation()) -> dict[str, Any]:
    """Train (or resume) the mask model in `model_dir` on crops (N,S,S,3) uint8 and masks (N,S,S) 0..1.

    Returns {iterations, loss (mean of the last 20 steps), checkpoint, seconds}. `should_stop` is
    asked before every step: when it says yes, the model is saved and Cancelled raised.
    """
    started = time.monotonic()
    if images.ndim != 4 or images.shape[0] == 0 or masks.shape != images.shape[:3]:
        raise EngineError("no_labels", "mask training needs labelled crops (N,S,S,3) and their masks (N,S,S)")
    model_dir, device = Path(model_dir), resolve_device(settings.device)
    bf16 = use_bf16(settings.precision, device)
    config = settings.config()
    if has_checkpoint(model_dir):
        model, saved, state = load_model(model_dir, device)
        if saved != config:
            raise EngineError("model_mismatch", f"the mask model in {model_dir} was built with resolution "
                              f"{saved.resolution} and width {saved.width}; asked {config.resolution}/{config.width}")
        resumed = True
    else:
        with torch.random.fork_rng(devices=[]):  # a seed must not reset the whole process's RNG
            if settings.seed is not None:
                torch.manual_seed(settings.seed)
            model = SegNet(config).to(device, memory_format=torch.channels_last)
        state, resumed = {"kind": KIND, "iteration": 0, "loss_history": []}, False
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate, fused=True)
    if resumed:
        load_optimizer_state(model_dir, optimizer)
    iteration = int(state["iteration"])
    history = [float(x) for x in state["loss_history"]]
    r = settings.resolution
    augmenter = PairAugmenter(resize_stack(images, r), resize_stack(masks.astype(np.float32), r),
                              augmentation, seed=settings.seed)

    def save() -> Path:
        state.update(kind=KIND, iteration=iteration, loss_history=history, settings=settings.to_dict())
        return save_checkpoint(model_dir, model, config, state, optimizer)

    def progress() -> float:
        done = iteration / settings.iterations if settings.iterations else 1.0
        if settings.max_seconds:
            done = max(done, (time.monotonic() - started) / settings.max_seconds)
        return min(1.0, done)

    # cv2's own thread pool would fight torch's for the same cores over 128 px images
    cv_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    prefetch = Prefetcher(lambda: augmenter.batch(settings.batch_size))
    try:
        last_save = last_report = time.monotonic()
        window: list[float] = []
        while iteration < settings.iterations:
            if should_stop():
                save()
                raise Cancelled()
            if settings.max_seconds is not None and time.monotonic() - started >= settings.max_seconds:
                break
            # cosine decay over the run (by iterations or by time, whichever is further along)
            for group in optimizer.param_groups:
                group["lr"] = settings.learning_rate * (0.1 + 0.45 * (1 + math.cos(math.pi * progress())))
            batch_images, batch_masks = prefetch.next()
            x = to_input(batch_images, device)
            y = torch.from_numpy(batch_masks)[:, None].to(device, non_blocking=True)
            try:
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    logits = model(x)
                loss = seg_loss(logits, y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            except torch.OutOfMemoryError:
                raise EngineError("out_of_memory", "not enough memory to train the mask model: lower the "
                                  "batch size or the resolution") from None
            value = loss.item()
            if not math.isfinite(value):
                raise EngineError("training_diverged", f"the mask loss stopped being finite at iteration "
                                  f"{iteration}; lower the learning rate and resume from the last checkpoint")
            iteration += 1
            history.append(value)
            window.append(value)
            now = time.monotonic()
            if now - last_report >= settings.report_every_s:
                mean = sum(window) / len(window)
                report(progress(), f"iteration {iteration}/{settings.iterations}, loss {mean:.4f}",
                       {"iteration": iteration, "loss": mean, "it_per_s": len(window) / (now - last_report)})
                window, last_report = [], now
            if now - last_save >= settings.save_every_s:
                save()
                last_save = now
        path = save()
    finally:
        prefetch.close()
        cv2.setNumThreads(cv_threads)
    recent = history[-20:]
    loss_value = sum(recent) / len(recent) if recent else float("nan")
    report(1.0, f"trained {iteration} iterations, loss {loss_value:.4f}", {"iteration": iteration, "loss": loss_value})
    return {"iterations": iteration, "loss": loss_value, "checkpoint": str(path),
            "seconds": time.monotonic() - started}


def trained_iterations(model_dir: Path) -> int:
    """How many steps the mask model in `model_dir` has had (0 when there is none yet)."""
    return int(read_seg_checkpoint(Path(model_dir))[1]["iteration"]) if has_checkpoint(model_dir) else 0
