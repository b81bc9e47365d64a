"""Blender layer: the likeness consent. Marking a strip as Source asks once per strip that the user
confirms they have the right to use that person's likeness; the answer is stored on the strip (and so
in the .blend), so it is never asked again for that strip."""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty

QUESTION = "I have the right to use this person's likeness"


def confirmed(strip) -> bool:
    return bool(strip.swapline_likeness_confirmed)


def confirm(strip) -> None:
    strip.swapline_likeness_confirmed = True


def register() -> None:
    # Not animatable: a key could make the answer change over the timeline.
    bpy.types.Strip.swapline_likeness_confirmed = BoolProperty(
        name="Likeness Confirmed", options=set(),
        description="The user confirmed having the right to use the likeness of the person in this strip "
                    "(asked once, when the strip was first marked as Source)")


def unregister() -> None:
    del bpy.types.Strip.swapline_likeness_confirmed
