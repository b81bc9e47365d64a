"""Tests for engine.train.phases: what each phase switches and the time-based plateau detector."""

from engine.train.phases import DEFAULT_GAN_POWER, PlateauDetector, effective, next_phase
from engine.train.settings import TrainSettings


def test_each_phase_switches_warp_dropout_and_gan():
    s = TrainSettings(gan_power=0.0)
    warp = effective(s)
    assert warp.random_warp and not warp.lr_dropout and warp.gan_power == 0
    refine = effective(s.replace(phase="refine"))
    assert not refine.random_warp and refine.lr_dropout and refine.gan_power == 0
    gan = effective(s.replace(phase="gan"))
    assert not gan.random_warp and gan.lr_dropout and gan.gan_power == DEFAULT_GAN_POWER
    assert effective(s.replace(phase="gan", gan_power=0.3)).gan_power == 0.3
    assert not effective(s.replace(phase="refine", lr_dropout=False)).lr_dropout
    assert [next_phase(p) for p in ("warp", "refine", "gan")] == ["refine", "gan", None]


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def run(detector: PlateauDetector, clock: FakeClock, losses, step_s: float = 1.0) -> list[bool]:
    out = []
    for loss in losses:
        clock.t += step_s
        out.append(detector.update(loss))
    return out


def test_plateau_waits_a_whole_window_then_fires_when_the_loss_stalls():
    clock = FakeClock()
    d = PlateauDetector(minutes=1.0, delta=0.01, clock=clock, smoothing=1.0)  # no smoothing: exact figures
    # improving by 0.001 per second = 0.06 per minute: more than delta, never a plateau
    assert not any(run(d, clock, [1.0 - 0.001 * i for i in range(180)]))
    # flat from here: a plateau once the window no longer reaches back into the improvement
    flat = run(d, clock, [0.82] * 120)
    first = flat.index(True)
    assert 50 <= first <= 61 and all(flat[first:])


def test_plateau_is_not_decided_before_a_window_has_passed_and_reset_restarts():
    clock = FakeClock()
    d = PlateauDetector(minutes=2.0, delta=0.01, clock=clock)
    assert not any(run(d, clock, [0.5] * 100))  # flat, but only 100 s of the 120 s window seen
    assert run(d, clock, [0.5] * 30)[-1]
    d.reset()
    assert not any(run(d, clock, [0.5] * 100))
    assert not d.update(float("nan"))


def test_plateau_smooths_noise():
    clock = FakeClock()
    d = PlateauDetector(minutes=1.0, delta=0.01, clock=clock)
    # noisy but steadily falling by 0.1 per minute: the smoothed loss keeps improving
    noisy = [1.0 - 0.1 * i / 60 + (0.05 if i % 2 else -0.05) for i in range(300)]
    assert not any(run(d, clock, noisy)[120:])
