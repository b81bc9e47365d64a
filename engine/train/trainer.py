"""Train stage: one SAEHD training step (autoencoder, discriminators, optimizers, losses) and its state.

The Trainer owns everything that changes on a step: the model, the patch discriminator (GAN) and
the latent-code discriminator (true face) when their powers ask for them, one optimizer per module,
learning-rate dropout and gradient clipping. The loop (loop.py) owns time, files and commands; the
benchmark drives the same step on random batches.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import safetensors
import safetensors.torch
import torch
from torch import Tensor, nn

from engine.files import atomic_write
from engine.models import use_bf16
from engine.models.autoencoder import build_model
from engine.models.checkpoint import load_optimizer_state, save_checkpoint
from engine.models.discriminators import CodeDiscriminator, PatchDiscriminator
from engine.models.memory import check_training_memory
from engine.train import distributed
from engine.train.losses import (background_style_loss, face_loss, face_style_loss, gan_discriminator_loss,
                                 gan_generator_loss, mask_loss, priority_loss)
from engine.train.optimizers import LrDropout, clip_gradients, make_optimizer, set_learning_rate
from engine.train.phases import effective
from engine.train.samples import Batch
from engine.train.settings import PHASES, TrainSettings

log = logging.getLogger(__name__)
DISCRIMINATORS_FILE = "discriminators.safetensors"
OPTIMIZER_STATES = {"adam": 2, "rmsprop": 1, "adabelief": 2}  # per-parameter tensors each keeps
# torch.compile does not pay on this 2-core CPU at 64 px (quick preset, batch 8, bf16): the first
# step compiled for ~170 s (8 s once inductor's disk cache is warm), and afterwards, alternating 3 s
# blocks with eager on a busy machine, it was no faster (median 0.8 vs 1.3 it/s, best 4.3 vs 5.6):
# oneDNN's convolutions and their backward are ~55% of a step and compile leaves them as they are.
# So it stays off by default; it is there for GPUs, where fusing the small element-wise ops pays.


class Outputs(NamedTuple):
    """One forward pass over a source and a destination batch (see models' PairOutput)."""

    src: Tensor
    src_mask: Tensor
    dst: Tensor
    dst_mask: Tensor
    swap: Tensor | None
    swap_mask: Tensor | None
    src_code: Tensor
    dst_code: Tensor


class PairNet(nn.Module):
    """The autoencoder's pair pass as a module's forward, so DistributedDataParallel and
    torch.compile see one call per step."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, src_in: Tensor, dst_in: Tensor, swap: bool = False) -> Outputs:
        out = self.model.pair(src_in, dst_in, swap=swap)
        return Outputs(out.src, out.src_mask, out.dst, out.dst_mask, out.swap, out.swap_mask,
                       out.src_code, out.dst_code)


def _on(t: Tensor, device: torch.device) -> Tensor:
    return t.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)


class Trainer:
    """Model, discriminators and optimizers of a run; `.step(src, dst)` trains one SAEHD step."""

    def __init__(self, settings: TrainSettings, device: torch.device, model: nn.Module | None = None) -> None:
        self.device = device
        self.bf16 = use_bf16(settings.precision, device)
        if model is None:
            with torch.random.fork_rng(devices=[]):  # a seed must not reset the whole process's RNG
                if settings.seed is not None:
                    torch.manual_seed(settings.seed)
                model = build_model(settings.model_config())
        # channels_last: oneDNN's convolutions run ~1.15x faster in it, in bf16 and in fp32 alike
        self.model = model.to(device, memory_format=torch.channels_last).train()
        self.net: nn.Module = distributed.wrap(PairNet(self.model), device)
        if settings.compile:
            self.net = torch.compile(self.net)  # type: ignore[assignment]
        self.patch_d: nn.Module | None = None
        self.code_d: nn.Module | None = None
        self.d_optimizers: dict[str, torch.optim.Optimizer] = {}
        seed = settings.seed if settings.seed is not None else random.randrange(2**31)
        # every process must drop the same elements, or the weights drift apart under DDP
        self._dropout_gen = torch.Generator(device=device).manual_seed(distributed.shared_seed(seed, device))
        self.settings = settings
        self.optimizer = make_optimizer(settings.optimizer, self.model.parameters(), settings.learning_rate, device)
        self.apply(settings)

    # -- options ---------------------------------------------------------------------------------

    def apply(self, settings: TrainSettings) -> None:
        """Take new soft options (a phase change, a "set" command) without losing any state."""
        if settings.optimizer != self.settings.optimizer:
            # another optimizer's moments mean nothing to this one: it starts afresh
            self.optimizer = make_optimizer(settings.optimizer, self.model.parameters(), settings.learning_rate,
                                            self.device)
            for name, module in (("patch", self.patch_d), ("code", self.code_d)):
                if module is not None:
                    self.d_optimizers[name] = self._d_optimizer(module, settings)
        self.settings = settings
        self.run = effective(settings)
        set_learning_rate(self.optimizer, settings.learning_rate)
        for opt in self.d_optimizers.values():
            set_learning_rate(opt, settings.learning_rate)
        self.dropout = LrDropout(self.model.parameters(), generator=self._dropout_gen) if self.run.lr_dropout else None
        if self.run.gan_power > 0:
            self._ensure_patch()
        if self.run.true_face_power > 0:
            self._ensure_code()

    @property
    def channels(self) -> int:
        return int(getattr(self.model.config, "channels", 3))

    def _new_patch(self) -> nn.Module:
        patch = self.settings.gan_patch_size or max(3, self.settings.resolution // 8)
        return PatchDiscriminator(self.channels, patch, self.settings.gan_dims)

    def _ensure_patch(self) -> None:
        """The GAN's patch discriminator, built the first time a phase needs it (or a resume brings it)."""
        if self.patch_d is None:
            self.patch_d = self._discriminator("patch", self._new_patch())

    def _ensure_code(self) -> None:
        """True face's code discriminator, built the first time its power is set (or a resume brings it)."""
        if self.code_d is None:
            self.code_d = self._discriminator("code", CodeDiscriminator(self.model.config.code_shape))

    def _d_optimizer(self, module: nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
        return make_optimizer(settings.optimizer, module.parameters(), settings.learning_rate, self.device)

    def _discriminator(self, name: str, module: nn.Module) -> nn.Module:
        module = module.to(self.device, memory_format=torch.channels_last).train()
        self.d_optimizers[name] = self._d_optimizer(module, self.settings)
        return distributed.wrap(module, self.device)

    def discriminators(self) -> list[nn.Module]:
        return [distributed.unwrap(d) for d in (self.patch_d, self.code_d) if d is not None]

    # -- the step --------------------------------------------------------------------------------

    def step(self, src: Batch, dst: Batch) -> dict[str, float]:
        """One training step on a source and a destination Batch; returns the step's losses.

        "src_loss" and "dst_loss" are the reconstruction losses (face, mask, eyes and mouth) the
        graph and the phase detector follow; the adversarial and style terms are reported apart.
        """
        s = self.run
        src_in, src_t, src_m, src_p = (_on(t, self.device) for t in src)
        dst_in, dst_t, dst_m, dst_p = (_on(t, self.device) for t in dst)
        swap = s.face_style_power > 0 or s.bg_style_power > 0
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            # both identities through the shared encoder in one batch: same result, fewer, larger kernels
            out: Outputs = self.net(src_in, dst_in, swap)

        # the losses run in fp32 (every loss function casts): bf16 sums over a face lose the small errors
        def reconstruction(pred: Tensor, pred_mask: Tensor, target: Tensor, mask: Tensor, prio: Tensor) -> Tensor:
            loss = face_loss(pred, target, mask if s.masked else None, ms_ssim=s.ms_ssim) + mask_loss(pred_mask, mask)
            if s.eyes_mouth_priority:
                loss = loss + priority_loss(pred, target, prio)
            return loss.mean()

        src_loss = reconstruction(out.src, out.src_mask, src_t, src_m, src_p)
        dst_loss = reconstruction(out.dst, out.dst_mask, dst_t, dst_m, dst_p)
        total = src_loss + dst_loss
        stats: dict[str, float] = {}
        if self.patch_d is not None and s.gan_power > 0:
            fake = out.src * src_m if s.masked else out.src
            gan = s.gan_power * gan_generator_loss(self._frozen(self.patch_d, fake)).mean()
            total, stats["gan_loss"] = total + gan, gan
        if self.code_d is not None and s.true_face_power > 0:
            # the destination's code should look like a source code: the swap then keeps more of the source
            tf = s.true_face_power * gan_generator_loss(self._frozen(self.code_d, out.dst_code)).mean()
            total, stats["true_face_loss"] = total + tf, tf
        if swap and out.swap is not None:
            style = (face_style_loss(out.swap, dst_t, dst_m, s.face_style_power)
                     + background_style_loss(out.swap, dst_t, dst_m, s.bg_style_power)).mean()
            total, stats["style_loss"] = total + style, style

        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        if s.clip_grad > 0:
            clip_gradients(self.model.parameters(), s.clip_grad)
        if self.dropout is not None:
            self.dropout.before_step()
        self.optimizer.step()
        if self.dropout is not None:
            self.dropout.after_step()

        if self.patch_d is not None and s.gan_power > 0:
            real = src_t * src_m if s.masked else src_t
            fake = (out.src * src_m if s.masked else out.src).detach()
            stats["d_loss"] = self._train_discriminator("patch", self.patch_d, real, fake)
        if self.code_d is not None and s.true_face_power > 0:
            stats["code_d_loss"] = self._train_discriminator("code", self.code_d, out.src_code.detach(),
                                                             out.dst_code.detach())
        result = {"src_loss": src_loss.item(), "dst_loss": dst_loss.item()}
        result.update({k: float(v.detach()) if isinstance(v, Tensor) else float(v) for k, v in stats.items()})
        return result

    def _frozen(self, d: nn.Module, x: Tensor) -> Tensor:
        """The discriminator's logits for `x` with its own weights left out of this backward pass."""
        module = distributed.unwrap(d)  # no DDP sync: the discriminator is not trained by this pass
        module.requires_grad_(False)
        try:
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                return module(x)
        finally:
            module.requires_grad_(True)

    def _train_discriminator(self, name: str, d: nn.Module, real: Tensor, fake: Tensor) -> float:
        n = real.shape[0]
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            logits = d(torch.cat([real, fake]))  # one pass: DDP expects one forward per backward
        loss = gan_discriminator_loss(logits[:n], logits[n:])
        opt = self.d_optimizers[name]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    # -- preview ---------------------------------------------------------------------------------

    @torch.no_grad()
    def preview(self, src: Batch, dst: Batch) -> tuple[list[np.ndarray], list[str]]:
        """Columns for the preview grid: source, its reconstruction, destination, its reconstruction, swap."""
        src_t = _on(src.targets, self.device)
        dst_t = _on(dst.targets, self.device)
        self.model.eval()
        try:
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                out = PairNet(self.model)(src_t, dst_t, True)
        finally:
            self.model.train()

        def images(t: Tensor) -> np.ndarray:
            return (t.float().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()

        columns = [images(src_t), images(out.src), images(dst_t), images(out.dst), images(out.swap)]
        return columns, ["source", "src recon", "destination", "dst recon", "swap"]

    # -- memory and state ------------------------------------------------------------------------

    def check_memory(self, batch_size: int) -> None:
        """Refuse (out_of_memory, with the largest batch that fits) before the first step.

        Counts what the run can grow into, not just what it holds now: the patch discriminator of
        the gan phase and lr dropout's copy of the weights in refine, when the run can get there
        (automatic phases, or that phase asked for), so a phase change cannot run out mid-run.
        """
        s = self.settings
        reach = PHASES[PHASES.index(s.phase):] if s.auto_phases else (s.phase,)
        discriminators = self.discriminators()
        if self.patch_d is None and "gan" in reach:
            discriminators.append(self._new_patch())
        dropout = s.lr_dropout and any(p != "warp" for p in reach)
        states = OPTIMIZER_STATES[s.optimizer] + (1 if dropout else 0)
        check_training_memory(self.model, discriminators, batch_size, self.device, self.bf16, states)

    def save(self, model_dir: Path, state: dict[str, Any]) -> Path:
        """Checkpoint the model, its optimizer and the discriminators (a second file beside it)."""
        state = {**state, "optimizer": self.settings.optimizer}
        tensors: dict[str, Tensor] = {}
        for name, module in (("patch", self.patch_d), ("code", self.code_d)):
            if module is None:
                continue
            for k, v in distributed.unwrap(module).state_dict().items():
                tensors[f"{name}.model.{k}"] = v.detach().cpu().contiguous()
            for index, per_param in self.d_optimizers[name].state_dict()["state"].items():
                for key, value in per_param.items():
                    if isinstance(value, Tensor):
                        tensors[f"{name}.optimizer.{index}.{key}"] = value.detach().cpu().contiguous()
        if tensors:
            # the two files cannot be replaced in one step, so each names the iteration it belongs to:
            # after a kill between the two writes, load() sees the mismatch and the discriminators
            # start afresh (they catch up in a few hundred steps) instead of training against a
            # model from another moment
            meta = {"optimizer": self.settings.optimizer, "iteration": str(state.get("iteration")),
                    "patch": str(self.patch_d is not None), "code": str(self.code_d is not None)}
            atomic_write(Path(model_dir) / DISCRIMINATORS_FILE, safetensors.torch.save(tensors, metadata=meta))
        return save_checkpoint(model_dir, self.model, self.model.config, state, self.optimizer)

    def load(self, model_dir: Path, state: dict[str, Any]) -> None:
        """Restore the optimizer states (and discriminators) a checkpoint saved, where they still fit."""
        if state.get("optimizer", "adam") == self.settings.optimizer:
            load_optimizer_state(model_dir, self.optimizer)
        path = Path(model_dir) / DISCRIMINATORS_FILE
        if not path.is_file():
            return
        try:
            with safetensors.safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:  # the model is what matters: discriminators can start afresh
            log.warning("ignoring the unreadable discriminators file %s (%s); they start afresh", path, e)
            return
        if meta.get("iteration") != str(state.get("iteration")):
            log.warning("the discriminators in %s were saved at iteration %s, the model at %s; they start afresh",
                        path, meta.get("iteration"), state.get("iteration"))
            return
        for name in ("patch", "code"):
            weights = {k[len(name) + 7:]: v for k, v in tensors.items() if k.startswith(f"{name}.model.")}
            if not weights:
                continue
            # a GAN run resumed in a phase without GAN still keeps its discriminator for later
            self._ensure_patch() if name == "patch" else self._ensure_code()
            module = distributed.unwrap(self.patch_d if name == "patch" else self.code_d)
            try:
                module.load_state_dict(weights, strict=True)
            except RuntimeError:
                continue  # another patch size or width: that discriminator starts afresh
            if meta.get("optimizer") != self.settings.optimizer:
                continue
            opt = self.d_optimizers[name]
            per_param: dict[int, dict[str, Tensor]] = {}
            prefix = f"{name}.optimizer."
            for k, v in tensors.items():
                if k.startswith(prefix):
                    index, key = k[len(prefix):].split(".", 1)
                    per_param.setdefault(int(index), {})[key] = v
            try:
                opt.load_state_dict({"state": per_param, "param_groups": opt.state_dict()["param_groups"]})
            except (ValueError, RuntimeError, KeyError):
                pass  # moments that do not fit are only a slower start
