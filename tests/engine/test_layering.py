"""Dependencies point one way: engine never imports addon; only the server and CLI touch bridge;
a stage never reaches into another stage; the quality report (engine/evaluate) composes stages
like a benchmark does, and is used by the service layer, never the other way round."""

import ast
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[2] / "engine"
STAGES = {"faces", "masks", "train", "merge"}
BRIDGE_USERS = {"service.py", "cli.py", "bench_bridge.py", "cli_farm.py", "cli_farm_loop.py",
                "bench_load.py", "bench_load_clients.py"}  # bench preview measures a real connection


def _imports(path: Path) -> set[str]:
    """Absolute module names imported by a file of the engine package (relative ones resolved)."""
    tree = ast.parse(path.read_text())
    package = ["engine", *path.relative_to(ENGINE).parent.parts]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                names.add(".".join(base + ([node.module] if node.module else [])))
            else:
                names.add(node.module)
    return names


def _layer(top: list[str]) -> str | None:
    """The service-layer family a top-level engine module belongs to: engine.service_train and
    engine.recipes_evaluate count as "service" and "recipes", as engine.service and engine.recipes do."""
    return top[1].split("_")[0] if top[0] == "engine" and len(top) > 1 else None


def test_engine_layering():
    problems = []
    for path in ENGINE.rglob("*.py"):
        rel = path.relative_to(ENGINE)
        stage = rel.parts[0] if len(rel.parts) > 1 else None
        for name in _imports(path):
            top = name.split(".")
            if top[0] in ("addon", "bpy"):
                problems.append(f"{rel} imports {name}")
            if top[0] == "bridge" and str(rel) not in BRIDGE_USERS:
                problems.append(f"{rel} imports the bridge; only {BRIDGE_USERS} may")
            if top[0] == "engine" and len(top) > 1 and top[1] in STAGES and stage in STAGES and top[1] != stage:
                problems.append(f"stage {stage} reaches into stage {top[1]} ({rel} imports {name})")
            if stage in STAGES | {"models", "geometry", "media", "colour"} \
                    and _layer(top) in ("service", "cli", "recipes", "jobs"):
                problems.append(f"{rel} imports the service layer ({name})")
            if stage == "evaluate" and _layer(top) in ("service", "cli", "recipes", "jobs", "bench"):
                problems.append(f"{rel} imports the service layer ({name}): the report is called by it")
            if stage in STAGES | {"models", "geometry", "media", "colour"} and name.startswith("engine.evaluate"):
                problems.append(f"{rel} imports the quality report ({name}): it measures stages, not the reverse")
    assert not problems, "\n".join(problems)
