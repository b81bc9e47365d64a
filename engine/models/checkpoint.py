"""Shared piece: self-describing model checkpoints (safetensors weights + JSON config and state).

One file per model directory, `model.safetensors`, holds the weights, the optimizer's tensors and,
in the safetensors metadata, the ModelConfig and the training state. One file means one atomic
replace: a kill at any moment leaves either the old checkpoint or the new one, never a mix of a new
model with an old optimizer. (A GAN run's discriminators live in a second file that names the
iteration it belongs to, and is ignored when that is not the model's; see train/trainer.py.)
Nothing here pickles or unpickles.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch
from torch import nn

from engine.errors import EngineError
from engine.files import atomic_write
from engine.models.autoencoder import Autoencoder, ModelConfig, build_model

FILENAME = "model.safetensors"
FORMAT = "swapline.autoencoder"
FORMAT_VERSION = 1
_MODEL = "model."
_OPTIM = "optimizer."


def checkpoint_path(directory: Path) -> Path:
    return Path(directory) / FILENAME


def has_checkpoint(directory: Path) -> bool:
    return checkpoint_path(directory).is_file()


def save_checkpoint(
    directory: Path,
    model: nn.Module,
    config: ModelConfig,
    state: dict[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
) -> Path:
    """Write model weights, optimizer tensors, config and JSON-able `state`; returns the file's path."""
    directory = Path(directory)
    # .contiguous(): channels_last weights are stored in the standard layout; values are unchanged
    tensors = {_MODEL + k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    optim_scalars: dict[str, Any] = {}
    if optimizer is not None:
        for index, per_param in optimizer.state_dict()["state"].items():
            for key, value in per_param.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"{_OPTIM}{index}.{key}"] = value.detach().cpu().contiguous()
                else:
                    optim_scalars[f"{index}.{key}"] = value
    try:
        metadata = {
            "format": FORMAT,
            "format_version": str(FORMAT_VERSION),
            "config": json.dumps(config.to_dict()),
            "state": json.dumps(state),
            "optimizer": json.dumps({"present": optimizer is not None, "scalars": optim_scalars}),
        }
    except TypeError as e:
        raise ValueError(f"checkpoint state must be JSON-serialisable: {e}") from None
    data = safetensors.torch.save(tensors, metadata=metadata)

    final = checkpoint_path(directory)
    atomic_write(final, data)
    return final


def _read(directory: Path, prefixes: tuple[str, ...]) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """Metadata and the tensors whose names start with one of `prefixes`; damaged files -> EngineError."""
    path = checkpoint_path(directory)
    if not path.is_file():
        raise EngineError("not_found", f"no trained model in {directory}")
    try:
        with safetensors.safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys() if k.startswith(prefixes)}
    except Exception as e:  # the parser's own error types differ between safetensors versions
        raise EngineError("corrupt_checkpoint", f"the model file {path} is damaged or unreadable ({e})") from None
    if metadata.get("format") != FORMAT:
        raise EngineError("corrupt_checkpoint", f"{path} is not a Swapline model file")
    if metadata.get("format_version") != str(FORMAT_VERSION):
        raise EngineError(
            "model_mismatch",
            f"{path} has format version {metadata.get('format_version')}; this engine reads {FORMAT_VERSION}",
        )
    return metadata, tensors


def read_checkpoint(directory: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, torch.Tensor]]:
    """Any network's checkpoint as (config as saved, training state, weights): for a network other
    than the autoencoder (the mask model), which builds itself from the config."""
    metadata, tensors = _read(directory, (_MODEL,))
    try:
        raw_config = json.loads(metadata["config"])
        state = json.loads(metadata["state"])
    except (KeyError, ValueError) as e:
        raise EngineError("corrupt_checkpoint", f"the model file in {directory} has damaged metadata ({e})") from None
    if not isinstance(raw_config, dict) or not isinstance(state, dict):
        raise EngineError("corrupt_checkpoint", f"the model file in {directory} has damaged metadata")
    return raw_config, state, {k[len(_MODEL):]: v for k, v in tensors.items()}


def load_checkpoint(
    directory: Path, expected: ModelConfig | None = None, device: str = "cpu"
) -> tuple[Autoencoder, ModelConfig, dict[str, Any]]:
    """Rebuild the model from the checkpoint alone; `expected`, when given, must equal its config."""
    raw_config, state, weights = read_checkpoint(directory)
    try:
        config = ModelConfig.from_dict(raw_config)
    except (TypeError, ValueError) as e:
        raise EngineError("model_mismatch", f"the model in {directory} has a config this engine cannot build: {e}") from None
    if expected is not None and expected != config:
        diff = ", ".join(
            f"{k}: saved {v!r}, asked {expected.to_dict()[k]!r}"
            for k, v in config.to_dict().items() if expected.to_dict()[k] != v
        )
        raise EngineError("model_mismatch", f"the model in {directory} was built with other settings ({diff})")
    model = build_model(config)
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        raise EngineError("model_mismatch", f"the weights in {directory} do not fit their config: {e}") from None
    return model.to(device), config, state


def load_optimizer_state(directory: Path, optimizer: torch.optim.Optimizer) -> bool:
    """Restore saved per-parameter optimizer state (Adam moments) into `optimizer`; False if none was saved.

    The optimizer must be built over the parameters of the model load_checkpoint returned, in
    model.parameters() order. Hyperparameters (learning rate, betas) stay those of `optimizer`, so a
    resumed run can change its learning rate.
    """
    metadata, tensors = _read(directory, (_OPTIM,))
    try:
        info = json.loads(metadata.get("optimizer", "{}"))
    except ValueError as e:
        raise EngineError("corrupt_checkpoint", f"the model file in {directory} has damaged metadata ({e})") from None
    if not info.get("present"):
        return False
    per_param: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        index, key = name[len(_OPTIM):].split(".", 1)
        per_param.setdefault(int(index), {})[key] = value
    for name, value in info.get("scalars", {}).items():
        index, key = name.split(".", 1)
        per_param.setdefault(int(index), {})[key] = value
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for index, values in per_param.items():
        shapes_fit = index < len(params) and all(
            v.shape == params[index].shape for v in values.values() if isinstance(v, torch.Tensor) and v.dim() > 0
        )
        if not shapes_fit:
            raise EngineError("model_mismatch", f"the optimizer state in {directory} does not fit this model")
    current = optimizer.state_dict()
    try:
        optimizer.load_state_dict({"state": per_param, "param_groups": current["param_groups"]})
    except (ValueError, RuntimeError, KeyError) as e:
        raise EngineError("model_mismatch", f"the optimizer state in {directory} does not fit this model: {e}") from None
    return True
