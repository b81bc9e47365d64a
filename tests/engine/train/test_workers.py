"""Tests for engine.train.workers: batches made ahead in spawned processes, and their clean end."""

import os
import signal
import time

import pytest
import torch

from engine.errors import EngineError
from engine.train.samples import Augmentation
from engine.train.workers import BatchStream, default_workers

from engine.train.bench import synthetic_faces

SRC, DST = synthetic_faces(4, 32, seed=0), synthetic_faces(3, 32, seed=1)
AUG = Augmentation()


def _alive(stream: BatchStream) -> list:
    return [p for p in stream._own.procs if p.is_alive()]


def test_in_process_batches_are_deterministic_for_a_seed():
    def first(seed):
        with BatchStream(SRC, DST, 16, 3, AUG, AUG, workers=0, seed=seed, grayscale=True) as s:
            return s.next()
    a, b = first(5), first(5)
    src, dst = a
    assert src.inputs.shape == (3, 1, 16, 16) and dst.priority.shape == (3, 1, 16, 16)
    assert all(torch.equal(x, y) for x, y in zip(a[0] + a[1], b[0] + b[1]))
    assert default_workers() >= 1


def test_a_worker_makes_both_sides_batches_and_takes_new_augmentation():
    with BatchStream(SRC, DST, 16, 2, AUG, AUG, workers=1, prefetch=2, seed=0, colour_transfer="rct") as s:
        src, dst = s.next()
        assert src.inputs.shape == src.targets.shape == (2, 3, 16, 16) and src.masks.shape == (2, 1, 16, 16)
        assert dst.priority.shape == (2, 1, 16, 16) and src.inputs.dtype == torch.float32
        still = Augmentation(random_warp=False)
        s.set_augmentation(still, still)
        for _ in range(3):  # every batch after the change is made without the warp
            src, dst = s.next()
            assert torch.equal(src.inputs, src.targets) and torch.equal(dst.inputs, dst.targets)
        assert s.batches == 4 and s.wait_seconds > 0
        procs = list(s._own.procs)
    assert not any(p.is_alive() for p in procs)


def test_an_error_in_the_consumer_still_stops_the_workers():
    with pytest.raises(RuntimeError):
        with BatchStream(SRC, DST, 16, 2, AUG, AUG, workers=2) as s:
            procs = list(s._own.procs)
            s.next()
            raise RuntimeError("the trainer failed")
    assert not any(p.is_alive() for p in procs)
    with pytest.raises(EngineError):
        s.next()


def test_a_killed_worker_is_an_error_not_a_hang():
    with BatchStream(SRC, DST, 16, 2, AUG, AUG, workers=1, prefetch=1) as s:
        s.next()
        os.kill(s._own.procs[0].pid, signal.SIGKILL)
        start = time.monotonic()
        with pytest.raises(EngineError) as e:
            for _ in range(10):  # the batches already made may still come out first
                s.next()
        assert e.value.code == "batch_worker_failed" and time.monotonic() - start < 10
        assert not _alive(s)


def test_an_error_in_a_worker_arrives_with_its_traceback():
    broken = Augmentation(warp_cells=-1)  # no warp grid: the worker's first sample fails
    with BatchStream(SRC, DST, 16, 2, broken, AUG, workers=1) as s:
        with pytest.raises(EngineError) as e:
            s.next()
        assert e.value.code == "batch_worker_failed" and "Traceback" in e.value.message
        assert not _alive(s)
    with pytest.raises(ValueError):
        BatchStream(SRC, DST, 16, 2, AUG, AUG, workers=1, colour_transfer="sepia")
