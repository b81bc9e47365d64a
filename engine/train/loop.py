"""Train stage: the training loop of a face pair (resume, steps, commands, phases, files, reports).

One visible loop, read top to bottom: set up (model from the checkpoint or fresh, trainer, batches),
then every step: obey the commands, train, watch for divergence and plateaus, and on their clocks
report, write the preview and the loss graph, save, back up. The step itself is trainer.py's; the
phases' meaning phases.py's.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable

import torch

from engine.errors import Cancelled, EngineError
from engine.files import remove_stale_temps
from engine.models import resolve_device
from engine.models.checkpoint import has_checkpoint, load_checkpoint
from engine.train import distributed
from engine.train.backups import make_backup
from engine.train.history import LossHistory
from engine.train.phases import PlateauDetector, effective, next_phase
from engine.train.preview import loss_graph, preview_grid, write_png
from engine.train.samples import Augmentation, BatchSampler, FaceSamples
from engine.train.settings import PHASES, TrainSettings
from engine.train.trainer import Trainer
from engine.train.workers import BatchStream, default_workers

PREVIEW_FACES = 4
PAUSE_POLL_S = 0.2


def train_pair(source: FaceSamples, destination: FaceSamples | None, model_dir: Path, settings: TrainSettings,
               report: Callable[[float, str, dict], None], should_stop: Callable[[], bool],
               commands: Callable[[], list[dict]] = lambda: [],
               set_paused: Callable[[bool], None] = lambda paused: None) -> dict[str, Any]:
    """Train (or resume) the pair's model in `model_dir` up to settings.iterations; returns
    {iterations, loss, checkpoint, phase}.

    The returned loss is the mean of (src + dst) / 2 over the last 20 history points.
    `should_stop` and `commands` are asked before every step: a stop saves and raises Cancelled.
    A pretraining run (settings.pretrain) may pass no destination: the source stands for both.
    """
    started = time.monotonic()
    paused_total = 0.0  # time spent paused counts neither against max_seconds nor as a plateau
    model_dir = Path(model_dir)
    destination = source if destination is None and settings.pretrain else destination
    for name, faces in (("source", source), ("destination", destination)):
        if faces is None or len(faces) == 0:
            raise EngineError("no_faces", f"the {name} faceset has no faces to train on")
    device = distributed.setup(resolve_device(settings.device))
    main = distributed.is_main_process()
    previous_threads = torch.get_num_threads()
    if settings.threads > 0:
        torch.set_num_threads(settings.threads)
    batches = None
    try:
        # -- model and state: fresh, or carried on from the checkpoint
        model, state = None, {}
        remove_stale_temps(model_dir)  # a checkpoint a killed run was writing: never read, only in the way
        if has_checkpoint(model_dir):
            model, _, state = load_checkpoint(model_dir, expected=settings.model_config())
            if state.get("pretrain") and not settings.pretrain:
                # pretrained weights start the pair's training: a new count, a new history
                state = {"optimizer": state.get("optimizer")}
        iteration = int(state.get("iteration", 0))
        history = LossHistory(state.get("history"))
        if "history" not in state and state.get("loss_history"):  # a checkpoint from before src/dst histories
            for i, loss in enumerate(state["loss_history"], 1):
                history.add(i, float(loss), float(loss))
        if settings.auto_phases and state.get("phase") in PHASES and \
                PHASES.index(state["phase"]) > PHASES.index(settings.phase):
            settings = settings.replace(phase=state["phase"])  # automatic phases never go back
        if not history.phase_marks or history.phase_marks[-1][1] != settings.phase:
            history.mark(iteration, settings.phase)
        trainer = Trainer(settings, device, model)
        if model is not None:
            trainer.load(model_dir, state)
        trainer.check_memory(settings.batch_size)
        batches = open_batches(source, destination, settings)
        preview_faces = fixed_faces(source, destination, settings) if main else None
        plateau = PlateauDetector(settings.plateau_minutes, settings.plateau_delta)

        def save() -> Path:
            path = model_dir / "model.safetensors"
            if main:  # under torchrun the first process alone writes
                path = trainer.save(model_dir, {"iteration": iteration, "history": history.to_dict(),
                                                "phase": settings.phase, "pretrain": settings.pretrain,
                                                "settings": settings.to_dict()})
            return path

        def backup() -> None:
            save()
            if main:
                write_images(model_dir, trainer, preview_faces, history)
                make_backup(model_dir, iteration, settings.backups_kept)

        def change(new: TrainSettings) -> None:
            nonlocal settings
            if new.phase != settings.phase:
                backup()  # a phase that goes wrong can be undone from here
                history.mark(iteration, new.phase)
                plateau.reset()
            if (new.plateau_minutes, new.plateau_delta) != (settings.plateau_minutes, settings.plateau_delta):
                plateau.window_s, plateau.delta = new.plateau_minutes * 60, new.plateau_delta
            settings = new
            trainer.apply(settings)
            run = effective(settings)
            batches.set_augmentation(run.augmentation("src"), run.augmentation("dst"))

        paused = plateau_reached = False

        def obey(command: dict) -> None:
            nonlocal paused
            kind = command.get("command") if isinstance(command, dict) else None
            if kind == "save":
                save()
            elif kind == "backup":
                backup()
            elif kind == "pause" and not paused:
                save()
                paused = True
                if main:  # the iteration it stopped at, not the last periodic report's
                    report(progress(), f"paused at iteration {iteration}", {"iteration": iteration, "paused": True})
                set_paused(True)
            elif kind == "resume" and paused:
                paused = plateau_reached = False
                plateau.reset()  # the loss before the pause and after it are not a plateau
                set_paused(False)
            elif kind == "phase":
                change(settings.check_soft({"phase": command.get("phase")}))
            elif kind == "set":
                change(settings.check_soft(command.get("options", {})))
            elif kind not in ("pause", "resume"):
                raise ValueError(f"unknown training command {command!r}")

        def control() -> tuple[bool, bool]:
            """(stop asked, time up), with the queued commands obeyed; rank 0 decides for all."""
            nonlocal plateau_reached
            decision = None
            if main:
                time_up = settings.max_seconds is not None and running_s() >= settings.max_seconds
                queued = list(commands())
                following = next_phase(settings.phase) if plateau_reached else None
                if following is not None:  # decided here so every process changes phase at the same step
                    queued.insert(0, {"command": "phase", "phase": following})
                plateau_reached = False
                decision = (should_stop(), time_up, queued)
            stop, time_up, queued = distributed.from_main(decision)
            for command in queued:
                try:
                    obey(command)
                except (ValueError, TypeError) as e:  # a bad command must not end hours of training
                    if main:
                        report(progress(), f"command refused: {e}", {"error": str(e)})
            return stop, time_up

        def running_s() -> float:
            return time.monotonic() - started - paused_total

        def progress() -> float:
            done = iteration / settings.iterations if settings.iterations else 1.0
            if settings.max_seconds:
                done = max(done, running_s() / settings.max_seconds)
            return min(1.0, done)

        # -- the loop
        now = time.monotonic()
        last_save = last_report = last_preview = last_backup = now
        preview_version = 0
        window: list[tuple[float, float]] = []
        wait_mark = batches.wait_seconds
        while iteration < settings.iterations:
            stop, time_up = control()
            if paused:
                window, last_paused_report, paused_since = [], 0.0, time.monotonic()
            while paused and not stop:
                if main and time.monotonic() - last_paused_report >= max(1.0, settings.report_every_s):
                    report(progress(), f"paused at iteration {iteration}",
                           stats(iteration, settings, [], 0.0, 0.0, paused, preview_version))
                    last_paused_report = time.monotonic()
                time.sleep(PAUSE_POLL_S)  # sleeping, not spinning: a paused job leaves the CPU alone
                stop, time_up = control()
                last_report, wait_mark = time.monotonic(), batches.wait_seconds
                if not paused:
                    paused_total += time.monotonic() - paused_since
            if stop:
                save()
                raise Cancelled()
            if time_up:
                break
            src, dst = batches.next()
            try:
                losses = trainer.step(src, dst)
            except RuntimeError as e:
                if _is_oom(e):
                    raise EngineError("out_of_memory", "not enough memory to train: lower the batch size "
                                      "or the resolution") from None
                raise
            src_loss, dst_loss = losses["src_loss"], losses["dst_loss"]
            if not (math.isfinite(src_loss) and math.isfinite(dst_loss)):
                # the last checkpoint is still good; saving now would overwrite it with NaN weights
                raise EngineError("training_diverged", f"the loss stopped being finite at iteration "
                                  f"{iteration}; lower the learning rate (or set clip_grad) and resume "
                                  "from the last checkpoint or a backup")
            iteration += 1
            history.add(iteration, src_loss, dst_loss)
            window.append((src_loss, dst_loss))
            if main and settings.auto_phases and plateau.update((src_loss + dst_loss) / 2):
                plateau_reached = True  # the phase moves on at the next step's commands
            now = time.monotonic()
            if main and now - last_report >= settings.report_every_s:
                waited = batches.wait_seconds - wait_mark
                info = stats(iteration, settings, window, now - last_report, waited, paused, preview_version)
                if settings.max_seconds is not None and info["eta_s"] is not None:
                    info["eta_s"] = min(info["eta_s"], max(0.0, settings.max_seconds - running_s()))
                report(progress(), f"iteration {iteration}/{settings.iterations} ({settings.phase}), "
                       f"loss {info['loss']:.4f}", info)
                window, last_report, wait_mark = [], now, batches.wait_seconds
            if main and settings.preview_every_s and now - last_preview >= settings.preview_every_s:
                write_images(model_dir, trainer, preview_faces, history)
                preview_version += 1
                last_preview = now
            if now - last_save >= settings.save_every_s:
                save()
                last_save = now
            if settings.autobackup_hours and now - last_backup >= settings.autobackup_hours * 3600:
                backup()
                last_backup = now
        path = save()
        if main:
            write_images(model_dir, trainer, preview_faces, history)
            preview_version += 1
    finally:
        if batches is not None:
            batches.close()  # the worker processes end with the run, however it ends
        torch.set_num_threads(previous_threads)
    loss = history.recent_loss()
    if main:
        report(1.0, f"trained {iteration} iterations, loss {loss:.4f}",
               {"iteration": iteration, "loss": loss, "phase": settings.phase, "preview_version": preview_version})
    return {"iterations": iteration, "loss": loss, "checkpoint": str(path), "phase": settings.phase}


def stats(iteration: int, settings: TrainSettings, window: list[tuple[float, float]], seconds: float,
          waited: float, paused: bool, preview_version: int) -> dict[str, Any]:
    """The figures a report carries (see the contract): losses are the window's means."""
    n = len(window)
    src = sum(s for s, _ in window) / n if n else math.nan
    dst = sum(d for _, d in window) / n if n else math.nan
    it_per_s = n / seconds if seconds > 0 else 0.0
    left = max(0, settings.iterations - iteration)
    return {"iteration": iteration, "target": settings.iterations, "phase": settings.phase,
            "loss": (src + dst) / 2, "src_loss": src, "dst_loss": dst, "it_per_s": it_per_s,
            "samples_per_s": it_per_s * settings.batch_size * 2 * distributed.world_size(),
            "eta_s": left / it_per_s if it_per_s > 0 else None,
            "data_wait": min(1.0, waited / seconds) if seconds > 0 else 0.0,
            "paused": paused, "preview_version": preview_version}


