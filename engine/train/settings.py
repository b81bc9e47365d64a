"""Train stage: what a training run is asked to do (TrainSettings), strict, with presets and soft options.

The model's shape comes from the same fields (model_config), so one map from the wire, the command
line or a preset describes the whole run. Unknown keys, wrong types and impossible values fail here,
before any data is loaded.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from engine.config import check_types, from_dict
from engine.geometry.align import FACE_TYPES
from engine.models import check_compute
from engine.models.autoencoder import ModelConfig
from engine.train.presets import PRESETS
from engine.train.samples import Augmentation

OPTIMIZERS = ("adam", "rmsprop", "adabelief")
PHASES = ("warp", "refine", "gan")
COLOUR_TRANSFERS = ("none", "rct", "lct", "mkl", "idt", "sot")  # engine.colour.transfer.METHODS + none

# What a running job may change between steps ("set" command): nothing that changes the model's
# shape, the data on the workers' side beyond augmentation, or the process (device, threads).
SOFT_OPTIONS = frozenset({
    "iterations", "max_seconds", "learning_rate", "optimizer", "lr_dropout", "clip_grad", "masked",
    "eyes_mouth_priority", "ms_ssim", "random_warp", "random_flip_src", "random_flip_dst", "random_hsv",
    "gan_power", "true_face_power", "face_style_power", "bg_style_power", "phase", "auto_phases",
    "plateau_minutes", "plateau_delta", "autobackup_hours", "backups_kept", "save_every_s",
    "report_every_s", "preview_every_s",
})


@dataclass(frozen=True)
class TrainSettings:
    """A training run: target, model shape, losses, augmentation, phases, safety and pace."""

    iterations: int = 2000  # absolute target: a resumed model counts the iterations it already has
    max_seconds: float | None = None  # stop earlier than `iterations` after this long
    batch_size: int = 8
    resolution: int = 64
    face_type: str = ""  # the model's crop; "" = the source faceset's own (a narrower one is re-cropped)
    arch: str = ModelConfig.arch  # "df" or "liae", optionally "-" and variants u, d, t ("liae-ud")
    ae_dims: int = ModelConfig.ae_dims
    e_dims: int = ModelConfig.e_dims
    d_dims: int = ModelConfig.d_dims
    d_mask_dims: int = ModelConfig.d_mask_dims
    grayscale: bool = False  # one-channel model: ~3x faster; colour comes back from the destination at merge
    # Adam at 5e-4, not DeepFaceLab's 5e-5 (made for 100x larger models trained for days). On the
    # demo pair at a fixed CPU budget (300 s, 64 px): 3e-4 ended at 1.5x the loss of 1e-3, and
    # 5e-4, 1e-3 and 2e-3 ended within 2% of each other; the lower of those leaves margin for long runs.
    learning_rate: float = 5e-4
    optimizer: str = "adam"  # "adam" | "rmsprop" | "adabelief"
    lr_dropout: bool = True  # in the refine and gan phases: each step updates a random ~70% of weights
    clip_grad: float = 0.0  # max gradient norm; 0 = off (turn on if the loss spikes or goes NaN)
    masked: bool = True  # reconstruction loss only inside the blurred face mask
    eyes_mouth_priority: bool = False  # extra weight on eyes and mouth (sharper gaze and teeth)
    ms_ssim: bool = False  # multi-scale structural loss instead of the single-scale one
    random_warp: bool = True  # in the warp phase; later phases turn it off to sharpen
    random_flip_src: bool = True
    random_flip_dst: bool = True
    uniform_yaw: bool = False  # draw faces evenly over head turn (helps profile faces)
    random_hsv: float = 0.0  # hue/saturation/value jitter of inputs; 0 = off, ~0.05 DeepFaceLab-like
    colour_transfer: str = "none"  # recolour source samples toward destination colours
    gan_power: float = 0.0  # the gan phase's adversarial weight; 0 there = 0.1
    gan_patch_size: int = 0  # discriminator receptive field in pixels; 0 = resolution // 8
    gan_dims: int = 16  # discriminator width
    true_face_power: float = 0.0  # latent discriminator pulling the swap toward the source's identity
    face_style_power: float = 0.0  # 0..100: the swap takes the destination face's colour statistics
    bg_style_power: float = 0.0  # 0..100: the swap keeps the destination's surroundings
    phase: str = "warp"  # "warp" -> "refine" -> "gan"
    auto_phases: bool = False  # move on when the loss stops improving (plateau_delta over plateau_minutes)
    plateau_minutes: float = 25.0
    plateau_delta: float = 0.010
    autobackup_hours: float = 0.0  # 0 = off
    backups_kept: int = 5  # oldest backups beyond this are deleted
    pretrain: bool = False  # generic faces; the count and history restart when the pair training starts
    workers: int = -1  # sample worker processes; -1 = cores - 2 (at least 1); 0 = in-process
    precision: str = "auto"  # "bf16", "fp32", or "auto": bf16 where the hardware does it natively
    device: str = "auto"  # the GPU when there is one
    compile: bool = False  # torch.compile the training step (pays on GPUs; see trainer.py for CPU)
    threads: int = 0  # torch CPU threads; 0 keeps torch's default (one per physical core)
    save_every_s: float = 60.0
    report_every_s: float = 0.5
    preview_every_s: float = 30.0
    seed: int | None = None

    def __post_init__(self) -> None:
        check_types(self, "training setting")
        problems = []
        for name, ok, need in (
            ("iterations", self.iterations >= 0, ">= 0"),
            ("batch_size", self.batch_size >= 1, ">= 1"),
            ("learning_rate", self.learning_rate > 0, "> 0"),
            ("max_seconds", self.max_seconds is None or self.max_seconds > 0, "> 0 (or null)"),
            ("clip_grad", self.clip_grad >= 0, ">= 0"),
            ("random_hsv", 0 <= self.random_hsv <= 1, "in 0..1"),
            ("gan_power", self.gan_power >= 0, ">= 0"),
            ("gan_patch_size", 0 <= self.gan_patch_size <= self.resolution, f"in 0..{self.resolution}"),
            ("gan_dims", self.gan_dims >= 1, ">= 1"),
            ("true_face_power", self.true_face_power >= 0, ">= 0"),
            ("face_style_power", 0 <= self.face_style_power <= 100, "in 0..100"),
            ("bg_style_power", 0 <= self.bg_style_power <= 100, "in 0..100"),
            ("plateau_minutes", self.plateau_minutes > 0, "> 0"),
            ("plateau_delta", self.plateau_delta >= 0, ">= 0"),
            ("autobackup_hours", self.autobackup_hours >= 0, ">= 0"),
            ("backups_kept", self.backups_kept >= 1, ">= 1"),
            ("workers", self.workers >= -1, ">= -1"),
            ("threads", self.threads >= 0, ">= 0"),
            ("save_every_s", self.save_every_s > 0, "> 0"),
            ("report_every_s", self.report_every_s >= 0, ">= 0"),
            ("preview_every_s", self.preview_every_s >= 0, ">= 0"),
        ):
            if not ok:
                problems.append(f"{name} must be {need}, got {getattr(self, name)!r}")
        for name, allowed in (("optimizer", OPTIMIZERS), ("phase", PHASES), ("colour_transfer", COLOUR_TRANSFERS)):
            if getattr(self, name) not in allowed:
                problems.append(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.face_type and self.face_type not in FACE_TYPES:
            problems.append(f"unknown face type {self.face_type!r}; expected one of {', '.join(FACE_TYPES)}")
        if problems:
            raise ValueError("training settings: " + "; ".join(problems))
        check_compute(self.device, self.precision)
        self.model_config()  # a bad model shape is reported now, not after the data is loaded

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainSettings":
        return from_dict(cls, d, "training setting")

    @classmethod
    def from_preset(cls, name: str, overrides: dict[str, Any] | None = None) -> "TrainSettings":
        """A preset's settings with `overrides` on top (the user's choices win)."""
        if name not in PRESETS:
            raise ValueError(f"unknown training preset {name!r}; expected one of {', '.join(PRESETS)}")
        return cls.from_dict({**PRESETS[name], **(overrides or {})})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "TrainSettings":
        return dataclasses.replace(self, **changes)

    def model_config(self) -> ModelConfig:
        return ModelConfig(arch=self.arch, resolution=self.resolution, ae_dims=self.ae_dims, e_dims=self.e_dims,
                           d_dims=self.d_dims, d_mask_dims=self.d_mask_dims, channels=1 if self.grayscale else 3)

    def augmentation(self, side: str) -> Augmentation:
        """The sample distortions of one side ("src" or "dst") as these settings ask for them.

        random_warp here is the field as set; the phase (engine.train.phases.effective) turns it off
        after the warp phase.
        """
        if side not in ("src", "dst"):
            raise ValueError(f"side must be 'src' or 'dst', got {side!r}")
        flip = self.random_flip_src if side == "src" else self.random_flip_dst
        # uniform yaw on both sides, as DeepFaceLab does: the destination's rare profiles need training too
        return Augmentation(flip=flip, random_warp=self.random_warp, hsv_jitter=self.random_hsv,
                            uniform_yaw=self.uniform_yaw)

    def check_soft(self, options: dict[str, Any]) -> "TrainSettings":
        """These settings with `options` applied, refusing any a running job cannot change."""
        if not isinstance(options, dict):
            raise ValueError(f"options must be a map, got {type(options).__name__}")
        hard = sorted(set(options) - SOFT_OPTIONS)
        if hard:
            raise ValueError(f"a running training cannot change {', '.join(hard)}; stop it and start again "
                             f"(options it can change: {', '.join(sorted(SOFT_OPTIONS))})")
        return TrainSettings.from_dict({**self.to_dict(), **options})
