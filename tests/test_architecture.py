"""The layering of docs/architecture.md, checked on the source: imports between the packages
(and the engine's top-level modules) form no cycle, and the CLI stays a thin layer."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "softmoa_cli"
SUBPACKAGES = ("models", "data", "petl", "train")


def node_of(module: str) -> str:
    """``softmoa_cli.engine.petl.layers`` -> ``softmoa_cli.engine.petl``; the engine's top-level
    modules (``softmoa_cli.engine.config``) are nodes of their own; elsewhere the package."""
    parts = module.split(".")
    if parts[:2] == ["softmoa_cli", "engine"] and len(parts) >= 3:
        return ".".join(parts[:3])
    return ".".join(parts[:2])


def imports(path: Path) -> set[str]:
    """Modules of softmoa_cli that ``path`` imports at run time (``TYPE_CHECKING`` blocks skipped)."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module.removesuffix(".__init__") if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    typing_only = {id(node) for block in ast.walk(tree)
                   if isinstance(block, ast.If) and getattr(block.test, "id", "") == "TYPE_CHECKING"
                   for node in ast.walk(block)}
    found = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or id(node) in typing_only:
            continue
        if node.level:
            base = package.split(".")[:len(package.split(".")) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
        elif node.module and node.module.startswith("softmoa_cli"):
            target = node.module
        else:
            continue
        found |= {f"{target}.{alias.name}" if not node.module else target for alias in node.names}
    return found


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        source = node_of(module.removesuffix(".__init__") + (".x" if path.name == "__init__.py" else ""))
        for target in imports(path):
            destination = node_of(target)
            if destination != source and destination.count(".") >= 1 and destination != "softmoa_cli.__version__":
                edges.setdefault(source, set()).add(destination)
    return edges


def test_no_import_cycle_between_packages():
    edges = graph()
    assert "softmoa_cli.engine.train" in edges and "softmoa_cli.cli" in edges  # the graph is really built

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in edges.get(start, ()))

    cycles = sorted(f"{a} -> {b} -> ... -> {a}" for a in edges for b in edges[a] if reaches(b, a, {b}))
    assert not cycles, cycles


def test_the_engine_never_imports_the_cli_layer():
    edges = graph()
    for source, targets in edges.items():
        if source.startswith("softmoa_cli.engine"):
            assert not {t for t in targets if t in ("softmoa_cli.cli", "softmoa_cli.config")}, source
