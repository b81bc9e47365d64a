"""Blender layer: the mask editor's and the mask previews' traffic. Which requests count, open, save
and preview labels, and how the engine's answers are written into `window_manager.swapline.masks`.

As in faceset_view, nothing here sends: operators and the drain (sync.py) send the (op, args, tag)
requests built here, and only the drain calls `apply_reply`, `apply_failure` and `load_previews`.
Opening a face on its aligned crop is one request, `mask.label.get`, whose answer names the crop.
Only drawing on the whole frame asks for `mask.frame` first (the engine decodes the video for it,
which is slow, and impossible for faces imported without their video); its answer then asks for the
label in frame space. The label's answer fills the Mask datablock and shows it.

With the previews on, a saved face's overlay alone is asked for again and replaced; the other
faces keep their loaded icons (the engine names a changed mask's preview anew).
"""

from __future__ import annotations

import os

import bpy

from . import faceset_view, mask_editor, thumbnails

KIND = "mask"  # tag kind of every request made here: sync.wait_for_jobs("mask") waits for them
COUNT, OPEN, LABEL, SAVE, PREVIEW, REMOVE = ("mask_count", "mask_open", "mask_label", "mask_save", "mask_preview",
                                             "mask_remove")
_PURPOSES = (COUNT, OPEN, LABEL, SAVE, PREVIEW, REMOVE)
PREVIEWS = "masks"  # the thumbnails group of the mask overlays

Request = tuple[str, dict, dict]

_unloaded = False


def owns(tag: dict | None) -> bool:
    return bool(tag) and tag.get("purpose") in _PURPOSES


def _tag(purpose: str, faceset: str, **extra) -> dict:
    return {"purpose": purpose, "kind": KIND, "label": f"Masks of {faceset}" if faceset else "Masks",
            "faceset": faceset, **extra}


# Requests ----------------------------------------------------------------------------------------

def count(name: str, auto: bool = False) -> Request:
    return "mask.labels", {"faceset": name}, _tag(COUNT, name, **({"auto": True} if auto else {}))


def open_face(state, faceset: str, face_id: int, space: str) -> list[Request]:
    """Ask for face `face_id`'s label, on the frame after the frame itself (see the module docstring)."""
    state.edit, state.message = "LOADING", ""
    if space == "FRAME":
        return [("mask.frame", {"face": face_id}, _tag(OPEN, faceset, face=face_id, space=space))]
    return [_label(faceset, face_id, space)]


def _label(faceset: str, face_id: int, space: str) -> Request:
    return "mask.label.get", {"face": face_id, "space": space.lower()}, _tag(LABEL, faceset, face=face_id, space=space)


def save(state, polygons: list[dict], then: int | None = None, then_space: str = "", page_step: int = 0) -> Request:
    """Store the open face's label; `then`: the face to open (in `then_space`) once it is stored;
    `page_step` (1 or -1): turn the faceset page first and open its first (or last) face."""
    extra = {"then": then, "then_space": then_space or state.space} if then is not None else {}
    if page_step:
        extra = {"page_step": page_step, "then_space": then_space or state.space}
    args = {"face": state.face_id, "polygons": polygons, "space": state.space.lower()}
    return "mask.label.set", args, _tag(SAVE, state.open_faceset, face=state.face_id, polygons=len(polygons),
                                        **extra)


def clear(faceset: str, face_id: int) -> Request:
    return "mask.label.set", {"face": face_id, "polygons": [], "space": "face"}, _tag(SAVE, faceset, face=face_id,
                                                                                      polygons=0, cleared=True)


def previews(state, faces) -> list[Request]:
    """The overlays of the whole page (a page shown, Show Masks, masks applied or removed)."""
    face_ids = [int(face.face_id) for face in faces]
    if not state.show_previews or not face_ids:
        return []
    return [("mask.preview", {"faces": face_ids}, _tag(PREVIEW, state.faceset, faces=face_ids))]


def preview_of_face(state, view, face_id: int) -> list[Request]:
    """The overlay of one face of the page on show whose mask changed (a label saved or cleared)."""
    if not state.show_previews or face_id not in {face.face_id for face in view.faces}:
        return []
    return [("mask.preview", {"faces": [face_id]}, _tag(PREVIEW, state.faceset, faces=[face_id], one=True))]


def remove(faceset: str) -> Request:
    return "mask.remove", {"faceset": faceset}, _tag(REMOVE, faceset)


def turn_page(view, state, step: int, space: str) -> list[Request]:
    """Previous/Next past the page's end: ask for the neighbouring page; its answer opens the
    nearest face (see follow_faceset)."""
    view.offset = max(0, view.offset + step * faceset_view.PAGE_SIZE)
    state.edit, state.message = "LOADING", ""
    state.then_page, state.then_space = step, space
    return faceset_view.page(view)


