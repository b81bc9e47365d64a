"""Blender layer: polygon labels <-> a bpy Mask datablock, and the Image Editor that shows it.

A label is a list of polygons `{"include": bool, "points": [[x, y], ...]}` in the engine's "face"
space (fractions of the aligned crop, y down) or "frame" space (frame pixels, y down). Blender's
mask coordinates are normalised to the longer image side, centred and y up (DESIGN.md):
`px = (x - 0.5) * max(W, H) + W / 2`, `py = (y - 0.5) * max(W, H) + H / 2`. The pure conversions
below need no Image Editor and are what the tests pin down.

Layers keep the label's order: a run of include polygons goes into an additive layer, a run of
exclude polygons into a subtractive one ("Include", "Exclude", "Include 2", ...). A fresh mask always
has "Include" and "Exclude" for the user to draw into.
"""

from __future__ import annotations

import os

import bpy

MASK_NAME = "Swapline Face Mask"
IMAGE_NAME = "Swapline Face"
INCLUDE, EXCLUDE = "Include", "Exclude"
BLEND = {True: "MERGE_ADD", False: "MERGE_SUBTRACT"}
CURVE_STEPS = 8  # samples per curved bezier segment when a drawn spline is saved
MAX_POINTS = 4096  # the engine's limit per polygon

Point = tuple[float, float]


# Pure coordinate conversion ------------------------------------------------------------------------

def to_pixels(point, space: str, width: int, height: int) -> Point:
    """A label point -> image pixels (continuous, y down). Face space is scaled by the crop side."""
    x, y = float(point[0]), float(point[1])
    return (x * width, y * height) if space == "face" else (x, y)


def from_pixels(point: Point, space: str, width: int, height: int) -> list[float]:
    x, y = point
    return [x / width, y / height] if space == "face" else [x, y]


def pixels_to_mask(point: Point, width: int, height: int) -> Point:
    """Image pixels (y down) -> Blender mask coordinates (y up, normalised to the longer side)."""
    side = max(width, height)
    px, py = point
    return (px - width / 2) / side + 0.5, (height / 2 - py) / side + 0.5


def mask_to_pixels(point: Point, width: int, height: int) -> Point:
    side = max(width, height)
    mx, my = point
    return (mx - 0.5) * side + width / 2, height / 2 - (my - 0.5) * side


def label_to_mask(point, space: str, width: int, height: int) -> Point:
    return pixels_to_mask(to_pixels(point, space, width, height), width, height)


def mask_to_label(point: Point, space: str, width: int, height: int) -> list[float]:
    return from_pixels(mask_to_pixels(point, width, height), space, width, height)


def sample_spline(points: list[tuple[Point, Point, Point]], cyclic: bool = True,
                  steps: int = CURVE_STEPS) -> list[Point]:
    """Outline of a bezier spline given as (co, handle_left, handle_right) per point.

    Straight segments (both handles on the chord: VECTOR handles, or a polygon typed in) add only
    their start point, so a polygon round-trips exactly; a curved segment adds `steps` samples so
    the curve the user drew is kept.
    """
    outline: list[Point] = []
    count = len(points)
    for index in range(count if cyclic else count - 1):
        p0, _, h0 = points[index]
        p3, h3, _ = points[(index + 1) % count]
        outline.append(tuple(p0))
        if _straight(p0, h0, h3, p3):
            continue
        for step in range(1, steps):
            t = step / steps
            outline.append(_bezier(p0, h0, h3, p3, t))
    if not cyclic and count:
        outline.append(tuple(points[-1][0]))
    return outline


def _bezier(p0, p1, p2, p3, t: float) -> Point:
    u = 1.0 - t
    a, b, c, d = u * u * u, 3 * u * u * t, 3 * u * t * t, t * t * t
    return (a * p0[0] + b * p1[0] + c * p2[0] + d * p3[0], a * p0[1] + b * p1[1] + c * p2[1] + d * p3[1])


def _straight(p0, p1, p2, p3, tolerance: float = 1e-6) -> bool:
    """Both handles lie on the segment p0-p3 (within `tolerance` of its length)."""
    dx, dy = p3[0] - p0[0], p3[1] - p0[1]
    length = (dx * dx + dy * dy) ** 0.5
    if length < 1e-12:
        return True
    for hx, hy in (p1, p2):
        if abs((hx - p0[0]) * dy - (hy - p0[1]) * dx) / length > tolerance * max(length, 1e-3):
            return False
    return True


# The Mask datablock --------------------------------------------------------------------------------

def ensure_mask(name: str = MASK_NAME):
    mask = bpy.data.masks.get(name) or bpy.data.masks.new(name)
    if not len(mask.layers):
        write_mask(mask, [], "face", 1, 1)
    return mask


def _new_layer(mask, name: str, include: bool):
    layer = mask.layers.new(name=name)
    layer.blend = BLEND[include]
    layer.use_fill_overlap = True  # an include polygon drawn over another one stays filled
    return layer


