"""Shared piece: a trained mask (segmentation) model, ready to predict masks for aligned crops.

The masks stage trains it (engine.masks.learn) and draws learned masks with it; the merge stage
runs it on destination crops and predictions (the seg-dst and seg-pred mask terms). A mask model is
one safetensors checkpoint (engine.models.checkpoint) whose state says KIND.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch

from engine.errors import EngineError
from engine.models import resolve_device, use_bf16
from engine.models.checkpoint import checkpoint_path, has_checkpoint, read_checkpoint
from engine.models.segnet import SegNet, SegNetConfig

if TYPE_CHECKING:
    from engine.workspace import Workspace

KIND = "mask_segnet"  # the checkpoint's state says which network it holds


def mask_model_dir(ws: "Workspace", model: str) -> Path:
    """Where a workspace keeps the mask model `model`."""
    if not model or "/" in model or "\\" in model or model.startswith("."):
        raise EngineError("bad_request", f"mask model name {model!r} must be a plain name")
    return ws.root / "mask_models" / model


def resize_stack(arrays: np.ndarray, r: int) -> np.ndarray:
    if arrays.shape[1] == r:
        return np.ascontiguousarray(arrays)
    interp = cv2.INTER_AREA if arrays.shape[1] > r else cv2.INTER_LINEAR
    return np.stack([cv2.resize(a, (r, r), interpolation=interp) for a in arrays])


def to_input(images: np.ndarray, device: torch.device) -> torch.Tensor:
    # NHWC viewed as NCHW is channels_last already: no copy before the first conv
    x = torch.from_numpy(images.astype(np.float32) * np.float32(1 / 255)).permute(0, 3, 1, 2)
    return x.to(device, non_blocking=True)


def read_seg_checkpoint(model_dir: Path) -> tuple[SegNetConfig, dict[str, Any], dict[str, torch.Tensor]]:
    """Config, training state and weights of a mask model folder; anything else -> EngineError."""
    if not has_checkpoint(model_dir):
        raise EngineError("not_found", f"no trained mask model in {model_dir}")
    raw, state, weights = read_checkpoint(model_dir)
    if state.get("kind") != KIND:
        raise EngineError("model_mismatch", f"{checkpoint_path(model_dir)} holds no mask model")
    try:
        config = SegNetConfig.from_dict(raw)
    except ValueError as e:
        raise EngineError("model_mismatch", f"the mask model in {model_dir} cannot be built here: {e}") from None
    return config, state, weights


def load_model(model_dir: Path, device: torch.device) -> tuple[SegNet, SegNetConfig, dict[str, Any]]:
    config, state, weights = read_seg_checkpoint(model_dir)
    model = SegNet(config)
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        raise EngineError("model_mismatch", f"the weights in {model_dir} do not fit their config: {e}") from None
    return model.to(device, memory_format=torch.channels_last), config, state


class Segmenter:
    """A trained mask model, ready to predict masks for aligned crops of any size."""

    def __init__(self, model: SegNet, config: SegNetConfig, state: dict[str, Any], device: torch.device) -> None:
        self.model, self.config, self.state, self.device = model.eval(), config, state, device
        self.bf16 = use_bf16("auto", device)
        self.flip = True  # average with the prediction of the mirrored crop

    @classmethod
    def load(cls, model_dir: Path, device: str = "auto") -> "Segmenter":
        dev = resolve_device(device)
        model, config, state = load_model(Path(model_dir), dev)
        return cls(model, config, state, dev)

    @property
    def iterations(self) -> int:
        return int(self.state.get("iteration", 0))

    @torch.inference_mode()
    def predict(self, crops: np.ndarray, batch_size: int = 16) -> np.ndarray:
        """Masks float32 (B,S,S) in 0..1 for crops uint8 (B,S,S,3) BGR, at the crops' own size."""
        if crops.ndim != 4 or crops.shape[3] != 3 or crops.shape[1] != crops.shape[2] or crops.dtype != np.uint8:
            raise ValueError(f"crops must be (B,S,S,3) uint8, got {crops.shape} {crops.dtype}")
        s, r = crops.shape[1], self.config.resolution
        out = np.empty(crops.shape[:3], np.float32)
        for start in range(0, len(crops), batch_size):
            chunk = resize_stack(crops[start:start + batch_size], r)
            x = to_input(chunk, self.device)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                logits = self.model(x).float()
                if self.flip:  # the mirrored crop's opinion too: steadier edges for twice the compute
                    logits = (logits + self.model(x.flip(-1)).float().flip(-1)) / 2
            probs = torch.sigmoid(logits)[:, 0].cpu().numpy()
            for j, p in enumerate(probs):
                out[start + j] = p if s == r else cv2.resize(p, (s, s), interpolation=cv2.INTER_LINEAR)
        return out
