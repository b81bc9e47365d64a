"""A recording stand-in for UILayout (background Blender has none), inside the Blender process.

Every call is checked against the real UILayout's RNA: the method exists, its keywords are real
parameters, icons are real icon names, `prop` names a real property, `operator` a registered
operator whose properties are the ones set. What a panel drew is kept for the test to read.
"""

from __future__ import annotations

import types

import bpy

FUNCTIONS = bpy.types.UILayout.bl_rna.functions
ATTRIBUTES = set(bpy.types.UILayout.bl_rna.properties.keys())
ICONS = set(FUNCTIONS["label"].parameters["icon"].enum_items.keys())


class Recording:
    """What one or more draws did: calls by name, label texts, template icons, problems found."""

    def __init__(self):
        self.calls: list[str] = []
        self.labels: list[str] = []
        self.icons: list[int] = []  # icon_value of every template_icon
        self.operators: list[tuple[str, dict]] = []
        self.problems: list[str] = []

    def draw(self, panel_class, context=None) -> "Recording":
        panel_class.draw(types.SimpleNamespace(layout=Layout(self)), context or bpy.context)
        return self


class OperatorProps:
    def __init__(self, recording, idname):
        rna = getattr(bpy.ops.swapline, idname.split(".")[1]).get_rna_type()
        object.__setattr__(self, "_rna", rna)
        object.__setattr__(self, "_recording", recording)
        object.__setattr__(self, "values", {})
        recording.operators.append((idname, self.values))

    def __setattr__(self, name, value):
        if name not in self._rna.properties:
            self._recording.problems.append(f"operator {self._rna.identifier} has no property {name}")
        self.values[name] = value


class Layout:
    def __init__(self, recording):
        object.__setattr__(self, "_recording", recording)

    def __setattr__(self, name, value):  # alert, enabled, use_property_split, ...
        if name not in ATTRIBUTES:
            self._recording.problems.append(f"layout attribute {name}")

    def __getattr__(self, name):
        recording = self._recording

        def method(*args, **kwargs):
            recording.calls.append(name)
            problems = recording.problems
            if name not in FUNCTIONS:
                problems.append(f"UILayout has no {name}")
                return Layout(recording)
            params = FUNCTIONS[name].parameters.keys()
            problems += [f"{name}() has no parameter {k}" for k in kwargs if k not in params]
            if "icon" in kwargs and kwargs["icon"] not in ICONS:
                problems.append(f"{name}(): no icon {kwargs['icon']}")
            if name == "prop" and args[1] not in args[0].bl_rna.properties:
                problems.append(f"{args[0]} has no property {args[1]}")
            if name in ("operator", "operator_menu_enum"):
                idname = args[0]
                if idname.split(".")[1] not in dir(bpy.ops.swapline):
                    problems.append(f"no operator {idname}")
                    return Layout(recording)
                props = OperatorProps(recording, idname)
                if name == "operator_menu_enum" and args[1] not in props._rna.properties:
                    problems.append(f"operator {idname} has no property {args[1]}")
                return props if name == "operator" else Layout(recording)
            if name == "progress" and not 0.0 <= kwargs["factor"] <= 1.0:
                problems.append(f"progress factor {kwargs['factor']}")
            if name == "label":
                text = kwargs.get("text", "")
                if not isinstance(text, str):
                    problems.append("label text")
                recording.labels.append(str(text))
            if name == "template_icon":
                if not isinstance(kwargs.get("icon_value"), int) or kwargs.get("scale", 1.0) <= 0:
                    problems.append(f"template_icon({kwargs})")
                recording.icons.append(kwargs.get("icon_value"))
            return Layout(recording)
        return method