def write_mask(mask, polygons: list[dict], space: str, width: int, height: int) -> None:
    """Replace the mask's layers with `polygons`: one layer per run of include or exclude polygons,
    in label order (see the module docstring); empty "Include"/"Exclude" layers are added last."""
    mask.layers.clear()
    used = {True: 0, False: 0}
    layer, previous = None, None
    for polygon in polygons:
        include = bool(polygon.get("include", True))
        if layer is None or include != previous:
            used[include] += 1
            base = INCLUDE if include else EXCLUDE
            layer = _new_layer(mask, base if used[include] == 1 else f"{base} {used[include]}", include)
            previous = include
        _add_spline(layer, [label_to_mask(p, space, width, height) for p in polygon["points"]])
    for name, include in ((INCLUDE, True), (EXCLUDE, False)):
        if mask.layers.get(name) is None:
            _new_layer(mask, name, include)
    mask.layers.active = mask.layers[INCLUDE]


def _add_spline(layer, coords: list[Point]) -> None:
    spline = layer.splines.new()
    spline.use_cyclic = True
    spline.use_fill = True
    spline.points.add(len(coords) - 1)
    for point, co in zip(spline.points, coords):
        point.co = co
    # Only once every point is in place: VECTOR handles are computed from the neighbours.
    for point in spline.points:
        point.handle_type = "VECTOR"


def read_mask(mask, space: str, width: int, height: int) -> tuple[list[dict], list[str]]:
    """The mask's splines as label polygons (layer order, then spline order), and what was skipped."""
    polygons, skipped = [], []
    for layer in mask.layers:
        include = layer.blend not in ("MERGE_SUBTRACT", "SUBTRACT")
        for number, spline in enumerate(layer.splines, 1):
            points = [(tuple(p.co), tuple(p.handle_left), tuple(p.handle_right)) for p in spline.points]
            outline = sample_spline(points, cyclic=True) if points else []
            if len(outline) < 3:
                skipped.append(f"{layer.name} shape {number}: fewer than 3 points")
                continue
            if len(outline) > MAX_POINTS:
                outline = outline[::-(-len(outline) // MAX_POINTS)]
            polygons.append({"include": include,
                             "points": [mask_to_label(p, space, width, height) for p in outline]})
    return polygons, skipped


# The face image and the Image Editor ---------------------------------------------------------------

def load_image(path: str):
    """The face image (crop or frame) as one reused bpy image, reloaded from `path`."""
    image = bpy.data.images.get(IMAGE_NAME)
    if image is not None and os.path.normpath(bpy.path.abspath(image.filepath)) != os.path.normpath(path):
        bpy.data.images.remove(image)
        image = None
    if image is None:
        image = bpy.data.images.load(path, check_existing=False)
        image.name = IMAGE_NAME
    else:
        image.reload()
    return image


def image_editors(wm) -> list:
    """Every Image Editor area in the open windows, the one already showing our mask first."""
    found = []
    for window in wm.windows if wm else ():
        for area in window.screen.areas:
            if area.type == "IMAGE_EDITOR":
                found.append((window, area))
    found.sort(key=lambda wa: getattr(wa[1].spaces.active, "mask", None) is None
               or wa[1].spaces.active.mask.name != MASK_NAME)
    return found


def open_editor(context):
    """Make sure an Image Editor is open: a new window (the user's layout stays as it is), else the
    largest area that is not a sequencer turns into one. Returns the area, or None without a window."""
    wm = context.window_manager
    found = image_editors(wm)
    if found:
        return found[0][1]
    window = context.window or (wm.windows[0] if wm.windows else None)
    if window is None:
        return None
    if not bpy.app.background:  # no new windows without a UI
        before = set(wm.windows[:])
        try:
            with context.temp_override(window=window):
                bpy.ops.wm.window_new()
        except RuntimeError:
            pass
        new = [w for w in wm.windows if w not in before]
        if new:
            area = max(new[0].screen.areas, key=lambda a: a.width * a.height)
            area.type = "IMAGE_EDITOR"
            return area
    others = [a for a in window.screen.areas if a.type != "SEQUENCE_EDITOR"]
    if not others:
        return None
    area = max(others, key=lambda a: a.width * a.height)
    area.type = "IMAGE_EDITOR"
    return area


def open_image(operator, context, image) -> set:
    """An operator's end that shows `image` full size in an Image Editor (opened as open_editor does)."""
    area = open_editor(context)
    if area is None:
        operator.report({"ERROR"}, "No window to open an Image Editor in")
        return {"CANCELLED"}
    area.spaces.active.image = image
    area.tag_redraw()
    return {"FINISHED"}


def show(wm, image, mask) -> bool:
    """Show `image` with `mask` in Mask mode in the first Image Editor; False when none is open."""
    found = image_editors(wm)
    for window, area in found[:1]:
        space = area.spaces.active
        space.image = image
        space.mode = "MASK"
        space.mask = mask
        region = next((r for r in area.regions if r.type == "WINDOW"), None)
        if region is not None and not bpy.app.background:
            try:  # fit the face into the editor; a courtesy, drawing works without it
                with bpy.context.temp_override(window=window, area=area, region=region):
                    bpy.ops.image.view_all(fit_view=True)
            except RuntimeError:
                pass
        area.tag_redraw()
    return bool(found)
