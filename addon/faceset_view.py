"""Blender layer: the faceset browser's traffic. Which requests show a faceset or act on it, and how
the engine's answers are written into `window_manager.swapline.faceset`.

Nothing here sends: operators and the drain (sync.py) send the (op, args, tag) requests built here,
and only the drain calls `apply_reply`, `apply_failure` and `load_thumbnails`. An action's answer
can ask for more (Best N answers with faces to drop, which are then deleted; a deletion answers
with a refresh); `apply_reply` returns those follow-up requests for the drain to send.
"""

from __future__ import annotations

from . import thumbnails

PAGE_SIZE = 48
KIND = "faceset"  # tag kind of every request made here: sync.wait_for_jobs("faceset") waits for them
VIEW, DELETE, CHOOSE, BEST, KEEP = "faceset_view", "faceset_delete", "faceset_choose", "faceset_best", "faceset_keep"
_PURPOSES = (VIEW, DELETE, CHOOSE, BEST, KEEP)

Request = tuple[str, dict, dict]

_unloaded = False  # some thumbnail may still be PENDING: spares the drain a scan on every tick


def faceset_name(view, settings) -> str:
    """The name of the faceset the view is set to browse (from the scene's Extract settings)."""
    return (settings.source_faceset if view.which == "SOURCE" else settings.destination_faceset).strip()


def owns(tag: dict | None) -> bool:
    return bool(tag) and tag.get("purpose") in _PURPOSES


def _tag(purpose: str, faceset: str, **extra) -> dict:
    return {"purpose": purpose, "kind": KIND, "label": f"Faceset {faceset}", "faceset": faceset, **extra}


# Requests ----------------------------------------------------------------------------------------

def show(view, name: str, auto: bool = False) -> list[Request]:
    """(Re)load everything shown for faceset `name`: its counts, its people, the page of faces.

    `auto`: asked by the add-on itself (on connecting, after an extraction), so a failure only shows
    in the panel instead of being reported as an error.
    """
    if name != view.faceset:
        view.faceset, view.offset, view.show = name, 0, "CHOSEN"
        view.selection.clear()
        view.message = ""
        _clear(view)
        view.state = "LOADING"
    elif view.state != "READY":
        view.state = "LOADING"
    extra = {"auto": True} if auto else {}
    return [("faceset.list", {}, _tag(VIEW, name, **extra)),
            ("faceset.tracks", {"faceset": name}, _tag(VIEW, name, **extra)),
            *page(view, **extra)]


def page(view, **extra) -> list[Request]:
    """The request for the page of faces at `view.offset`, sorted and filtered as the view says."""
    view.generation += 1
    args = {"faceset": view.faceset, "everyone": view.show != "CHOSEN", "sort": view.sort,
            "limit": PAGE_SIZE, "offset": view.offset}
    if view.show == "TRACK":
        args["track"] = view.track
    return [("faceset.faces", args, _tag(VIEW, view.faceset, generation=view.generation, **extra))]


def delete(name: str, face_ids: list[int]) -> Request:
    return "faceset.delete", {"faceset": name, "faces": sorted(face_ids)}, _tag(DELETE, name, faces=sorted(face_ids))


def choose(name: str, tracks: list[int] | None) -> Request:
    return "faceset.choose", {"faceset": name, "tracks": tracks}, _tag(CHOOSE, name, tracks=tracks)


def best(name: str, count: int) -> Request:
    return "faceset.best", {"faceset": name, "count": count}, _tag(BEST, name, count=count)


def keep_chosen(view) -> Request | None:
    """Ask for the faces of every track that is not chosen (the answer turns into their deletion)."""
    others = sorted(t.track for t in view.tracks if not t.chosen)
    if not others:
        return None
    args = {"faceset": view.faceset, "everyone": True, "sort": "frame", "limit": max(view.face_count, 1),
            "offset": 0}
    return "faceset.faces", args, _tag(KEEP, view.faceset, tracks=others)


# Selection (written by operators: it is what the user picked, not what the engine said) ----------

def selected_ids(view) -> set[int]:
    return {item.face_id for item in view.selection}


def set_selected(view, face_ids, selected: bool) -> None:
    have = selected_ids(view)
    if selected:
        for face_id in face_ids:
            if face_id not in have:
                view.selection.add().face_id = face_id
                have.add(face_id)
        return
    drop = set(face_ids)
    for index in reversed(range(len(view.selection))):
        if view.selection[index].face_id in drop:
            view.selection.remove(index)


# Answers (drain only) ----------------------------------------------------------------------------

