"""Faces stage, shared piece: MediaPipe's face models run directly on a TFLite interpreter.

The mediapipe wheel ships the BlazeFace and FaceMesh networks as .tflite files. Running them
through mediapipe's graph costs ~10 ms a frame in scheduling and image copies; invoking the same
networks on a bare interpreter costs ~2 ms, and lets us choose the crop ourselves (tracking, tiles,
rotations). The decoding of their outputs (anchors, landmarks) is our own code.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import EngineError

MODELS = {
    "detect_short": "face_detection/face_detection_short_range.tflite",
    "detect_full": "face_detection/face_detection_full_range_sparse.tflite",
    "landmarks": "face_landmark/face_landmark.tflite",
}


@lru_cache(maxsize=None)
def model_path(name: str) -> Path:
    """Where the mediapipe wheel keeps a model file."""
    try:
        import mediapipe
    except ImportError as exc:
        raise EngineError("missing_dependency", "mediapipe is not installed; run `make` to set up the engine") from exc
    path = Path(mediapipe.__file__).parent / "modules" / MODELS[name]
    if not path.is_file():
        raise EngineError("missing_dependency", f"mediapipe's model {MODELS[name]} is missing from {path.parent}")
    return path


def _interpreter_class():
    # tflite-runtime is small and built for numpy 1.x (as mediapipe 0.10.21 is); ai-edge-litert is
    # its successor with macOS wheels. Either runs the same files.
    try:
        from tflite_runtime.interpreter import Interpreter
    except ImportError:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise EngineError("missing_dependency",
                              "no TFLite interpreter: install tflite-runtime (or ai-edge-litert); `make` does") from None
    return Interpreter


class Network:
    """One .tflite network with float inputs in [0, 1] or [-1, 1] as the model expects.

    Not thread-safe: each worker builds its own. The interpreter releases the GIL while it runs,
    so networks in several threads do run in parallel.
    """

    def __init__(self, name: str, threads: int = 1) -> None:
        Interpreter = _interpreter_class()
        self.name = name
        self._it = Interpreter(str(model_path(name)), num_threads=threads)
        self._it.allocate_tensors()
        inp = self._it.get_input_details()[0]
        self._input = inp["index"]
        self.input_size = int(inp["shape"][1])  # square inputs: 128, 192
        self._outputs = [d["index"] for d in self._it.get_output_details()]

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """Outputs for one (1, S, S, 3) float32 input, in the model's declared output order."""
        self._it.set_tensor(self._input, np.ascontiguousarray(batch, np.float32))
        self._it.invoke()
        return [self._it.get_tensor(i) for i in self._outputs]
