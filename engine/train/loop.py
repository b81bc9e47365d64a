"""Train stage: the training loop of a face pair (settings, one step, resume, report, cancel)."""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from engine.config import check_types, from_dict
from engine.errors import Cancelled, EngineError
from engine.models import check_compute, resolve_device, use_bf16
from engine.models.autoencoder import DFAutoencoder, ModelConfig, build_model
from engine.geometry.align import FACE_TYPES
from engine.models.checkpoint import has_checkpoint, load_checkpoint, load_optimizer_state, save_checkpoint
from engine.train.losses import dssim_kernel_size, face_loss, mask_loss
from engine.train.samples import Augmentation, BatchSampler, FaceSamples

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]



@dataclass(frozen=True)
class TrainSettings:
    """What a training job is asked to do; the model's shape comes from the same fields."""

    iterations: int = 2000  # absolute target: a resumed model counts the iterations it already has
    max_seconds: float | None = None  # stop earlier than `iterations` after this long
    batch_size: int = 8
    resolution: int = 64
    # Adam at 5e-4, not DeepFaceLab's 5e-5 (made for 100x larger models trained for days). On the
    # demo pair at a fixed CPU budget (300 s, 64 px): 3e-4 ended at 1.5x the loss of 1e-3, and
    # 5e-4, 1e-3 and 2e-3 ended within 2% of each other; the lower of those leaves margin for long runs.
    learning_rate: float = 5e-4
    masked: bool = True  # reconstruction loss only inside the blurred face hull
    random_warp: bool = True
    random_flip: bool = True
    arch: str = ModelConfig.arch
    ae_dims: int = ModelConfig.ae_dims
    e_dims: int = ModelConfig.e_dims
    d_dims: int = ModelConfig.d_dims
    d_mask_dims: int = ModelConfig.d_mask_dims
    precision: str = "auto"  # "bf16", "fp32", or "auto": bf16 where the hardware does it natively
    face_type: str = ""  # the model's crop; "" = the source faceset's own (a narrower one is re-cropped)
    threads: int = 0  # torch CPU threads; 0 keeps torch's default (one per physical core)
    device: str = "auto"  # the GPU when there is one
    save_every_s: float = 60.0
    report_every_s: float = 0.5
    seed: int | None = None

    def __post_init__(self) -> None:
        check_types(self, "training setting")
        if self.iterations < 0 or self.batch_size < 1 or self.learning_rate <= 0:
            raise ValueError("iterations must be >= 0, batch_size >= 1 and learning_rate > 0")
        check_compute(self.device, self.precision)
        if self.face_type and self.face_type not in FACE_TYPES:
            raise ValueError(f"unknown face type {self.face_type!r}; expected one of {', '.join(FACE_TYPES)}")
        self.model_config()  # a bad model shape is reported now, not after the data is loaded

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainSettings":
        return from_dict(cls, d, "training setting")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def model_config(self) -> ModelConfig:
        return ModelConfig(arch=self.arch, resolution=self.resolution, ae_dims=self.ae_dims,
                           e_dims=self.e_dims, d_dims=self.d_dims, d_mask_dims=self.d_mask_dims)

    def augmentation(self) -> Augmentation:
        return Augmentation(flip=self.random_flip, random_warp=self.random_warp)


def make_optimizer(model: torch.nn.Module, learning_rate: float) -> torch.optim.Adam:
    # the fused kernel does the whole update in one pass: ~35% less optimizer time on CPU
    return torch.optim.Adam(model.parameters(), lr=learning_rate, fused=True)


def train_step(model: DFAutoencoder, optimizer: torch.optim.Optimizer, src: Batch, dst: Batch,
               masked: bool, bf16: bool) -> tuple[float, float]:
    """One Adam step on a src and a dst batch; returns (src_loss, dst_loss)."""
    (src_in, src_target, src_mask), (dst_in, dst_target, dst_mask) = src, dst
    n = src_in.shape[0]
    device = next(model.parameters()).device
    kernel = dssim_kernel_size(model.config.resolution)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        # both identities through the shared encoder in one batch: same result, fewer, larger kernels
        code = model.encode(torch.cat([src_in, dst_in]))
        src_pred, src_pred_mask = model.decode(code[:n], "src")
        dst_pred, dst_pred_mask = model.decode(code[n:], "dst")
    # the losses run in fp32 (face_loss and mask_loss cast): bf16 sums over a face lose the small errors
    src_loss = (face_loss(src_pred, src_target, src_mask if masked else None, kernel)
                + mask_loss(src_pred_mask, src_mask)).mean()
    dst_loss = (face_loss(dst_pred, dst_target, dst_mask if masked else None, kernel)
                + mask_loss(dst_pred_mask, dst_mask)).mean()
    optimizer.zero_grad(set_to_none=True)
    (src_loss + dst_loss).backward()
    optimizer.step()
    return src_loss.item(), dst_loss.item()


