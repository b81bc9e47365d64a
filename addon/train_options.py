"""Blender layer, without bpy: every training option the panel offers, with its tooltip, and how the
option values map to the engine's training settings (and a preset's settings back onto them).

One table: properties.py builds the Blender properties from it, the panels draw it group by group,
the operators turn property values into a `train` job's params with `to_settings` (and
`job_options`, for the few options that are job params rather than settings), and a test checks it
against the engine's TrainSettings (same fields, same defaults, same soft options).
"""

from __future__ import annotations

from typing import Any, NamedTuple

GROUPS = ("Model", "Losses", "Augmentation", "GAN & Style", "Phases", "Run")


class Option(NamedTuple):
    name: str  # the property name (and, unless mapped below, the TrainSettings field)
    group: str
    default: Any
    label: str
    tip: str  # what it does and when to use it
    extra: dict = {}  # min/max/items/step... for the Blender property
    soft: bool = False  # a running job may change it (Apply Options)


# The options held on the Scene's own settings (they existed before this table, and other panels and
# scripts read them there): name -> the property name on scene.swapline.
ON_SCENE = {"iterations": "iterations", "time_budget": "time_budget", "resolution": "resolution",
            "batch_size": "batch_size"}

FACE_TYPE_ITEMS = [("auto", "Faceset's", "The crop the source faceset was extracted with"),
                   ("half", "Half", "Eyebrows to mouth: the sharpest face for a given resolution, no chin"),
                   ("mid_full", "Mid-Full", "A little more than half"),
                   ("full", "Full", "Chin to brows: the usual choice"),
                   ("whole_face", "Whole Face", "Full plus the forehead: swaps hairlines too; wants 192 px or more"),
                   ("head", "Head", "The whole head, hair included (head swaps)")]
OPTIMIZER_ITEMS = [("adam", "Adam", "The usual choice: fast and steady"),
                   ("rmsprop", "RMSprop", "DeepFaceLab's classic: less memory than Adam"),
                   ("adabelief", "AdaBelief", "Often ends at a lower loss on long runs; a little slower per step")]
COLOUR_ITEMS = [("none", "None", "Faces keep their own colours: right when both clips are lit alike"),
                ("rct", "RCT", "Reinhard: matches mean and spread of colour, quick and safe; the usual pick"),
                ("lct", "LCT", "Linear: also matches how colours vary together"),
                ("mkl", "MKL", "Monge-Kantorovich: a closer match for strongly different lighting"),
                ("idt", "IDT", "Iterative distribution transfer: the closest match, the slowest"),
                ("sot", "SOT", "Sliced optimal transport: close match, fewer colour artefacts than IDT")]
PHASE_ITEMS = [("warp", "Warp", "Random warp on: learns the faces' shapes. Start here"),
               ("refine", "Refine", "Random warp off, learning-rate dropout on: sharpens detail once the loss flattens"),
               ("gan", "GAN", "Adds the patch discriminator: fine texture (pores, stubble). Last, on a sharp model")]
PHASE_MODE_ITEMS = [("MANUAL", "Manual", "You choose the phase (and change it while training with Apply Options)"),
                    ("AUTO", "Auto", "Move on to the next phase by itself when the loss stops improving")]
ARCH_ITEMS = [("df", "DF", "Separate decoders per person: the most faithful to the source's identity; needs "
               "similar face shapes and angles"),
              ("liae", "LIAE", "A shared intermediate code: follows the destination's expressions and lighting "
               "better; the usual choice")]
PRECISION_ITEMS = [("auto", "Auto", "bf16 where the hardware runs it natively, else fp32"),
                   ("bf16", "bf16", "Half the memory and faster on recent GPUs and CPUs"),
                   ("fp32", "fp32", "Full precision: slower; for hardware without bf16")]
DEVICE_ITEMS = [("auto", "Auto", "The GPU when there is one"), ("cuda", "GPU", "The first CUDA GPU"),
                ("cpu", "CPU", "The processor: slow, for small previews")]