def apply_reply(view, op: str, result, tag: dict) -> list[Request]:
    """Write one answer into the view; returns the requests it calls for."""
    result = result if isinstance(result, dict) else {}
    name, purpose = tag.get("faceset", ""), tag.get("purpose")
    if purpose == VIEW:
        return _apply_view(view, op, result, tag) if name == view.faceset else []
    if purpose == DELETE:
        deleted = int(result.get("deleted") or 0)
        if name == view.faceset:
            set_selected(view, tag.get("faces") or (), False)
            view.message = f"Deleted {deleted} face{'s' if deleted != 1 else ''}"
            return show(view, name)
        return []
    if purpose == CHOOSE:
        if name == view.faceset:
            tracks = tag.get("tracks")
            view.message = ("Chosen: each shot's longest track" if tracks is None
                            else "Chosen: " + ", ".join(f"track {t}" for t in tracks))
            return show(view, name)
        return []
    if purpose == BEST:
        drop = [int(i) for i in result.get("drop") or ()]
        if not drop:
            view.message = f"Nothing to delete: {len(result.get('keep') or ())} faces, all kept"
            return []
        return [delete(name, drop)]
    if purpose == KEEP:
        others = set(tag.get("tracks") or ())
        drop = [int(f["id"]) for f in result.get("faces") or () if f.get("track") in others]
        if not drop:
            view.message = "Only the chosen person's faces are left"
            return []
        return [delete(name, drop)]
    return []


def apply_failure(view, op: str, code: str, message: str, tag: dict | None) -> bool:
    """Note a refused view request in the view; True when it needs no error report (a faceset not
    extracted yet, one no longer on show, or any failure of a request the add-on made by itself)."""
    if not owns(tag) or tag.get("purpose") != VIEW:
        return False
    if tag.get("faceset") != view.faceset:
        return True
    if code == "not_found":
        view.state = "MISSING"
        _clear(view)
        return True
    if view.state == "LOADING":
        view.state = "NONE"
    if tag.get("auto"):
        view.message = f"Could not load the faceset: {message}"
        return True
    return False


def _apply_view(view, op: str, result: dict, tag: dict) -> list[Request]:
    global _unloaded
    if op == "faceset.list":
        found = [f for f in result.get("facesets") or () if f.get("name") == view.faceset]
        if not found:
            view.state = "MISSING"
            _clear(view)
            return []
        entry = found[0]
        view.state = "READY"
        view.face_type = str(entry.get("face_type") or "")
        view.size = int(entry.get("size") or 0)
        view.face_count = int(entry.get("faces") or 0)
        view.frame_count = int(entry.get("frames") or 0)
        view.track_count = int(entry.get("tracks") or 0)
    elif op == "faceset.tracks":
        thumbnails.clear(thumbnails.PEOPLE)
        view.tracks.clear()
        for track in result.get("tracks") or ():
            item = view.tracks.add()
            _write_thumbnail(item, track.get("face_id"), track.get("image"))
            _fill(item, track, _TRACK_FIELDS)
        _unloaded = True
    elif op == "faceset.faces":
        if tag.get("generation") != view.generation:  # an answer to an older page request
            return []
        total = int(result.get("total") or 0)
        if view.offset and view.offset >= total:  # the page emptied (faces were deleted): step back
            view.offset = max(0, (total - 1) // PAGE_SIZE * PAGE_SIZE)
            return page(view)
        thumbnails.clear(thumbnails.PAGE)
        view.faces.clear()
        view.total = total
        for face in (result.get("faces") or ())[:PAGE_SIZE]:
            item = view.faces.add()
            _write_thumbnail(item, face.get("id"), face.get("image"))
            _fill(item, face, _FACE_FIELDS)
        _unloaded = True
    return []


# the fields of an engine answer each view item copies, with the type its property takes
_TRACK_FIELDS = {"track": int, "media_id": int, "faces": int, "first": int, "last": int, "sharpness": float,
                 "chosen": bool, "person": int}
_FACE_FIELDS = {"media_id": int, "frame": int, "track": int, "yaw": float, "pitch": float, "sharpness": float}


def _fill(item, answer: dict, fields: dict) -> None:
    for name, kind in fields.items():
        setattr(item, name, kind(answer.get(name) or 0))


def _write_thumbnail(item, face_id, image) -> None:
    item.face_id = int(face_id or 0)
    item.image = str(image or "")
    item.icon_id = 0
    item.thumbnail = "PENDING"


def _clear(view) -> None:
    for collection, group in ((view.faces, thumbnails.PAGE), (view.tracks, thumbnails.PEOPLE)):
        collection.clear()
        thumbnails.clear(group)
    view.total = view.face_count = view.frame_count = view.track_count = 0


def load_thumbnails(view, deadline: float | None) -> int:
    """Load pending thumbnails until `deadline` (time.monotonic(); None: all), at least one per call."""
    global _unloaded
    if not _unloaded:
        return 0
    loaded, done = thumbnails.load_pending(((view.tracks, thumbnails.PEOPLE), (view.faces, thumbnails.PAGE)), deadline)
    _unloaded = not done
    return loaded
