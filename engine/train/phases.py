"""Train stage: the phases of a run (warp -> refine -> gan) and the plateau detector that moves on.

- warp: random warp on, learning-rate dropout off, no GAN. The model learns the faces' structure
  from distorted inputs; this is most of a run.
- refine: random warp off (inputs as clean as the targets), learning-rate dropout as set (on by
  default): details sharpen and the weights settle.
- gan: as refine, plus the patch discriminator at gan_power (0.1 when none is set): a short
  sharpening of texture at the end. Started earlier it invents detail the model has not learned.
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Callable

from engine.train.settings import PHASES, TrainSettings

DEFAULT_GAN_POWER = 0.1


def next_phase(phase: str) -> str | None:
    """The phase after `phase`, or None after the last."""
    i = PHASES.index(phase)
    return PHASES[i + 1] if i + 1 < len(PHASES) else None


def effective(settings: TrainSettings) -> TrainSettings:
    """The settings a step runs with: the phase's switches applied over the user's."""
    if settings.phase == "warp":
        return settings.replace(lr_dropout=False, gan_power=0.0)
    if settings.phase == "refine":
        return settings.replace(random_warp=False, gan_power=0.0)
    return settings.replace(random_warp=False, gan_power=settings.gan_power or DEFAULT_GAN_POWER)


class PlateauDetector:
    """Says when the loss stopped improving: less than `delta` better over the last `minutes`.

    Time-based rather than iteration-based so the same setting means the same on a laptop and on a
    GPU. The loss is smoothed (an exponential average over ~100 steps) before it is compared, and
    nothing is decided before a whole window has passed since the start (or the last reset).
    """

    def __init__(self, minutes: float, delta: float, clock: Callable[[], float] = time.monotonic,
                 smoothing: float = 0.01) -> None:
        self.window_s = minutes * 60.0
        self.delta = delta
        self.clock = clock
        self.smoothing = smoothing
        self.reset()

    def reset(self) -> None:
        self.started = self.clock()
        self.smoothed = math.nan
        self.points: deque[tuple[float, float]] = deque()  # (time, smoothed loss), oldest first

    def update(self, loss: float) -> bool:
        """Feed one step's loss; True when the window's improvement fell under delta."""
        now = self.clock()
        if not math.isfinite(loss):
            return False
        self.smoothed = loss if math.isnan(self.smoothed) else self.smoothed + self.smoothing * (loss - self.smoothed)
        self.points.append((now, self.smoothed))
        # the oldest point kept is the newest one at least a window old: the "before" of the comparison
        while len(self.points) > 1 and self.points[1][0] <= now - self.window_s:
            self.points.popleft()
        if now - self.started < self.window_s:
            return False
        return self.points[0][1] - self.smoothed < self.delta
