"""Shared piece: inference with a trained pair model (destination faces redrawn by the source decoder)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from engine.models import native_bf16, resolve_device
from engine.models.autoencoder import Autoencoder
from engine.models.checkpoint import load_checkpoint

BATCH = 32  # faces per forward pass: large enough to keep the convolutions busy, small in memory


def restore_colour(gray: np.ndarray, destination: np.ndarray) -> np.ndarray:
    """A grayscale prediction (S,S) uint8 given the destination crop's colours (S,S,3) uint8 BGR.

    The prediction becomes the luma (Y of YCrCb, the same Rec.601 weights the gray training faces
    were made with) and the destination keeps its chroma: skin tone and lighting colour come from
    the shot, the face's shape and shading from the model.
    """
    ycrcb = cv2.cvtColor(destination, cv2.COLOR_BGR2YCrCb)
    ycrcb[..., 0] = gray
    return cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2BGR)


class FaceSwapper:
    """A loaded model that turns aligned destination crops into source-identity crops and masks."""

    def __init__(self, model: Autoencoder, device: str | torch.device = "cpu", bf16: bool | None = None,
                 face_type: str | None = None) -> None:
        self.device = torch.device(device)
        self.bf16 = native_bf16(self.device) if bf16 is None else bf16
        # channels_last: the layout oneDNN's convolutions are fastest in, in either precision
        self.model = model.to(self.device, memory_format=torch.channels_last).eval()
        self.resolution = model.config.resolution
        self.gray = model.config.channels == 1
        self.face_type = face_type  # the crop it was trained on; None = whatever the faceset holds

    @classmethod
    def load(cls, directory: Path, device: str = "auto") -> "FaceSwapper":
        """The model saved in `directory`, on `device` ("auto": the GPU when there is one)."""
        where = resolve_device(device)
        model, _, state = load_checkpoint(Path(directory), device=str(where))
        return cls(model, where, face_type=(state.get("settings") or {}).get("face_type") or None)

    def swap(self, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N,S,S,3) uint8 BGR destination crops -> (swapped (N,S,S,3) uint8 BGR, masks (N,S,S) float32 0..1)."""
        if faces.ndim != 4 or faces.shape[3] != 3 or faces.shape[1] != faces.shape[2] or faces.dtype != np.uint8:
            raise ValueError(f"faces must be (N,S,S,3) uint8, got {faces.shape} {faces.dtype}")
        n, s = faces.shape[0], faces.shape[1]
        swapped = np.empty_like(faces)
        masks = np.empty((n, s, s), np.float32)
        r = self.resolution
        down = cv2.INTER_AREA if s >= r else cv2.INTER_CUBIC
        up = cv2.INTER_CUBIC if s > r else cv2.INTER_AREA
        for start in range(0, n, BATCH):
            chunk = faces[start:start + BATCH]
            small = np.stack([cv2.resize(f, (r, r), interpolation=down) for f in chunk])
            if self.gray:
                small = np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in small])[..., None]
            x = torch.from_numpy(small.astype(np.float32) * np.float32(1 / 255)).permute(0, 3, 1, 2)
            with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                rgb, mask = self.model(x.to(self.device), "src")
            rgb_np = (rgb.float().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
            mask_np = mask.float()[:, 0].cpu().numpy()
            for j in range(len(chunk)):
                face = cv2.resize(rgb_np[j], (s, s), interpolation=up)
                swapped[start + j] = restore_colour(face, chunk[j]) if self.gray else face
                masks[start + j] = cv2.resize(mask_np[j], (s, s), interpolation=up)
        np.clip(masks, 0.0, 1.0, out=masks)  # cubic upscaling overshoots a little at the mask edge
        return swapped, masks
