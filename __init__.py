"""Swapline extension root: Blender imports this package; the add-on lives in addon/.

Imports are deferred so that importing this folder as a plain package (pytest, tools) never
pulls in bpy.
"""


def register():
    from .addon import register as _register

    _register()


def unregister():
    from .addon import unregister as _unregister

    _unregister()
