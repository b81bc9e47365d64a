"""Polygon labels <-> the Mask datablock through the add-on's mask_editor: round trips in face and
frame space for square and non-square images, bezier sampling, and where Blender itself draws the
mask: a Color Balance modifier masked by the Mask datablock brightens an image strip, and the
brightened pixels are compared (in the test) with the polygon."""

import json
import math
import sys

import bpy

import _blender

folder = sys.argv[1]
sync = _blender.enable()
me = _blender.submodule("mask_editor")
out = {}

LABEL = [{"include": True, "points": [[0.1, 0.2], [0.8, 0.15], [0.7, 0.9], [0.2, 0.8]]},
         {"include": False, "points": [[0.3, 0.3], [0.5, 0.3], [0.4, 0.5]]},
         {"include": True, "points": [[0.35, 0.35], [0.45, 0.35], [0.4, 0.45]]}]

mask = me.ensure_mask()
out["fresh_layers"] = [[layer.name, layer.blend] for layer in mask.layers]


def round_trip(space, width, height, scale):
    polygons = [{"include": p["include"], "points": [[x * scale[0], y * scale[1]] for x, y in p["points"]]}
                for p in LABEL]
    me.write_mask(mask, polygons, space, width, height)
    layers = [[layer.name, layer.blend, len(layer.splines),
               [sp.use_cyclic and sp.use_fill for sp in layer.splines],
               sorted({pt.handle_type for sp in layer.splines for pt in sp.points})] for layer in mask.layers]
    back, skipped = me.read_mask(mask, space, width, height)
    unit = 1.0 if space == "face" else max(width, height)
    error = max(abs(a - b) / unit for p, q in zip(polygons, back) for u, v in zip(p["points"], q["points"])
                for a, b in zip(u, v))
    return {"layers": layers, "includes": [q["include"] for q in back], "counts": [len(q["points"]) for q in back],
            "error": error, "skipped": skipped}


out["face_square"] = round_trip("face", 256, 256, (1, 1))
out["face_any_size"] = round_trip("face", 512, 512, (1, 1))
out["frame_wide"] = round_trip("frame", 640, 360, (640, 360))
out["frame_tall"] = round_trip("frame", 360, 640, (360, 640))

# Pure conversions: the corners of a wide frame land where DESIGN.md says
out["corners_wide"] = [list(me.pixels_to_mask(p, 200, 100)) for p in ((0, 0), (200, 100), (100, 50))]
out["corners_tall"] = [list(me.pixels_to_mask(p, 100, 200)) for p in ((0, 0), (100, 200))]

# A label starting with an exclusion keeps its order
me.write_mask(mask, [LABEL[1], LABEL[0]], "face", 1, 1)
out["exclude_first"] = [[layer.name, len(layer.splines)] for layer in mask.layers]
out["exclude_first_back"] = [p["include"] for p in me.read_mask(mask, "face", 1, 1)[0]]

# Bezier sampling: a circle drawn with smooth handles comes back as a curve, not as its 4 points
circle = mask.layers["Include"].splines.new()
circle.use_cyclic = True
circle.points.add(3)
k = 0.5522847498 * 0.25
for point, (cx, cy, dx, dy) in zip(circle.points, ((0.75, 0.5, 0, 1), (0.5, 0.75, -1, 0), (0.25, 0.5, 0, -1),
                                                   (0.5, 0.25, 1, 0))):
    point.handle_type = "FREE"
    point.co = (cx, cy)
    point.handle_left = (cx - dx * k, cy - dy * k)
    point.handle_right = (cx + dx * k, cy + dy * k)
polygons, _ = me.read_mask(mask, "face", 1, 1)
ring = polygons[-1]["points"]
radii = [math.hypot(x - 0.5, y - 0.5) for x, y in ring]
out["circle"] = {"points": len(ring), "min_r": min(radii), "max_r": max(radii)}
out["sampled"] = me.sample_spline([((0, 0), (0, 0), (1, 0)), ((3, 0), (2, 0), (3, 0))], cyclic=False)
out["too_few"] = me.read_mask(_blender.submodule("mask_editor").ensure_mask("Tiny"), "face", 1, 1)[1]
tiny = bpy.data.masks["Tiny"]
tiny.layers["Include"].splines.new().points.add(1)
out["too_few"] = me.read_mask(tiny, "face", 1, 1)[1]

# Blender draws the mask: a Color Balance modifier masked by the Mask datablock (input 'ID')
# brightens only inside the polygon. The image is not square, so the aspect handling is tested.
W, H = 96, 64
image = bpy.data.images.new("flat", W, H)
image.pixels.foreach_set([0.2, 0.2, 0.2, 1.0] * W * H)
image.filepath_raw = f"{folder}/flat.png"
image.file_format = "PNG"
image.save()
frame_polygon = [{"include": True, "points": [[20.0, 10.0], [80.0, 16.0], [60.0, 56.0], [12.0, 40.0]]}]
me.write_mask(mask, frame_polygon, "frame", W, H)
scene = _blender.new_scene()
scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = W, H, 100
scene.frame_start = scene.frame_end = 1
strip = scene.sequence_editor.strips.new_image(name="flat", filepath=f"{folder}/flat.png", channel=1, frame_start=1)
modifier = strip.modifiers.new(name="m", type="COLOR_BALANCE")
modifier.input_mask_type = "ID"
modifier.input_mask_id = mask
modifier.color_balance.gain = (3.0, 3.0, 3.0)
scene.render.filepath = f"{folder}/masked.png"
scene.render.image_settings.file_format = "PNG"
with bpy.context.temp_override(scene=scene):
    bpy.ops.render.render(write_still=True)
out["render"] = f"{folder}/masked.png"
out["frame_polygon"] = frame_polygon[0]["points"]
_blender.disable()
_blender.emit(**out)
