"""Blender layer: training operators. Start, Pause/Resume, Save Now, Backup Now, Stop, Apply Options,
a preset, Export .dfm, and the pictures in an Image Editor.

Each validates, sends the request train_view builds (or a job.start), and reports; the answers and
the job's progress arrive through the drain in sync.py.
"""

from __future__ import annotations

import bpy
from bpy.props import EnumProperty

from . import mask_editor, mirror, strips, sync, train_view
from .operators import request, send_requests
from .train_options import PRESET_ITEMS

KINDS = train_view.TRAIN_KINDS
COMMAND_ITEMS = [
    ("pause", "Pause", "Stop stepping but keep the model and data loaded; Resume goes on at once"),
    ("resume", "Resume", "Go on training after a pause"),
    ("save", "Save Now", "Write the checkpoint now (it is also saved regularly and on Stop)"),
    ("backup", "Backup Now", "Copy the model and its pictures into a dated backup folder beside it")]


def _settings(context):
    return strips.sequencer_scene(context).swapline


def _live_job(op, context):
    """The training job a command goes to (the one queued, running or paused); None after reporting."""
    jobs = mirror.active_jobs(sync.status(context), *KINDS)
    if not jobs:
        op.report({"ERROR"}, "No training is running: press Start first")
        return None
    return max(jobs, key=lambda job: job.created)


class SWAPLINE_OT_train(bpy.types.Operator):
    """Start training the model on the source and destination facesets with the options below
    (resumes from its last checkpoint)"""

    bl_idname = "swapline.train"
    bl_label = "Start Training"

    def execute(self, context):
        settings = _settings(context)
        pretrain = settings.train.pretrain
        names = {"model": settings.model.strip(), "source faceset": settings.source_faceset.strip()}
        if not pretrain:
            names["destination faceset"] = settings.destination_faceset.strip()
        for what, value in names.items():
            if not value:
                self.report({"ERROR"}, f"Set the {what} name first")
                return {"CANCELLED"}
        if mirror.active_jobs(sync.status(context), *KINDS):
            self.report({"ERROR"}, "Training is already running: stop it first")
            return {"CANCELLED"}
        kind, params = train_view.job_params(settings, names["source faceset"],
                                             names.get("destination faceset", ""))
        tag = {"purpose": "train", "kind": kind, "label": f"{kind.capitalize()} {names['model']}"}
        if not request(self, context, "job.start", {"kind": kind, "params": params}, tag):
            return {"CANCELLED"}
        self.report({"INFO"}, f"{'Pretraining' if pretrain else 'Training'} '{names['model']}'")
        return {"FINISHED"}


class SWAPLINE_OT_train_stop(bpy.types.Operator):
    """Stop training; the engine saves a checkpoint first"""

    bl_idname = "swapline.train_stop"
    bl_label = "Stop Training"

    def execute(self, context):
        running = mirror.active_jobs(sync.status(context), *KINDS)
        if not running:
            self.report({"ERROR"}, "No training job is running")
            return {"CANCELLED"}
        for job in running:
            tag = {"purpose": "cancel", "kind": job.kind, "label": "Stop training"}
            if not request(self, context, "job.cancel", {"id": job.job_id}, tag):
                return {"CANCELLED"}
        return {"FINISHED"}


class SWAPLINE_OT_train_command(bpy.types.Operator):
    """Tell the running training to pause, resume, save a checkpoint or make a backup now"""

    bl_idname = "swapline.train_command"
    bl_label = "Training Command"

    command: EnumProperty(items=COMMAND_ITEMS)

    @classmethod
    def description(cls, context, properties):
        return next(text for key, _, text in COMMAND_ITEMS if key == properties.command)

    def execute(self, context):
        job = _live_job(self, context)
        if job is None:
            return {"CANCELLED"}
        return send_requests(self, context, [train_view.command(job.job_id, self.command)])


class SWAPLINE_OT_train_apply(bpy.types.Operator):
    """Send the options a running training can change (learning rate, losses, augmentation, GAN and
    style powers, phase, pace) to it now; model shape options need a new start"""

    bl_idname = "swapline.train_apply"
    bl_label = "Apply Options"

    def execute(self, context):
        job = _live_job(self, context)
        if job is None:
            return {"CANCELLED"}
        result = send_requests(self, context, [train_view.apply_options(job.job_id, _settings(context))])
        if result == {"FINISHED"}:
            self.report({"INFO"}, "Options sent to the running training")
        return result


class SWAPLINE_OT_train_preset(bpy.types.Operator):
    """Set the training options from a preset (a starting point; change any option afterwards)"""

    bl_idname = "swapline.train_preset"
    bl_label = "Training Preset"
    bl_options = {"REGISTER", "UNDO"}

    preset: EnumProperty(items=PRESET_ITEMS)

    def execute(self, context):
        scene = strips.sequencer_scene(context)
        if train_view.apply_preset(scene, self.preset):
            return {"FINISHED"}
        # the engine owns the presets: ask once, the answer sets the options (see train_view)
        return send_requests(self, context, [train_view.ask_presets(self.preset, scene.name)])


class SWAPLINE_OT_train_export_dfm(bpy.types.Operator):
    """Export the trained model as a DeepFaceLab .dfm file for DeepFaceLive (written by the engine)"""

    bl_idname = "swapline.train_export_dfm"
    bl_label = "Export .dfm"

    def execute(self, context):
        settings = _settings(context)
        model = settings.model.strip()
        path = settings.train.dfm_path.strip()
        if not model or not path:
            self.report({"ERROR"}, "Set the model name and the .dfm file first")
            return {"CANCELLED"}
        output = bpy.path.abspath(path)
        if not output.lower().endswith(".dfm"):
            output += ".dfm"
        tag = {"purpose": "export_dfm", "kind": "export_dfm", "label": f"Export {model}"}
        if not request(self, context, "job.start", {"kind": "export_dfm", "params": {"model": model,
                                                                                      "output": output}}, tag):
            return {"CANCELLED"}
        self.report({"INFO"}, f"Exporting '{model}' to {output}")
        return {"FINISHED"}


class SWAPLINE_OT_train_images(bpy.types.Operator):
    """Fetch the model's latest preview and loss graph from the engine"""

    bl_idname = "swapline.train_images"
    bl_label = "Refresh Pictures"

    def execute(self, context):
        state = sync.status(context).train
        model = state.model or _settings(context).model.strip()
        if not model:
            self.report({"ERROR"}, "Set the model name first")
            return {"CANCELLED"}
        state.model = model
        return send_requests(self, context, train_view.ask_images(state, model, max(state.preview_version, 0)))


class SWAPLINE_OT_train_show_image(bpy.types.Operator):
    """Open the training picture in an Image Editor (a new window), to see it full size"""

    bl_idname = "swapline.train_show_image"
    bl_label = "Open in Image Editor"

    which: EnumProperty(items=[("PREVIEW", "Preview", "The faces: source, reconstructions, the swap"),
                               ("GRAPH", "Loss Graph", "The loss over the iterations")])

    def execute(self, context):
        image = train_view.image_of(self.which)
        if image is None:
            self.report({"ERROR"}, "No training pictures yet: they come while training runs")
            return {"CANCELLED"}
        return mask_editor.open_image(self, context, image)


classes = (SWAPLINE_OT_train, SWAPLINE_OT_train_stop, SWAPLINE_OT_train_command, SWAPLINE_OT_train_apply,
           SWAPLINE_OT_train_preset, SWAPLINE_OT_train_export_dfm, SWAPLINE_OT_train_images,
           SWAPLINE_OT_train_show_image)