def write_images(model_dir: Path, trainer: Trainer, faces: tuple[Any, Any] | None, history: LossHistory) -> None:
    """preview.png (the fixed faces through the model) and loss.png (the history), atomically."""
    if faces is not None:
        columns, titles = trainer.preview(*faces)
        write_png(model_dir / "preview.png", preview_grid(columns, titles))
    if history.iterations:
        write_png(model_dir / "loss.png", loss_graph(history.iterations, history.src, history.dst,
                                                     history.phase_marks))


def fixed_faces(source: FaceSamples, destination: FaceSamples, settings: TrainSettings) -> tuple[Any, Any]:
    """The same few faces of each side for every preview, undistorted, so previews compare over time."""
    still = Augmentation(rotation_deg=0.0, scale=0.0, shift=0.0, flip=False, random_warp=False)

    def few(faces: FaceSamples) -> Any:
        # only the faces shown are prepared: preparing a whole faceset costs ~4 ms a face
        n = min(PREVIEW_FACES, len(faces))
        picked = FaceSamples(faces.images[:n], faces.landmarks[:n], None if faces.masks is None else faces.masks[:n])
        return BatchSampler(picked, settings.resolution, still, seed=0, grayscale=settings.grayscale).sample(n)

    return few(source), few(destination)


def open_batches(source: FaceSamples, destination: FaceSamples, settings: TrainSettings) -> Any:
    """The stream of (src, dst) batches, made ahead by worker processes (workers.BatchStream)."""
    run = effective(settings)
    seed = distributed.data_seed(settings.seed)
    workers = default_workers() if settings.workers < 0 else settings.workers
    stream = BatchStream(source, destination, settings.resolution, settings.batch_size, run.augmentation("src"),
                         run.augmentation("dst"), workers, seed=seed, grayscale=settings.grayscale,
                         colour_transfer=settings.colour_transfer)
    return stream.__enter__()


def _is_oom(e: BaseException) -> bool:
    text = str(e).lower()
    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in text or "can't allocate memory" in text