def labelled_ids(state) -> set[int]:
    return {item.face_id for item in state.labelled}


def neighbour(view, face_id: int, step: int) -> int | None:
    """The face `step` places from `face_id` on the page on show, or None past either end. From a
    face not on this page (the page was turned), Next opens its first face and Previous its last."""
    ids = [face.face_id for face in view.faces]
    if face_id not in ids:
        return (ids[0] if step > 0 else ids[-1]) if ids else None
    index = ids.index(face_id) + step
    return ids[index] if 0 <= index < len(ids) else None


def first_to_label(view, state) -> int | None:
    """The selected face on show, else the first unlabelled one on the page, else the first."""
    on_page = [face.face_id for face in view.faces]
    selected = [item.face_id for item in view.selection if item.face_id in on_page]
    if selected:
        return selected[0]
    done = labelled_ids(state)
    return next((i for i in on_page if i not in done), on_page[0] if on_page else None)


# Answers (drain only) ----------------------------------------------------------------------------

def follow_faceset(status, op: str, tag: dict | None) -> list[Request]:
    """After a faceset browser answer: count the labels of a faceset just shown (once masks are in
    use), and overlay masks on a page just loaded when the previews are on."""
    view, state = status.faceset, status.masks
    if (tag or {}).get("purpose") != "faceset_view" or tag.get("faceset") != view.faceset:
        return []
    if op == "faceset.list" and view.state == "READY":
        if not state.faceset:  # masks not used in this session yet: the Masks panel offers counting
            return []
        if state.faceset != view.faceset:
            state.labelled.clear()
            state.counted = False
            state.faceset = view.faceset
        return [count(view.faceset, auto=True)]
    if op == "faceset.faces" and tag.get("generation") == view.generation:
        opening = []
        if state.then_page and view.faces:  # Previous/Next crossed a page: open its nearest face
            face = view.faces[0] if state.then_page > 0 else view.faces[len(view.faces) - 1]
            state.then_page, state.face_id = 0, face.face_id
            opening = open_face(state, view.faceset, face.face_id, state.then_space or "FACE")
        return opening + previews(state, view.faces)
    return []


def follow_job(status, job: dict) -> list[Request]:
    """A mask job just finished: what it changed is asked for again."""
    state, view = status.masks, status.faceset
    kind = job.get("kind")
    if job.get("state") != "done" or kind not in ("mask_train", "mask_apply"):
        return []
    result = job.get("result") or {}
    if kind == "mask_train":
        loss = result.get("loss")
        state.message = "Mask model trained" + (f": loss {float(loss):.4f}" if loss is not None else "") + \
            " · press Apply to use it"
        return []
    faces = int(result.get("faces") or 0)
    state.message = f"Learned masks applied to {faces} face{'s' if faces != 1 else ''}"
    return previews(state, view.faces)


def apply_reply(status, op: str, result, tag: dict) -> list[Request]:
    """Write one answer into the mask state (and the Mask datablock); returns follow-up requests."""
    state = status.masks
    result = result if isinstance(result, dict) else {}
    purpose = tag.get("purpose")
    if purpose == COUNT:
        _write_counts(state, tag.get("faceset", ""), result)
    elif purpose == OPEN:
        if tag.get("face") != state.face_id or state.edit != "LOADING":
            return []  # another face was asked for meanwhile
        state.image = str(result.get("image") or "")
        state.crop = str(result.get("crop") or "")
        state.width, state.height = int(result.get("width") or 0), int(result.get("height") or 0)
        state.size = int(result.get("size") or 0)
        return [_label(tag.get("faceset", ""), state.face_id, str(tag.get("space") or "FRAME"))]
    elif purpose == LABEL:
        if tag.get("face") == state.face_id and state.edit == "LOADING":
            space = str(tag.get("space") or "FACE")
            if space == "FACE":  # no mask.frame asked: the label's answer says where the crop is
                state.image, state.crop = "", str(result.get("crop") or "")
                state.size = int(result.get("size") or 0)
            _open(state, space, list(result.get("polygons") or ()))
    elif purpose == SAVE:
        return _saved(status, result, tag)
    elif purpose == PREVIEW and tag.get("one"):
        _update_previews(state, result)
    elif purpose == PREVIEW:
        _write_previews(state, tag.get("faces") or (), result)
    elif purpose == REMOVE:
        removed = int(result.get("removed") or 0)
        state.message = f"Removed {removed} learned mask{'s' if removed != 1 else ''}"
        return previews(state, status.faceset.faces)
    return []


def apply_failure(status, op: str, code: str, message: str, tag: dict | None) -> bool:
    """Note a refused request; True when it needs no error report (the add-on's own counting)."""
    if not owns(tag):
        return False
    state = status.masks
    if tag.get("purpose") in (OPEN, LABEL) and tag.get("face") == state.face_id:
        state.edit, state.face_id = "NONE", -1
    if tag.get("purpose") == COUNT and tag.get("auto"):
        state.counted = False  # an engine without mask ops, or a faceset not extracted yet
        return True
    state.message = f"{message}"
    return False


