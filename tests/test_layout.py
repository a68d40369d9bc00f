"""The code keeps the shape DESIGN.md draws: one folder per concern, imports only downward
(strategies → scenario → network → experiment → tracking → engines, report → run → cli), no
import circle between files or folders (not even hidden inside functions), Flower and
MLflow each behind their own door, no oversized files, and every package saying what it
holds and what it may import."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("decentral_bench", "strategies")
# The order of the data flow: a folder may import only folders of a lower rank. `engines`
# and `report` share a rank and do not import each other.
RANK = {"strategies": 0, "scenario": 1, "network": 2, "experiment": 3, "tracking": 4,
        "engines": 5, "report": 5, "run": 6, "cli": 7}
# Only these import flwr: the Flower engine, the Flower side of strategies/, the `flwr run` entry.
FLOWER_FOLDER = "decentral_bench/engines/flower/"
FLOWER_SIDE = {"strategies/gossip_router.py", "strategies/protocol.py", "strategies/stock.py",
               "decentral_bench/cli/flwr_app.py"}
MLFLOW_FOLDER = "decentral_bench/tracking/"
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


def _folder(module: str) -> str | None:
    """The concern a module belongs to: `strategies`, or the first folder under
    decentral_bench (None for decentral_bench's own `__init__`/`__main__`)."""
    parts = module.split(".")
    if parts[0] == "strategies":
        return "strategies"
    if parts[0] == "decentral_bench" and len(parts) > 1 and parts[1] in RANK:
        return parts[1]
    return None


def _importers_of(prefix: str, allowed: tuple[str, ...] | set[str]) -> list[str]:
    """Files that import `prefix` (a top-level package) and are not `allowed` (paths or
    folder prefixes)."""
    offenders = []
    for path in _sources().values():
        relative = path.relative_to(REPO).as_posix()
        if relative in allowed or any(relative.startswith(a) for a in allowed if a.endswith("/")):
            continue
        if any(m == prefix or m.startswith(prefix + ".") for m in _imports(path)):
            offenders.append(relative)
    return offenders


def test_only_the_flower_layer_imports_flwr() -> None:
    assert _importers_of("flwr", {FLOWER_FOLDER, *FLOWER_SIDE}) == []


def test_only_tracking_imports_mlflow() -> None:
    assert _importers_of("mlflow", {MLFLOW_FOLDER}) == []


def test_the_project_modules_import_each_other_without_a_circle() -> None:
    modules = _sources()
    graph = nx.DiGraph()
    for name, path in modules.items():
        graph.add_node(name)
        for imported in _imports(path):
            if imported in modules and imported != name:
                graph.add_edge(name, imported)
    assert list(nx.simple_cycles(graph)) == []


def test_folders_import_only_downward() -> None:
    """No import runs back up the data flow, so no circle between folders is possible."""
    upward = []
    for name, path in _sources().items():
        mine = _folder(name)
        for imported in _imports(path):
            theirs = _folder(imported)
            if mine is None or theirs is None or theirs == mine:
                continue
            if RANK[theirs] >= RANK[mine]:
                upward.append(f"{path.relative_to(REPO).as_posix()} → {imported}")
    assert upward == []


def test_the_folders_are_the_design_cards() -> None:
    """decentral_bench/ holds the folders of DESIGN.md and no loose module but its entry."""
    root = REPO / "decentral_bench"
    folders = {p.name for p in root.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    loose = {p.name for p in root.glob("*.py")}
    assert folders == set(RANK) - {"strategies"}
    assert loose == {"__init__.py", "__main__.py"}


def test_every_package_says_what_it_holds_and_may_import() -> None:
    packages = [p for package in PACKAGES for p in (REPO / package).rglob("__init__.py")]
    silent = []
    for path in packages:
        docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
        if "May import" not in " ".join(docstring.splitlines()[:2]):
            silent.append(path.relative_to(REPO).as_posix())
    assert silent == []


def test_no_source_file_is_oversized() -> None:
    sizes = {path.relative_to(REPO).as_posix(): len(path.read_text().splitlines())
             for path in _sources().values()}
    assert {name: lines for name, lines in sizes.items() if lines > MAX_LINES} == {}
