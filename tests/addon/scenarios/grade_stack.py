"""Grade Face on a shot with a merge result (the result, its face layer, is graded): the grading
stack (Color Balance, Curves, Hue Correct), each masked by the shot's face matte; frames rendered with
each grade on and with none for the test to compare. Modifiers of the user's under our names are left
alone. Then a result whose shot has no matte yet: Grade Face asks for one and grades the result
when it lands."""

import sys

import bpy

import _blender

clip, layers, mattes, folder = sys.argv[1:5]
sync = _blender.enable()
EL = _blender.submodule("engine_link")
matte = _blender.submodule("matte")
strips = _blender.submodule("strips")
scene = _blender.new_scene()
editor = scene.sequence_editor
scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 64, 48, 100
scene.render.image_settings.file_format = "PNG"
scene.view_settings.view_transform = "Standard"  # pixels as in the files
shot = editor.strips.new_movie(name="Shot", filepath=clip, channel=1, frame_start=1)
shot.swapline_role = "DESTINATION"
LAYER = {"directory": layers, "pattern": "frame_%06d.png", "first_frame": 0, "count": 40}
MATTE = {"directory": mattes, "pattern": "matte_%06d.png", "first_frame": 0, "count": 40}
result = strips.place_result(scene, shot, LAYER)
result.blend_type = "ALPHA_OVER"
face_matte = matte.place(scene, shot, MATTE)
out = {}


def run(operator, **kwargs):
    found, error = _blender.call(operator, **kwargs)
    return error or sorted(found)


editor.active_strip = shot  # the shot: its face is in the merge result over it, which gets the grade
out["grade"] = run(bpy.ops.swapline.face_grade)
editor.active_strip = result
out["stack"] = [[m.name, m.type, m.input_mask_type, m.input_mask_strip.name if m.input_mask_strip else None]
                for m in result.modifiers]
out["shot_untouched"] = len(shot.modifiers)
balance, curves, hue = (result.modifiers[name] for name, _ in matte.GRADE_STACK)
balance.color_balance.gain = (2.0, 2.0, 2.0)
combined = curves.curve_mapping.curves[3]
combined.points[-1].location = (1.0, 0.4)  # the top of the combined curve pulled down: darker
curves.curve_mapping.update()
for point in hue.curve_mapping.curves[1].points:  # saturation curve to 0: grey
    point.location = (point.location[0], 0.0)
hue.curve_mapping.update()
balance.color_balance.gain = (2.0, 2.0, 2.0)
# the user's settings survive a second Grade Face (modifiers are reused by name)
out["grade_again"] = run(bpy.ops.swapline.face_grade)
out["kept"] = [len(result.modifiers), list(balance.color_balance.gain), round(combined.points[-1].location[1], 3)]

renders = {}
scene.frame_set(10)
for name, on in (("none", ()), ("balance", (balance,)), ("curves", (curves,)), ("hue", (hue,)),
                 ("all", (balance, curves, hue))):
    for modifier in (balance, curves, hue):
        modifier.mute = modifier not in on
    scene.render.filepath = f"{folder}/{name}.png"
    with bpy.context.temp_override(scene=scene):
        bpy.ops.render.render(write_still=True)
    renders[name] = scene.render.filepath
out["renders"] = renders

# The user's own modifiers under our names but of other kinds: ours are made beside them, once
plain = editor.strips.new_effect(name="Plain", type="COLOR", channel=6, frame_start=1, length=10)
plain.modifiers.new(name="Face Grade", type="CURVES")
plain.modifiers.new(name="Face Curves", type="BRIGHT_CONTRAST")
first = matte.add_grade(plain, face_matte)
second = matte.add_grade(plain, face_matte)
out["same_names"] = {"modifiers": sorted([m.name, m.type] for m in plain.modifiers),
                     "returned": [first.type, second.type, first == second]}

# A result whose shot has no matte yet
link = sync.link()
sent = []
link.state = EL.CONNECTED
link.request = lambda op, args=None, tag=None: sent.append((op, dict(args or {}), dict(tag or {})))
other = editor.strips.new_movie(name="Other", filepath=clip, channel=5, frame_start=100)
other.swapline_role = "DESTINATION"
other_result = strips.place_result(scene, other, LAYER)
editor.active_strip = other_result
out["no_matte"] = run(bpy.ops.swapline.face_grade)
[(op, args, tag)] = sent
out["no_matte_sent"] = [op, args["kind"], tag.get("strip"), tag.get("grade"), tag.get("grade_on")]


def job(state, **extra):
    return {"id": "m1", "kind": "mask_matte", "state": state, "created": 1.0, "params": {}, "stats": {},
            "result": None, "error": None, **extra}


link.inbox.put(EL.JobUpdate(job("queued"), tag))
link.inbox.put(EL.JobUpdate(job("done", result=MATTE)))
sync.drain(budget=None)
landed = matte.matte_of(scene, "Other")
out["on_arrival"] = {"result": [[m.type, m.input_mask_strip == landed] for m in other_result.modifiers],
                     "shot": len(other.modifiers)}
link.state = EL.DISCONNECTED
_blender.disable()
_blender.emit(**out)
