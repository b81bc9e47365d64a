"""Train stage: a run's loss history (source and destination per iteration), bounded in size.

The history travels in the checkpoint's JSON metadata and is drawn as the loss graph, so it must
stay small however long a run lasts: past MAX_POINTS, neighbouring points are averaged in pairs
and every new point then stands for twice as many steps.
"""

from __future__ import annotations

from typing import Any

MAX_POINTS = 4000


class LossHistory:
    """(iteration, src loss, dst loss) points, each the mean over `stride` steps, plus phase marks."""

    def __init__(self, state: dict[str, Any] | None = None) -> None:
        state = state or {}
        self.iterations: list[int] = [int(x) for x in state.get("iterations", [])]
        self.src: list[float] = [float(x) for x in state.get("src", [])]
        self.dst: list[float] = [float(x) for x in state.get("dst", [])]
        self.stride = int(state.get("stride", 1))
        self.phase_marks: list[tuple[int, str]] = [(int(i), str(p)) for i, p in state.get("phase_marks", [])]
        # steps not yet averaged into a point travel in the checkpoint too: a resume loses none
        self._pending: list[tuple[float, float]] = [(float(a), float(b)) for a, b in state.get("pending", [])]

    def add(self, iteration: int, src_loss: float, dst_loss: float) -> None:
        self._pending.append((src_loss, dst_loss))
        if len(self._pending) < self.stride:
            return
        self.iterations.append(iteration)
        self.src.append(sum(s for s, _ in self._pending) / len(self._pending))
        self.dst.append(sum(d for _, d in self._pending) / len(self._pending))
        self._pending = []
        if len(self.iterations) > MAX_POINTS:
            self._halve()

    def _halve(self) -> None:
        n = len(self.iterations) // 2 * 2
        self.iterations = self.iterations[1:n:2] + self.iterations[n:]
        self.src = [(a + b) / 2 for a, b in zip(self.src[0:n:2], self.src[1:n:2])] + self.src[n:]
        self.dst = [(a + b) / 2 for a, b in zip(self.dst[0:n:2], self.dst[1:n:2])] + self.dst[n:]
        self.stride *= 2

    def mark(self, iteration: int, phase: str) -> None:
        self.phase_marks.append((iteration, phase))

    def recent_loss(self, points: int = 20) -> float:
        """Mean of (src + dst) / 2 over the last points (nan when empty)."""
        src, dst = self.src[-points:], self.dst[-points:]
        if not src:
            return float("nan")
        return sum(s + d for s, d in zip(src, dst)) / (2 * len(src))

    def to_dict(self) -> dict[str, Any]:
        return {"iterations": self.iterations, "src": self.src, "dst": self.dst, "stride": self.stride,
                "phase_marks": [list(m) for m in self.phase_marks], "pending": [list(p) for p in self._pending]}
