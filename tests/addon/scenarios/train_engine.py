"""Training through the add-on against a real local engine: a preset fills the options, Start sends
them all, progress and the pictures arrive (loaded into Blender images), Pause and Resume change the
job's state, Apply sends the soft options, Save and Backup go to the job, the preview opens in an
Image Editor, Stop ends it, and the model exports as .dfm. Then a new model with Hold Back set:
Start sends it as the job's `holdout`, and the engine keeps those faces out of training."""

import sys
import time

import bpy

import _blender
import _layout

workspace, dfm = sys.argv[1:3]
sync = _blender.enable()
tv = _blender.submodule("train_view")
thumbnails = _blender.submodule("thumbnails")
panels = _blender.submodule("panels")
train_panels = _blender.submodule("train_panels")
scene = _blender.new_scene()
settings, options = scene.swapline, scene.swapline.train
settings.workspace = workspace
settings.source_faceset, settings.destination_faceset, settings.model = "src", "dst", "m"
wm = bpy.context.window_manager
st = wm.swapline
out = {"problems": []}


def draw():
    recording = _layout.Recording()
    recording.draw(panels.SEQUENCER_PT_swapline_train)
    for cls in train_panels.classes:
        recording.draw(cls)
    out["problems"] += recording.problems
    return recording


def until(predicate, what, timeout=90.0):
    _blender.check(_blender.drain_until(sync, predicate, timeout), f"{what} (state {st.train.state}, "
                   f"iteration {st.train.iteration}, error {st.last_error!r})")


def job():
    return next(j for j in st.jobs if j.job_id == st.train.job_id)


bpy.ops.swapline.connect()
sync.wait_for_connection(timeout=180)
sent = []
_request = sync.link().request
sync.link().request = lambda op, args=None, tag=None: (sent.append([op, args]), _request(op, args, tag))[1]

out["start_unconnected_job"] = _blender.call(bpy.ops.swapline.train_apply)[1]
out["preset"] = sorted(bpy.ops.swapline.train_preset(preset="quick"))
until(lambda: options.arch_u, "the quick preset never arrived")
out["after_preset"] = [settings.resolution, options.arch_base, options.arch_u, options.arch_d, options.arch_t,
                       options.ae_dims, options.face_type, options.preset, sent[-1][0]]
out["preset_again"] = [sorted(bpy.ops.swapline.train_preset(preset="256_wf")), len(sent),
                       settings.resolution, options.arch_t, options.face_type]  # cached: no request

# a tiny model, fast on a CPU
settings.resolution, settings.batch_size, settings.iterations, settings.time_budget = 32, 2, 100_000, 3.0
options.face_type, options.arch_base, options.arch_u, options.arch_d, options.arch_t = "auto", "df", False, False, False
options.ae_dims, options.e_dims, options.d_dims, options.d_mask_dims = 32, 8, 8, 4
options.workers, options.device, options.seed = 0, "cpu", 0
options.preview_every_s, options.report_every_s, options.save_every_s = 0.3, 0.05, 600.0
out["idle_buttons"] = [op for op, _ in draw().operators]
out["start"] = sorted(bpy.ops.swapline.train())
out["start_sent"] = sent[-1]
until(lambda: st.train.shown_version >= 1 and st.train.iteration > 0, "no pictures arrived")
preview, graph = bpy.data.images.get(tv.PREVIEW_IMAGE), bpy.data.images.get(tv.GRAPH_IMAGE)
out["images"] = [list(preview.size), list(graph.size),
                 list(thumbnails.preview(tv.GROUP, st.train.preview_path).image_size),
                 [op for op, _ in sent].count("train.images") >= 1]
recording = draw()
out["running_labels"] = recording.labels
out["running_buttons"] = [[op, values] for op, values in recording.operators]
out["running_icons"] = len(recording.icons)

bpy.ops.swapline.train_command(command="pause")
until(lambda: st.train.state == "paused" and job().state == "paused", "never paused")
paused_at = st.train.iteration
time.sleep(1.0)
sync.drain(budget=None)
out["paused"] = [st.train.iteration - paused_at, st.train.eta, [op for op, _ in draw().operators]]
bpy.ops.swapline.train_command(command="resume")
until(lambda: st.train.state == "running" and st.train.iteration > paused_at + 2, "never resumed")
out["resumed"] = job().state

options.learning_rate, options.phase = 1e-4, "refine"
out["apply"] = sorted(bpy.ops.swapline.train_apply())
out["apply_sent"] = sent[-1]
until(lambda: st.train.phase == "refine", "the phase never changed")
out["save"] = sorted(bpy.ops.swapline.train_command(command="save"))
out["backup"] = sorted(bpy.ops.swapline.train_command(command="backup"))
out["commands_sent"] = [args.get("command") for op, args in sent if op == "job.control"]
version = st.train.shown_version
until(lambda: st.train.shown_version > version, "no newer pictures")
out["newer_pictures"] = [st.train.preview_path != "", list(bpy.data.images[tv.PREVIEW_IMAGE].size)]

out["show"] = sorted(bpy.ops.swapline.train_show_image(which="GRAPH"))
editors = [a for w in wm.windows for a in w.screen.areas if a.type == "IMAGE_EDITOR"]
out["editor"] = [editors[0].spaces.active.image.name if editors else None]

out["stop"] = sorted(bpy.ops.swapline.train_stop())
[stopped] = sync.wait_for_jobs("train", timeout=120, check=False)
sync.drain(budget=None)
out["stopped"] = [stopped["state"], st.train.state, st.last_error]

options.dfm_path = dfm
out["export"] = sorted(bpy.ops.swapline.train_export_dfm())
out["export_sent"] = sent[-1]
exported = sync.wait_for_jobs("export_dfm", timeout=180, check=False)
out["exported"] = [[j["state"], j.get("result"), j.get("error")] for j in exported]

# a new model holding faces back for the quality report: a few iterations
settings.model, settings.iterations, options.holdout = "h", 2, 0.25  # of 4 faces a side: the last one
out["held"] = sorted(bpy.ops.swapline.train())
out["held_sent"] = sent[-1]
out["held_trained"] = [[j["state"], j.get("error")] for j in sync.wait_for_jobs("train", timeout=180, check=False)]
out["last_error"] = st.last_error
bpy.ops.swapline.disconnect()
sync.drain(budget=None)
_blender.emit(**out)