OPTIONS: tuple[Option, ...] = (
    # --- Model: decided when a model is created; a resumed model must keep them
    Option("resolution", "Model", 64, "Resolution", "Side of the model's face in pixels. Higher is sharper and "
           "much slower: 64 to try a pair on a CPU, 128-192 on a GPU, 256+ for close-ups. Fixed once trained",
           {"min": 16, "max": 640, "step": 16}),
    Option("face_type", "Model", "auto", "Face Type", "How much of the head the model swaps. Fixed once trained",
           {"items": FACE_TYPE_ITEMS}),
    Option("arch_base", "Model", "df", "Architecture", "How the network is built. Fixed once trained",
           {"items": ARCH_ITEMS}),
    Option("arch_u", "Model", False, "U: Identity", "Variant u: a normalised code that keeps the source's identity "
           "better (DeepFaceLab's -u). Usually on"),
    Option("arch_d", "Model", False, "D: Double Res", "Variant d: decoders output twice their size for about the cost "
           "of the smaller one: sharper for the time. Needs a resolution divisible by 32"),
    Option("arch_t", "Model", False, "T: Likeness", "Variant t: a deeper encoder that brings the swap closer to the "
           "source's likeness; slower"),
    Option("ae_dims", "Model", 128, "Code Size", "Width of the shared code (autoencoder dims). More remembers more "
           "expressions and angles; costs memory and time", {"min": 16, "max": 1024}),
    Option("e_dims", "Model", 32, "Encoder Width", "Channels of the encoder. More sees finer detail", {"min": 8, "max": 512}),
    Option("d_dims", "Model", 16, "Decoder Width", "Channels of the face decoders. More draws finer detail",
           {"min": 8, "max": 512}),
    Option("d_mask_dims", "Model", 8, "Mask Decoder Width", "Channels of the mask decoder. A third of the decoder "
           "width is plenty", {"min": 4, "max": 256}),
    # Hold Back defaults to 0: DeepFaceLab users expect every face to train, and the held-back block
    # is the end of each clip, so the destination's last frames would merge from faces never learned.
    Option("holdout", "Model", 0.0, "Hold Back", "Share of each faceset's last faces the model never trains "
           "on (0.05 = the last 5%), so Evaluate can measure how well it rebuilds faces it has not seen "
           "(SSIM held back). 0 trains on every face. Those last frames of the shot then merge from faces "
           "the model never learned. Ignored when pretraining. Fixed once trained",
           {"min": 0.0, "max": 0.5, "soft_max": 0.2, "step": 1, "precision": 2}),
    Option("grayscale", "Model", False, "Grayscale", "Train on luminance only: about 3x faster; the colour comes from "
           "the destination at merge. For previews and weak hardware"),
    # --- Losses
    Option("learning_rate", "Losses", 5e-4, "Learning Rate", "Step size. Lower it (e.g. 5e-5) if the loss jumps "
           "or goes NaN on a long run", {"min": 1e-7, "max": 1e-2, "precision": 6, "step": 0.001}, soft=True),
    Option("optimizer", "Losses", "adam", "Optimizer", "How weights are updated from the gradients; Adam unless you have a reason", {"items": OPTIMIZER_ITEMS}, soft=True),
    Option("lr_dropout", "Losses", True, "LR Dropout", "In the refine and GAN phases, update a random part of the "
           "weights each step: sharper results at the end. Leave on", soft=True),
    Option("clip_grad", "Losses", 0.0, "Clip Gradients", "Limit the size of a step (maximum gradient norm; 0 = off). "
           "Turn on (e.g. 1.0) if the loss spikes or training diverges", {"min": 0.0, "soft_max": 10.0}, soft=True),
    Option("masked", "Losses", True, "Masked Training", "Learn only inside the face mask, not the background: "
           "faster and sharper faces. Turn off only for whole-head work", soft=True),
    Option("eyes_mouth_priority", "Losses", False, "Eyes & Mouth Priority", "Weigh eyes and mouth more: sharper gaze "
           "and teeth. Use when those look blurry or wrong", soft=True),
    Option("ms_ssim", "Losses", False, "Multi-Scale SSIM", "Compare faces at several scales: better overall shapes "
           "at 192 px and up; a little slower", soft=True),
    # --- Augmentation
    Option("random_warp", "Augmentation", True, "Random Warp", "Distort training faces so the model learns shapes, "
           "not pixels. On in the warp phase; the refine phase turns it off to sharpen", soft=True),
    Option("random_flip_src", "Augmentation", True, "Flip Source", "Mirror source faces: doubles the source's angles. "
           "Turn off if the face is strongly asymmetric (a scar, a parting)", soft=True),
    Option("random_flip_dst", "Augmentation", True, "Flip Destination", "Mirror destination faces: more angles for the destination side. Usually on", soft=True),
    Option("uniform_yaw", "Augmentation", False, "Uniform Yaw", "Show the model source faces evenly over head turn, "
           "so the few profile faces are not drowned by frontal ones. For sets with few side views"),
    Option("random_hsv", "Augmentation", 0.0, "Colour Jitter", "Randomly shift hue, saturation and brightness of "
           "inputs (0 = off, 0.05 typical): steadier colour when the source's lighting varies",
           {"min": 0.0, "max": 1.0, "soft_max": 0.3}, soft=True),
    Option("colour_transfer", "Augmentation", "none", "Colour Transfer", "Recolour source faces toward destination "
           "faces while training, so the swap matches the shot's colours", {"items": COLOUR_ITEMS}),
    # --- GAN & style
    Option("gan_power", "GAN & Style", 0.0, "GAN Power", "Weight of the adversarial loss in the GAN phase (0 there "
           "means 0.1): fine skin texture. Only once the model is sharp; too high adds artefacts",
           {"min": 0.0, "soft_max": 1.0}, soft=True),
    Option("gan_patch_size", "GAN & Style", 0, "GAN Patch Size", "How large a patch the discriminator judges, in "
           "pixels (0 = resolution / 8). Larger judges structure, smaller texture", {"min": 0, "max": 640}),
    Option("gan_dims", "GAN & Style", 16, "GAN Width", "Channels of the discriminator. 16 is plenty",
           {"min": 4, "max": 128}),
    Option("true_face_power", "GAN & Style", 0.0, "True Face Power", "Push the swap toward the source's identity "
           "with a code discriminator (e.g. 0.01). For DF models whose swap looks like the destination",
           {"min": 0.0, "soft_max": 1.0}, soft=True),
    Option("face_style_power", "GAN & Style", 0.0, "Face Style Power", "0-100: the swap takes the destination "
           "face's colours and lighting. Small values (0.1-1) help; high ones wash out identity",
           {"min": 0.0, "max": 100.0}, soft=True),
    Option("bg_style_power", "GAN & Style", 0.0, "Background Style Power", "0-100: the area around the face learns "
           "the destination's: a smoother blend at merge. Small values", {"min": 0.0, "max": 100.0}, soft=True),
    # --- Phases
    Option("phase_mode", "Phases", "MANUAL", "Phase Mode", "Who moves training from warp to refine to GAN",
           {"items": PHASE_MODE_ITEMS}, soft=True),
    Option("phase", "Phases", "warp", "Phase", "The phase to train in (or to start from in Auto mode)",
           {"items": PHASE_ITEMS}, soft=True),
    Option("plateau_minutes", "Phases", 25.0, "Plateau Minutes", "Auto mode: how long the loss must stop improving "
           "before the next phase", {"min": 0.1, "soft_max": 240.0}, soft=True),
    Option("plateau_delta", "Phases", 0.010, "Plateau Change", "Auto mode: an improvement smaller than this share "
           "over the plateau time counts as stopped (0.01 = 1%)", {"min": 0.0, "max": 1.0, "precision": 3}, soft=True),
    Option("autobackup_hours", "Phases", 0.0, "Auto Backup (h)", "Copy the model to a backup every so many hours "
           "(0 = off); phase changes always back up first. Lets you go back if a phase goes wrong",
           {"min": 0.0, "soft_max": 24.0}, soft=True),
    Option("backups_kept", "Phases", 5, "Backups Kept", "Oldest backups beyond this many are deleted", {"min": 1,
           "max": 1000}, soft=True),
    Option("pretrain", "Phases", False, "Pretrain", "Learn faces in general from the source faceset alone (a big, "
           "varied faceset): a head start for many later pairs. Train the pair afterwards with this off"),
    # --- Run
    Option("iterations", "Run", 2000, "Target Iterations", "Train up to this many iterations in all (a resumed "
           "model counts those it has): thousands to preview, 100k+ for a finished swap",
           {"min": 1, "soft_max": 1_000_000}, soft=True),
    Option("time_budget", "Run", 0.0, "Time Budget (min)", "Stop after this many minutes; 0: no limit",
           {"min": 0.0, "soft_max": 24 * 60.0}, soft=True),
    Option("batch_size", "Run", 8, "Batch Size", "Faces per step. Larger is steadier and uses the GPU better; "
           "lower it when memory runs out", {"min": 1, "max": 256}),
    Option("workers", "Run", -1, "Data Workers", "Processes preparing faces (-1 = cores - 2; 0 = none, in the "
           "engine). Raise it if samples/s is low and the data wait share high", {"min": -1, "max": 64}),
    Option("device", "Run", "auto", "Device", "Where to train: the GPU whenever there is one; the CPU only for small previews", {"items": DEVICE_ITEMS}),
    Option("precision", "Run", "auto", "Precision", "Number format of the network: Auto picks bf16 where it is fast and safe", {"items": PRECISION_ITEMS}),
    Option("compile", "Run", False, "Compile", "Compile the training step (torch.compile): faster on GPUs after a "
           "minute or two of compiling. Off on CPUs"),
    Option("threads", "Run", 0, "CPU Threads", "Threads for CPU training (0 = one per core). Lower it to keep the "
           "machine usable", {"min": 0, "max": 256}),
    Option("seed", "Run", -1, "Seed", "Random seed for a repeatable run; -1: random", {"min": -1}),
    Option("save_every_s", "Run", 60.0, "Save Every (s)", "Seconds between checkpoints (also saved on Stop)",
           {"min": 1.0, "soft_max": 3600.0}, soft=True),
    Option("report_every_s", "Run", 0.5, "Report Every (s)", "Seconds between progress updates",
           {"min": 0.0, "soft_max": 10.0}, soft=True),
    Option("preview_every_s", "Run", 30.0, "Preview Every (s)", "Seconds between new preview pictures and loss "
           "graphs", {"min": 0.0, "soft_max": 600.0}, soft=True),
)

