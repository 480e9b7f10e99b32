"""The package respects its layers (docs/architecture.md): every import goes to the same floor or below,
the parts of one floor import each other without circles, and the model registry imports no model."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "steelkd"

#: Floor of each top-level part of the package (docs/architecture.md, "Layers").
FLOORS: dict[str, int] = {
    "io": 0, "paper": 0, "runtime": 0, "trivial": 0,
    "config": 1, "data": 1, "card": 1, "metrics": 1, "postprocess": 1, "tables": 1, "figures": 1, "losses": 1,
    "tiling": 1,
    "models": 2,
    "engine": 3, "evaluate": 3, "bench": 3, "export": 3,
    "experiment": 4, "predict": 4, "calibrate": 4, "tune": 4,
    "serve": 5,
    "cli": 6,
}  # fmt: skip


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports() -> dict[str, set[str]]:
    """Module path (relative to src/steelkd) -> the steelkd modules it imports."""
    out: dict[str, set[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("steelkd"):
                deps.add(node.module)
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("steelkd")}
        out[str(path.relative_to(SRC))] = deps
    return out


def test_every_part_has_a_floor() -> None:
    parts = {p.stem if p.is_file() else p.name for p in SRC.iterdir() if p.suffix == ".py" or p.is_dir()}
    parts -= {"__init__", "__pycache__", "py"}
    assert parts == set(FLOORS), parts ^ set(FLOORS)


def test_imports_go_to_the_same_floor_or_below() -> None:
    bad = []
    for rel, deps in _imports().items():
        here = rel.split("/")[0].removesuffix(".py")
        if here == "__init__.py":
            continue
        for dep in deps:
            there = _part(dep)
            if there and FLOORS[there] > FLOORS[here]:
                bad.append(f"{rel} (floor {FLOORS[here]}) imports {dep} (floor {FLOORS[there]})")
    assert not bad, "\n".join(bad)


def test_parts_import_each_other_without_circles() -> None:
    graph: dict[str, set[str]] = {p: set() for p in FLOORS}
    for rel, deps in _imports().items():
        here = rel.split("/")[0].removesuffix(".py")
        if here in graph:
            graph[here] |= {_part(d) for d in deps if _part(d) and _part(d) != here}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        if state.get(node) == 1:
            raise AssertionError("import circle: " + " -> ".join([*trail, node]))
        if state.get(node) == 2:
            return
        state[node] = 1
        for nxt in sorted(graph[node]):
            visit(nxt, [*trail, node])
        state[node] = 2

    for node in sorted(graph):
        visit(node, [])


def test_the_registry_imports_no_model_module() -> None:
    deps = _imports()["models/registry.py"]
    assert deps <= {"steelkd.models.base"}, deps
