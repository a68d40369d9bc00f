"""The code keeps the shape DESIGN.md draws: where Flower may be imported, no import
circles (not even hidden inside functions), no oversized files."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("decentral_bench", "strategies")
# Outside decentral_bench/flower/, only the Flower side of strategies/ imports flwr.
FLOWER_SIDE = {"strategies/gossip_router.py", "strategies/fedavg.py", "strategies/protocol.py"}
MAX_LINES = 400


def _sources() -> dict[str, Path]:
    """Module name → file, for every module of the project's packages."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    return modules


def _imports(path: Path) -> set[str]:
    """Every module an import statement in the file names, at any depth of the file."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_only_the_flower_layer_imports_flwr() -> None:
    offenders = []
    for path in _sources().values():
        relative = path.relative_to(REPO).as_posix()
        if relative.startswith("decentral_bench/flower/") or relative in FLOWER_SIDE:
            continue
        if any(module == "flwr" or module.startswith("flwr.") for module in _imports(path)):
            offenders.append(relative)
    assert offenders == []


def test_the_project_modules_import_each_other_without_a_circle() -> None:
    modules = _sources()
    graph = nx.DiGraph()
    for name, path in modules.items():
        graph.add_node(name)
        for imported in _imports(path):
            if imported in modules and imported != name:
                graph.add_edge(name, imported)
    cycles = list(nx.simple_cycles(graph))
    assert cycles == []


def test_no_source_file_is_oversized() -> None:
    sizes = {path.relative_to(REPO).as_posix(): len(path.read_text().splitlines())
             for path in _sources().values()}
    assert {name: lines for name, lines in sizes.items() if lines > MAX_LINES} == {}