BY_NAME = {o.name: o for o in OPTIONS}
PRESET_ITEMS = [("quick", "Quick CPU Preview", "64 px, small model: minutes on a laptop, blurry but shows the swap"),
                ("128", "128 px", "A good first real model on a GPU"),
                ("192", "192 px", "Sharper; for medium shots on a GPU with 8+ GB"),
                ("256_wf", "256 Whole Face", "Close-ups with forehead and hairline; a large GPU and days")]
_COMPOSED = {"arch_base", "arch_u", "arch_d", "arch_t", "phase_mode", "time_budget", "face_type", "seed"}
# Options that are params of the `train` job itself, not TrainSettings fields (engine/recipes_train.py):
# the share of faces held back (engine/holdout.py) is chosen per model, beside its weights.
JOB_OPTIONS = ("holdout",)


def group(name: str) -> list[Option]:
    return [o for o in OPTIONS if o.group == name]


def to_settings(values: dict[str, Any], soft_only: bool = False) -> dict[str, Any]:
    """TrainSettings fields from option values (by option name); `soft_only`: those a running job may change."""
    out = {o.name: values[o.name] for o in OPTIONS
           if o.name not in _COMPOSED and o.name not in JOB_OPTIONS and (o.soft or not soft_only)}
    out["auto_phases"] = values["phase_mode"] == "AUTO"
    out["max_seconds"] = float(values["time_budget"]) * 60.0 if values["time_budget"] > 0 else None
    if not soft_only:
        letters = "".join(letter for letter in "udt" if values[f"arch_{letter}"])
        out["arch"] = values["arch_base"] + (f"-{letters}" if letters else "")
        out["face_type"] = "" if values["face_type"] == "auto" else values["face_type"]
        out["seed"] = None if values["seed"] < 0 else int(values["seed"])
    return out


def job_options(values: dict[str, Any], pretrain: bool) -> dict[str, Any]:
    """The `train` job's params that are not settings, those set only (0 holds nothing back, as no
    param does). Pretraining holds nothing back: it learns faces in general, and the pair trained
    after it must be free to choose its own faces to hold back."""
    return {} if pretrain else {name: values[name] for name in JOB_OPTIONS if values[name]}


def from_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """Option values for the TrainSettings fields given (a preset's partial map); unknown keys are skipped."""
    out = {k: v for k, v in settings.items() if k in BY_NAME and k not in _COMPOSED}
    if "arch" in settings:
        base, _, letters = str(settings["arch"]).partition("-")
        out["arch_base"] = base
        out.update({f"arch_{letter}": letter in letters for letter in "udt"})
    if "auto_phases" in settings:
        out["phase_mode"] = "AUTO" if settings["auto_phases"] else "MANUAL"
    if "max_seconds" in settings:
        out["time_budget"] = (settings["max_seconds"] or 0.0) / 60.0
    if "face_type" in settings:
        out["face_type"] = settings["face_type"] or "auto"
    if "seed" in settings:
        out["seed"] = -1 if settings["seed"] is None else settings["seed"]
    return out
