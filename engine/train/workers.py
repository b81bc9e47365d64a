"""Train stage: batches of both identities made ahead in worker processes (BatchStream).

Augmenting a batch (warps, masks, colour) is numpy and cv2 work that would otherwise stall the
training step. Workers make batches ahead of it in parallel:

- the prepared facesets (resized, masks drawn) sit in shared memory, written once by the parent;
  each worker maps them, so a large faceset is neither pickled nor copied per worker;
- finished batches go into a ring of shared-memory slots, and only slot numbers travel through
  queues. Measured here, a pair of uint8 batches through a multiprocessing Queue (pickle, pipe,
  unpickle) takes 7.6 ms at 128 px batch 8 (2 MB) and 250 ms at 256 px batch 64 (67 MB); through
  a slot it is one memcpy;
- workers are spawned, never forked: the engine server has threads, and a forked child can inherit
  a lock held by one of them. They import neither torch nor the trainer, so they start in well
  under a second.

A batch made before set_augmentation is dropped, so a phase change (warp off) takes effect at the
next batch. workers=0 samples in the caller's process, deterministically for a seed.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import time
import traceback
import weakref
from dataclasses import dataclass
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import numpy as np

from engine.errors import EngineError
from engine.train.samples import (COLOUR_TRANSFERS, Augmentation, Batch, BatchSampler, FaceSamples, Prepared, prepare,
                                  to_batch)

SIDES = ("src", "dst")
POLL_S = 0.25  # how often a blocked next() checks that the workers still live
_KEYS = ("inputs", "targets", "masks", "priority")


def default_workers() -> int:
    """Leave two cores to the training step and the engine; at least one worker. Under torchrun the
    processes on one machine share its cores (LOCAL_WORLD_SIZE of them), so each takes its part."""
    per_machine = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    return max(1, ((os.cpu_count() or 1) - 2) // per_machine)


@dataclass(frozen=True)
class _ArraySpec:
    name: str  # the shared-memory block
    shape: tuple[int, ...]
    dtype: str


def _share(array: np.ndarray, blocks: list[SharedMemory]) -> _ArraySpec:
    block = SharedMemory(create=True, size=max(1, array.nbytes))
    blocks.append(block)
    np.ndarray(array.shape, array.dtype, buffer=block.buf)[...] = array
    return _ArraySpec(block.name, array.shape, array.dtype.str)


def _attach(spec: _ArraySpec, blocks: list[SharedMemory]) -> np.ndarray:
    # no unregister from the resource tracker: a spawned child shares its parent's, where the block is
    # registered once (a set), and the parent's unlink is what removes it
    block = SharedMemory(name=spec.name)
    blocks.append(block)
    return np.ndarray(spec.shape, np.dtype(spec.dtype), buffer=block.buf)


@dataclass(frozen=True)
class _WorkerSpec:
    faces: dict[str, dict[str, _ArraySpec]]  # side -> images, masks, priority
    yaws: dict[str, np.ndarray | None]
    slots: dict[str, _ArraySpec]  # key -> (slots, 2 sides, B, ...)
    resolution: int
    batch_size: int
    augmentation: tuple[Augmentation, Augmentation]
    seed: int | None
    grayscale: bool
    colour_transfer: str


def _samplers(faces: dict[str, Prepared], spec: _WorkerSpec, seeds: tuple[int | None, int | None]
              ) -> tuple[BatchSampler, BatchSampler]:
    common = {"grayscale": spec.grayscale}
    src = BatchSampler(faces["src"], spec.resolution, spec.augmentation[0], seeds[0], colour_transfer=spec.colour_transfer,
                       colour_reference=faces["dst"].images, colour_reference_masks=faces["dst"].masks, **common)
    dst = BatchSampler(faces["dst"], spec.resolution, spec.augmentation[1], seeds[1], **common)
    return src, dst


def _work(spec: _WorkerSpec, index: int, control: Any, free: Any, ready: Any) -> None:
    """A worker process: fill free slots with (src, dst) batches until told to stop or orphaned."""
    try:
        import cv2

        cv2.setNumThreads(1)  # the parallelism is the workers themselves; more threads only contend
        blocks: list[SharedMemory] = []
        faces = {side: Prepared(*(_attach(spec.faces[side][k], blocks) for k in ("images", "masks", "priority")),
                                spec.yaws[side]) for side in SIDES}
        slots = {k: _attach(s, blocks) for k, s in spec.slots.items()}
        seeds = (None, None) if spec.seed is None else (spec.seed * 1009 + 2 * index + 2, spec.seed * 1009 + 2 * index + 3)
        samplers = _samplers(faces, spec, seeds)
        parent = mp.parent_process()
        generation = 0
        while True:
            try:
                while True:  # settings sent since the last batch
                    message = control.get_nowait()
                    if message is None:
                        return
                    generation, augs = message
                    for sampler, aug in zip(samplers, augs):
                        sampler.aug = aug
            except queue.Empty:
                pass
            try:
                slot = free.get(timeout=POLL_S)
            except queue.Empty:
                if parent is not None and not parent.is_alive():
                    return  # the trainer is gone (killed): nobody will ever read or stop us
                continue
            if slot is None:
                return
            for side, sampler in enumerate(samplers):
                for key, value in sampler.sample_arrays(spec.batch_size).items():
                    slots[key][slot, side] = value
            ready.put((slot, generation))
    except BaseException:  # noqa: BLE001 - everything goes to the parent, which raises it as a domain error
        ready.put(("error", index, traceback.format_exc(limit=6)))


class _Processes:
    """What the stream owns outside Python's memory: processes, queues, shared memory. Released by
    close() or, if the stream is dropped unclosed, by its finalizer."""

    def __init__(self) -> None:
        self.procs: list[Any] = []
        self.controls: list[Any] = []
        self.queues: list[Any] = []
        self.blocks: list[SharedMemory] = []

    def release(self) -> None:
        for q in self.controls:
            _put_quietly(q, None)
        if self.queues:
            for _ in self.procs:
                _put_quietly(self.queues[0], None)  # wakes a worker waiting for a free slot
        deadline = time.monotonic() + 2.0
        for p in self.procs:
            p.join(max(0.0, deadline - time.monotonic()))
        for p in self.procs:
            if p.is_alive():
                p.terminate()  # stuck in a long sample: it holds nothing we need
                p.join(1.0)
            if p.is_alive():
                p.kill()
                p.join()
        for q in self.queues + self.controls:
            q.cancel_join_thread()  # data left unread must not block our exit
            q.close()
        for block in self.blocks:
            block.close()
            try:
                block.unlink()
            except FileNotFoundError:
                pass
        self.procs, self.controls, self.queues, self.blocks = [], [], [], []


def _put_quietly(q: Any, item: Any) -> None:
    try:
        q.put_nowait(item)
    except (ValueError, OSError, queue.Full):
        pass


class BatchStream:
    """(src, dst) Batch pairs, made ahead by `workers` processes (0: in this process).

    Use as a context manager, or call close(): it stops the workers and frees the shared memory.
    """

    def __init__(self, source: FaceSamples, destination: FaceSamples, resolution: int, batch_size: int,
                 src_aug: Augmentation, dst_aug: Augmentation, workers: int, prefetch: int = 4,
                 seed: int | None = None, grayscale: bool = False, colour_transfer: str = "none") -> None:
        if workers < 0 or prefetch < 1 or batch_size < 1:
            raise ValueError("workers must be >= 0, prefetch and batch_size >= 1")
        if colour_transfer not in COLOUR_TRANSFERS:  # here, not as a worker's traceback later
            raise ValueError(f"unknown colour transfer {colour_transfer!r}; expected one of {', '.join(COLOUR_TRANSFERS)}")
        faces = {"src": prepare(source, resolution), "dst": prepare(destination, resolution)}
        self.workers = workers
        self.batch_size = batch_size
        self.wait_seconds = 0.0  # total time next() kept its caller waiting
        self.batches = 0
        self._generation = 0
        self._closed = False
        self._own = _Processes()
        self._finalizer = weakref.finalize(self, self._own.release)
        spec = _WorkerSpec({}, {s: faces[s].yaws for s in SIDES}, {}, resolution, batch_size, (src_aug, dst_aug),
                           seed, grayscale, colour_transfer)
        if workers == 0:
            seeds = (None, None) if seed is None else (seed, seed + 1)
            self._samplers = _samplers(faces, spec, seeds)
            return
        blocks = self._own.blocks
        spec.faces.update({s: {k: _share(getattr(faces[s], k), blocks) for k in ("images", "masks", "priority")}
                           for s in SIDES})
        # one slot per batch waiting to be read and one per worker filling: nobody waits for a slot
        n_slots = prefetch + workers
        c = 1 if grayscale else 3
        shapes = {"inputs": (batch_size, resolution, resolution, c), "targets": (batch_size, resolution, resolution, c),
                  "masks": (batch_size, resolution, resolution), "priority": (batch_size, resolution, resolution)}
        self._slots = {k: np.zeros((n_slots, 2, *shape), np.uint8) for k, shape in shapes.items()}
        spec.slots.update({k: _share(a, blocks) for k, a in self._slots.items()})
        self._slots = {k: np.ndarray(a.shape, a.dtype, buffer=b.buf)
                       for (k, a), b in zip(self._slots.items(), blocks[-len(_KEYS):])}
        ctx = mp.get_context("spawn")
        self._free, self._ready = ctx.Queue(), ctx.Queue()
        self._own.queues += [self._free, self._ready]
        for slot in range(n_slots):
            self._free.put(slot)
        for index in range(workers):
            control = ctx.Queue()
            self._own.controls.append(control)
            p = ctx.Process(target=_work, args=(spec, index, control, self._free, self._ready),
                            name=f"swapline-batches-{index}", daemon=True)
            p.start()
            self._own.procs.append(p)

    def __enter__(self) -> "BatchStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def next(self) -> tuple[Batch, Batch]:
        """The next (src, dst) pair; blocks until one is ready (the time counts in wait_seconds)."""
        if self._closed:
            raise EngineError("bad_request", "the batch stream is closed")
        start = time.perf_counter()
        try:
            if self.workers == 0:
                return self._samplers[0].sample(self.batch_size), self._samplers[1].sample(self.batch_size)
            return self._next_from_workers()
        finally:
            self.wait_seconds += time.perf_counter() - start
            self.batches += 1

    def _next_from_workers(self) -> tuple[Batch, Batch]:
        while True:
            try:
                message = self._ready.get(timeout=POLL_S)
            except queue.Empty:
                self._check_workers()  # nothing is coming: is anybody still making batches?
                continue
            if message[0] == "error":
                self.close()
                raise EngineError("batch_worker_failed",
                                  f"making training batches failed in worker {message[1]}:\n{message[2]}")
            slot, generation = message
            if generation < self._generation:
                self._free.put(slot)  # made with the augmentation before the last change
                continue
            pair = tuple(to_batch({k: a[slot, side] for k, a in self._slots.items()}) for side in range(2))
            self._free.put(slot)  # to_batch copied it out
            return pair  # type: ignore[return-value]

    def _check_workers(self) -> None:
        dead = [(i, p.exitcode) for i, p in enumerate(self._own.procs) if not p.is_alive()]
        if dead:
            self.close()
            index, code = dead[0]
            raise EngineError("batch_worker_failed", f"batch worker {index} stopped unexpectedly (exit code {code}); "
                                                     "the machine may be out of memory")

    def set_augmentation(self, src_aug: Augmentation, dst_aug: Augmentation) -> None:
        """New augmentation for both sides (a phase change); batches made before it are dropped."""
        self._generation += 1
        if self.workers == 0:
            self._samplers[0].aug, self._samplers[1].aug = src_aug, dst_aug
            return
        for control in self._own.controls:
            control.put((self._generation, (src_aug, dst_aug)))

    def close(self) -> None:
        """Stop the workers (they exit, or are terminated after 2 s) and free the shared memory."""
        if self._closed:
            return
        self._closed = True
        self._slots = {}  # views into the shared memory must go before it closes
        self._finalizer()
