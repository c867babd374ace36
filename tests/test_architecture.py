"""The layering of docs/architecture.md, checked on the source: no two modules import each
other, directly or around a loop (imports inside functions count: a loop closed at run time
is still a loop), and the engine never imports the CLI."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "softmoa_cli"


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of softmoa_cli (packages by their name)."""
    return {".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): path
            for path in PACKAGE.rglob("*.py")}


def imported(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of softmoa_cli that ``module`` imports anywhere in its file (function bodies
    included), ``TYPE_CHECKING`` blocks skipped; ``from pkg import name`` counts as importing
    ``pkg.name`` when that is a module, else ``pkg``."""
    tree = ast.parse(path.read_text())
    typing_only = {id(node) for block in ast.walk(tree)
                   if isinstance(block, ast.If) and getattr(block.test, "id", "") == "TYPE_CHECKING"
                   for node in ast.walk(block)}
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            names = [f"{base}.{alias.name}" for alias in node.names]
            found |= {name if name in known else base for name in names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    owners = set()
    for name in found:
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name and name not in (module, "softmoa_cli"):
            owners.add(name)
    return owners


def import_graph() -> dict[str, set[str]]:
    known = module_files()
    return {module: imported(module, path, known) for module, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return groups


def test_the_cycle_finder_finds_a_loop_through_three_modules():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"d"}}
    assert cycles(edges) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_two_modules_import_each_other_even_around_a_loop():
    edges = import_graph()
    # the graph is really built, function-level imports included
    assert "softmoa_cli.engine.petl.layers" in edges["softmoa_cli.engine.petl.methods"]
    assert "softmoa_cli.engine.train.loop" in edges["softmoa_cli.engine.train.run"]
    assert cycles(edges) == []


def test_the_engine_never_imports_the_cli_layer():
    for module, targets in import_graph().items():
        if module.startswith("softmoa_cli.engine"):
            assert not {t for t in targets if t.startswith(("softmoa_cli.cli", "softmoa_cli.config"))}, module


def test_configs_and_tasks_load_without_torch():
    """Flags, presets and task names validate in milliseconds: the modules a CLI command reads
    before it trains import no torch."""
    code = ("import sys; import softmoa_cli.engine.config, softmoa_cli.engine.task, softmoa_cli.engine.petl.methods, "
            "softmoa_cli.engine.train.planning, softmoa_cli.engine.runs.folder, softmoa_cli.engine.runs.results; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
