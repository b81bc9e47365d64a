"""Shared piece: export a trained model as a .dfm (ONNX), the format DeepFaceLive and FaceFusion load.

The graph takes aligned faces as DeepFaceLive feeds them, NHWC float 0..1 BGR under the input name
`in_face:0`, and returns, all NHWC: `out_face_mask` (the destination decoder's mask of the input
face), `out_celeb_face` (the face drawn as the source: the swap) and `out_celeb_face_mask`.
Grayscale models still take and give 3 channels there: the graph converts the input to gray and
repeats the gray output, since those programs always feed and expect colour.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from engine.files import atomic_write
from engine.models.checkpoint import load_checkpoint

INPUT = "in_face:0"
OUTPUTS = ("out_face_mask", "out_celeb_face", "out_celeb_face_mask")
OPSET = 13  # old enough for the onnxruntime builds DeepFaceLive ships, new enough for DepthToSpace
GRAY_BGR = (0.114, 0.587, 0.299)  # Rec.601 luma, the weights of OpenCV's BGR2GRAY


class DfmGraph(nn.Module):
    """The exported computation: one encoder pass, the destination's mask and the source's drawing."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.gray = model.config.channels == 1
        self.register_buffer("weights", torch.tensor(GRAY_BGR).view(1, 3, 1, 1), persistent=False)

    def forward(self, in_face: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = in_face.permute(0, 3, 1, 2)
        if self.gray:
            x = (x * self.weights).sum(1, keepdim=True)
        model = self.model
        features = model.encoder(x)
        if model.config.base == "df":
            code = model.inter(features)  # DF: one code, two decoders
            _, dst_mask = model.decoder_dst(code)
            face, mask = model.decoder_src(code)
        else:
            ab = model.inter_ab(features)  # LIAE: shared by both codes, computed once
            _, dst_mask = model.decoder(torch.cat([model.inter_b(features), ab], 1))
            face, mask = model.decoder(torch.cat([ab, ab], 1))
        if self.gray:
            face = face.repeat(1, 3, 1, 1)
        return tuple(t.permute(0, 2, 3, 1) for t in (dst_mask, face, mask))


def export_dfm(model_dir: Path, out_path: Path) -> Path:
    """Write the model in `model_dir` as a .dfm at `out_path` (atomically); returns the path."""
    model, config, _ = load_checkpoint(Path(model_dir), device="cpu")
    graph = DfmGraph(model.float().eval())
    r = config.resolution
    example = torch.rand(1, r, r, 3)
    buffer = io.BytesIO()
    # the legacy (TorchScript) exporter on purpose: it writes a plain opset-13 graph that the older
    # onnxruntime builds in DeepFaceLive accept; its deprecation notice is no news to the user
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            graph, (example,), buffer, input_names=[INPUT], output_names=list(OUTPUTS),
            opset_version=OPSET, dynamo=False,
            dynamic_axes={name: {0: "N"} for name in (INPUT, *OUTPUTS)},  # any batch size
        )
    out_path = Path(out_path)
    atomic_write(out_path, buffer.getvalue())
    return out_path