def _write_counts(state, faceset: str, result: dict) -> None:
    state.faceset = faceset
    state.labelled.clear()
    for face_id in sorted(int(i) for i in result.get("labelled") or ()):
        state.labelled.add().face_id = face_id
    state.labelled_count = int(result.get("count") or len(state.labelled))
    state.face_count = int(result.get("faces") or 0)
    state.counted = True


def _open(state, space: str, polygons: list[dict]) -> None:
    state.space = space
    path = state.image if space == "FRAME" else state.crop
    if not path or not os.path.isfile(path):
        state.edit = "NONE"
        state.message = f"The face image is not on this machine: {path or 'no path'}"
        return
    try:
        image = mask_editor.load_image(path)
    except RuntimeError as exc:  # not an image Blender can read
        state.edit, state.message = "NONE", f"Could not open the face image: {exc}"
        return
    width, height = (state.width, state.height) if space == "FRAME" else tuple(image.size)
    if space == "FRAME" and (width, height) != tuple(image.size):
        width, height = tuple(image.size)  # the frame as decoded here decides the mask's aspect
    state.width, state.height = int(width), int(height)
    mask = mask_editor.ensure_mask()
    mask_editor.write_mask(mask, polygons, space.lower(), width, height)
    state.edit = "OPEN"
    shown = mask_editor.show(bpy.context.window_manager, image, mask)
    where = "" if shown or bpy.app.background else ": open an Image Editor in Mask mode to draw"
    state.message = f"Face {state.face_id}: {len(polygons)} polygon{'s' if len(polygons) != 1 else ''}{where}"


def _saved(status, result: dict, tag: dict) -> list[Request]:
    state, view = status.masks, status.faceset
    face_id = int(tag.get("face") or 0)
    has_label = bool(tag.get("polygons"))
    have = labelled_ids(state)
    if has_label and face_id not in have:
        state.labelled.add().face_id = face_id
    elif not has_label and face_id in have:
        state.labelled.remove(next(i for i, item in enumerate(state.labelled) if item.face_id == face_id))
    if "count" in result:
        state.labelled_count = int(result["count"])
    if tag.get("cleared"):
        state.message = f"Cleared the label of face {face_id}"
        if face_id == state.face_id and state.edit == "OPEN":
            mask_editor.write_mask(mask_editor.ensure_mask(), [], "face", 1, 1)
    elif has_label:
        state.message = f"Saved face {face_id}"
    else:
        state.message = f"Face {face_id}: no polygons, label removed"
    follow = preview_of_face(state, view, face_id) if view.faceset == tag.get("faceset") else []
    if tag.get("then") is not None:
        state.face_id = int(tag["then"])
        return open_face(state, tag.get("faceset", ""), state.face_id, str(tag.get("then_space") or "FACE")) + follow
    if tag.get("page_step") and view.faceset == tag.get("faceset"):
        return turn_page(view, state, int(tag["page_step"]), str(tag.get("then_space") or "FACE"))
    return follow


def _write_previews(state, face_ids, result: dict) -> None:
    global _unloaded
    found, sources = result.get("previews") or {}, result.get("sources") or {}
    thumbnails.clear(PREVIEWS)
    state.previews.clear()
    for face_id in face_ids:
        item = state.previews.add()
        item.face_id = int(face_id)
        item.image = str(found.get(str(face_id)) or "")  # msgpack maps from the engine: string keys
        item.source = str(sources.get(str(face_id)) or "")
        item.icon_id = 0
        item.thumbnail = "PENDING"
    _unloaded = True


def _update_previews(state, result: dict) -> None:
    """Replace the overlays of the faces answered whose preview file changed; keep all others."""
    global _unloaded
    found, sources = result.get("previews") or {}, result.get("sources") or {}
    for item in state.previews:
        key = str(item.face_id)
        if key not in found:
            continue
        item.source = str(sources.get(key) or "")
        path = str(found[key] or "")
        if path != item.image:
            thumbnails.discard(PREVIEWS, item.image)
            item.image, item.icon_id, item.thumbnail = path, 0, "PENDING"
            _unloaded = True


def preview_of(state, face_id: int):
    for item in state.previews:
        if item.face_id == face_id:
            return item
    return None


def load_previews(state, deadline: float | None) -> int:
    """Load pending mask overlays until `deadline` (as faceset_view.load_thumbnails does)."""
    global _unloaded
    if not _unloaded:
        return 0
    loaded, done = thumbnails.load_pending(((state.previews, PREVIEWS),), deadline)
    _unloaded = not done
    return loaded
