"""The bridge's import boundary: stdlib, msgpack, zeroconf/ifaddr only, and relative inside itself.

The add-on vendors bridge/ into its extension zip under another package name, so an absolute
`import bridge...` inside it would break there; torch or bpy here would break the other side.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import bridge

BRIDGE_DIR = Path(bridge.__file__).parent
ALLOWED_THIRD_PARTY = {"msgpack", "zeroconf", "ifaddr"}
MODULES = sorted(BRIDGE_DIR.glob("*.py"))


def imported_roots(tree: ast.AST) -> list[tuple[str, int]]:
    roots = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots += [(alias.name.split(".")[0], 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            roots.append(((node.module or "").split(".")[0], node.level))
    return roots


@pytest.mark.parametrize("path", MODULES, ids=lambda path: path.name)
def test_bridge_module_imports_only_what_both_sides_have(path):
    for root, level in imported_roots(ast.parse(path.read_text())):
        if level:
            continue  # relative: another bridge module
        assert root in sys.stdlib_module_names or root in ALLOWED_THIRD_PARTY, \
            f"{path.name} imports {root}"


def test_bridge_exports_the_agreed_names():
    expected = {"PROTOCOL_VERSION", "MAX_FRAME", "SERVICE_TYPE", "BridgeError", "BridgeServer",
                "Session", "BridgeClient", "Message", "EngineAdvertiser", "browse_engines",
                "DiscoveredEngine"}
    assert set(bridge.__all__) == expected
    assert all(hasattr(bridge, name) for name in expected)
    assert (bridge.PROTOCOL_VERSION, bridge.MAX_FRAME, bridge.SERVICE_TYPE) == (
        2, 64 * 1024 * 1024, "_swapline._tcp.local.")


def test_bridge_modules_stay_small():
    for path in MODULES:
        assert len(path.read_text().splitlines()) <= 330, f"{path.name} has grown past ~300 lines"
