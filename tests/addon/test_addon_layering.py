"""Import direction inside the add-on: the connection layer never imports bpy, and nothing in the
add-on imports the engine or its heavy dependencies (they must never load into Blender)."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

ADDON = REPO / "addon"
HEAVY = {"torch", "cv2", "numpy", "mediapipe", "engine", "scipy", "av"}
NO_BPY = ("engine_link.py", "engine_process.py", "transfers.py", "link_messages.py")


def imports(path):
    """(first name, level) of every import; `from . import a, b` yields a and b."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((alias.name.split(".")[0], 0) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module.split(".")[0], node.level
        elif isinstance(node, ast.ImportFrom):
            yield from ((alias.name, node.level) for alias in node.names)


@pytest.mark.parametrize("path", sorted(ADDON.glob("*.py")) + [REPO / "__init__.py"], ids=lambda p: p.name)
def test_addon_imports(path):
    found = set(imports(path))
    # any level: `from ..engine import x` would reach the engine beside the add-on in a checkout
    assert not {name for name, _ in found} & HEAVY, f"{path.name} imports engine-side packages"
    if path.name in NO_BPY:
        assert "bpy" not in {name for name, _ in found}, f"{path.name} is the connection layer: no bpy"
        siblings = {f"{name}.py" for name, level in found if level == 1}
        assert siblings <= set(NO_BPY), f"{path.name} is the connection layer: it imports bpy through {siblings}"
    # the bridge is reached relatively, as inside the extension zip
    assert ("bridge", 0) not in found


def test_root_init_defers_the_addon():
    """Importing the extension root as a plain package must not pull in bpy."""
    tree = ast.parse((REPO / "__init__.py").read_text())
    assert not [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