def _to_device(batch: Batch, device: torch.device) -> Batch:
    return tuple(t.to(device, non_blocking=True) for t in batch)  # type: ignore[return-value]


def _is_oom(e: BaseException) -> bool:
    text = str(e).lower()
    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in text or "can't allocate memory" in text


def train_pair(source: FaceSamples, destination: FaceSamples, model_dir: Path, settings: TrainSettings,
               report: Callable[[float, str, dict], None], should_stop: Callable[[], bool]) -> dict[str, Any]:
    """Train (or resume) the pair's model in `model_dir`; returns {iterations, loss, checkpoint}.

    A step's loss is the mean of the source and the destination loss; the returned one is the mean
    of the last 20 steps. `should_stop` is asked before every step: when it says yes, the model is
    saved and Cancelled raised.
    """
    started = time.monotonic()
    model_dir = Path(model_dir)
    for name, faces in (("source", source), ("destination", destination)):
        if len(faces) == 0:
            raise EngineError("no_faces", f"the {name} faceset has no faces to train on")
    device = resolve_device(settings.device)
    bf16 = use_bf16(settings.precision, device)
    config = settings.model_config()
    previous_threads = torch.get_num_threads()
    if settings.threads > 0:
        torch.set_num_threads(settings.threads)
    try:
        # -- model, optimizer and history: fresh, or carried on from the checkpoint
        if has_checkpoint(model_dir):
            model, _, state = load_checkpoint(model_dir, expected=config)
            resumed = True
        else:
            with torch.random.fork_rng(devices=[]):  # a seed must not reset the whole process's RNG
                if settings.seed is not None:
                    torch.manual_seed(settings.seed)
                model = build_model(config)
            state, resumed = {"iteration": 0, "loss_history": []}, False
        # channels_last: oneDNN's convolutions run ~1.15x faster in it, in bf16 and in fp32 alike
        model = model.to(device, memory_format=torch.channels_last)
        model.train()
        optimizer = make_optimizer(model, settings.learning_rate)
        if resumed:
            load_optimizer_state(model_dir, optimizer)
        iteration = int(state["iteration"])
        history: list[float] = [float(x) for x in state["loss_history"]]
        seed = settings.seed
        src_sampler = BatchSampler(source, settings.resolution, settings.augmentation(), seed=seed)
        dst_sampler = BatchSampler(destination, settings.resolution, settings.augmentation(),
                                   seed=None if seed is None else seed + 1)  # not the same warps twice

        def save() -> Path:
            state.update(iteration=iteration, loss_history=history, settings=settings.to_dict())
            return save_checkpoint(model_dir, model, config, state, optimizer)

        def progress() -> float:
            done = iteration / settings.iterations if settings.iterations else 1.0
            if settings.max_seconds:
                done = max(done, (time.monotonic() - started) / settings.max_seconds)
            return min(1.0, done)

        # -- the loop
        last_save = last_report = time.monotonic()
        window: list[tuple[float, float]] = []
        while iteration < settings.iterations:
            if should_stop():
                save()
                raise Cancelled()
            if settings.max_seconds is not None and time.monotonic() - started >= settings.max_seconds:
                break
            src = _to_device(src_sampler.sample(settings.batch_size), device)
            dst = _to_device(dst_sampler.sample(settings.batch_size), device)
            try:
                src_loss, dst_loss = train_step(model, optimizer, src, dst, settings.masked, bf16)
            except RuntimeError as e:
                if _is_oom(e):
                    raise EngineError("out_of_memory", "not enough memory to train: lower the batch size "
                                      "or the resolution") from None
                raise
            if not (math.isfinite(src_loss) and math.isfinite(dst_loss)):
                # the last checkpoint is still good; saving now would overwrite it with NaN weights
                raise EngineError("training_diverged", f"the loss stopped being finite at iteration "
                                  f"{iteration}; lower the learning rate and resume from the last checkpoint")
            iteration += 1
            history.append((src_loss + dst_loss) / 2)
            window.append((src_loss, dst_loss))
            now = time.monotonic()
            if now - last_report >= settings.report_every_s:
                s, d = (sum(v) / len(window) for v in zip(*window))
                report(progress(), f"iteration {iteration}/{settings.iterations}, loss {(s + d) / 2:.4f}",
                       {"iteration": iteration, "loss": (s + d) / 2, "src_loss": s, "dst_loss": d,
                        "it_per_s": len(window) / (now - last_report)})
                window, last_report = [], now
            if now - last_save >= settings.save_every_s:
                save()
                last_save = now
        path = save()
    finally:
        torch.set_num_threads(previous_threads)
    recent = history[-20:]
    loss = sum(recent) / len(recent) if recent else float("nan")
    report(1.0, f"trained {iteration} iterations, loss {loss:.4f}", {"iteration": iteration, "loss": loss})
    return {"iterations": iteration, "loss": loss, "checkpoint": str(path)}
