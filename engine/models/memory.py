"""Shared piece: how much memory a training run needs, checked before it starts instead of crashing mid-run.

The estimate is built from the modules themselves, not from a table per preset:
- parameters: weights, their gradients and the optimizer's per-weight states, all fp32 (plus the
  bf16 copies autocast makes of the weights);
- activations: what autograd keeps for the backward pass, measured by running one training forward
  (pair with swap, and every discriminator) on the "meta" device, which computes shapes only, at
  batch 1 and 2; the difference is the per-sample part. bf16 autocast halves it.
A safety factor covers what the forward does not show: the backward pass's temporary gradients,
the losses' own maps and allocator fragmentation. See tests/engine/models/test_memory.py for the
comparison with a measured training step.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call

from engine.errors import EngineError
from engine.models.discriminators import CodeDiscriminator

ACTIVATION_SAFETY = 1.5  # backward temporaries and loss maps on top of what the forward saves
# fixed headroom: oneDNN/cuDNN scratch space, the CUDA context's own allocations, sample queues.
# 512 MiB on CPU: a measured step's peak ran ~100 MiB over the estimate in one venv and ~260 MiB
# in a freshly built one (allocator arenas, oneDNN's kernel caches); the check must err safe
OVERHEAD = {"cpu": 512 << 20, "cuda": 768 << 20}
GIB = 1 << 30


def _unwrap(model: nn.Module) -> nn.Module:
    """The network under DistributedDataParallel (.module) or torch.compile (._orig_mod) wrappers."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


class _Step(nn.Module):
    """One training forward: both reconstructions and the swap, then every discriminator's inputs."""

    def __init__(self, model: nn.Module, discriminators: Sequence[nn.Module]) -> None:
        super().__init__()
        self.model = model
        self.discriminators = nn.ModuleList(discriminators)

    def forward(self, src: Tensor, dst: Tensor) -> list[Tensor]:
        out = self.model.pair(src, dst, swap=True)
        results = [out.src, out.src_mask, out.dst, out.dst_mask, out.swap, out.swap_mask]
        for d in self.discriminators:
            if isinstance(d, CodeDiscriminator):
                results += [d(out.src_code), d(out.dst_code)]
            else:  # a patch discriminator judges real and drawn faces
                results += [d(src), d(out.src), d(dst), d(out.dst)]
        return results


def _forward_bytes(step: _Step, batch: int) -> int:
    """Bytes autograd saves for backward plus the outputs, for a forward of `batch`, on meta."""
    params = {n: torch.empty_like(p, device="meta").requires_grad_(True) for n, p in step.named_parameters()}
    buffers = {n: torch.empty_like(b, device="meta") for n, b in step.named_buffers()}
    param_ids = {id(p) for p in params.values()}
    config = step.model.config
    shape = (batch, config.channels, config.resolution, config.resolution)
    src, dst = torch.empty(shape, device="meta"), torch.empty(shape, device="meta")
    seen: dict[int, int] = {}
    alive: list[Tensor] = []  # holds every packed tensor so no id() is reused while counting

    def pack(t: Tensor) -> Tensor:
        base = t._base if t._base is not None else t
        alive.append(base)
        if id(base) not in param_ids:  # weights are counted once, with the parameters
            seen.setdefault(id(base), base.numel() * base.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        outputs = functional_call(step, {**params, **buffers}, (src, dst))
    return sum(seen.values()) + sum(o.numel() * o.element_size() for o in outputs)


def _footprint(model: nn.Module, discriminators: Sequence[nn.Module], bf16: bool,
               optimizer_states: int) -> tuple[int, int]:
    """(fixed bytes, bytes per sample of the batch) of one training step, safety included."""
    step = _Step(_unwrap(model), [_unwrap(d) for d in discriminators])
    count = sum(p.numel() for p in step.parameters())
    fixed = count * 4 * (2 + optimizer_states) + (count * 2 if bf16 else 0)
    one, two = _forward_bytes(step, 1), _forward_bytes(step, 2)
    scale = ACTIVATION_SAFETY * (0.5 if bf16 else 1.0)
    per_sample = int((two - one) * scale)
    fixed += int(max(one - (two - one), 0) * scale)
    return fixed, per_sample


def training_bytes(model: nn.Module, discriminators: list, batch_size: int, bf16: bool,
                   optimizer_states: int) -> int:
    """Estimated peak bytes of training `model` (with `discriminators`) at `batch_size`.

    `optimizer_states`: tensors the optimizer keeps per weight (Adam and AdaBelief 2, RMSprop 1).
    Device overhead (OVERHEAD) is not included; check_training_memory adds it.
    """
    fixed, per_sample = _footprint(model, discriminators, bf16, optimizer_states)
    return fixed + per_sample * batch_size


def available_bytes(device: torch.device) -> int | None:
    """Memory a new allocation on `device` can still get; None when this platform does not say."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        # memory our caching allocator holds but does not use is free to us too
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    if device.type == "cpu":
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
    return None


def _resident(modules: Sequence[nn.Module], device: torch.device) -> int:
    """Bytes of weights already on `device` (they are in the estimate but no longer in 'available')."""
    return sum(p.numel() * p.element_size() for m in modules for p in m.parameters() if p.device.type == device.type)


def check_training_memory(model: nn.Module, discriminators: list, batch_size: int, device: torch.device,
                          bf16: bool, optimizer_states: int) -> None:
    """EngineError("out_of_memory") when the step would not fit, naming the largest batch that does."""
    available = available_bytes(device)
    if available is None:
        return  # nothing to compare with: let the run try
    available += _resident([model, *discriminators], device)
    fixed, per_sample = _footprint(model, discriminators, bf16, optimizer_states)
    fixed += OVERHEAD.get(device.type, 0)
    need = fixed + per_sample * batch_size
    if need <= available:
        return
    largest = (available - fixed) // per_sample if per_sample > 0 else 0
    where = f"{available / GIB:.2f} GiB is free on {device}"
    if largest >= 1:
        raise EngineError(
            "out_of_memory",
            f"training at batch {batch_size} needs about {need / GIB:.2f} GiB but {where}; "
            f"the largest batch that fits is {largest}",
        )
    hints = "lower the resolution or the dims (ae_dims, e_dims, d_dims), turn off the GAN or true face"
    if not bf16:
        hints += ", use bf16 precision"
    raise EngineError(
        "out_of_memory",
        f"even batch 1 needs about {(fixed + per_sample) / GIB:.2f} GiB but {where}: {hints}, "
        f"or free memory on the device",
    )
