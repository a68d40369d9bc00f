"""The docs cannot drift from the tree: the architecture page lists every package and
module in their own words, and the README stays a landing page whose links and picture
lead somewhere. (`make test` builds the site with `mkdocs build --strict`, which fails on a
broken link, anchor or missing page; the key table is checked in test_scenario_schema.)"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"


def _architecture_page() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "architecture_page", REPO / "scripts" / "architecture_page.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ARCHITECTURE = _architecture_page()


def test_every_package_and_module_opens_with_a_docstring() -> None:
    assert ARCHITECTURE.undocumented() == []


def test_the_architecture_page_lists_every_package_and_module() -> None:
    listed = ARCHITECTURE.documented(ARCHITECTURE.PAGE.read_text())
    tree = ARCHITECTURE.in_tree()
    assert sorted(tree - listed) == [], "missing from docs/architecture.md: run `make docs`"
    assert sorted(listed - tree) == [], "gone from the tree: run `make docs`"
    assert {"strategies/", "decentral_bench/engines/flower/", "strategies/gossip.py",
            "decentral_bench/scenario/keytable.py"} <= listed


def test_the_architecture_page_is_current() -> None:
    assert ARCHITECTURE.section() in ARCHITECTURE.PAGE.read_text(), \
        "docs/architecture.md's package lists are stale: run `make docs`"


def test_the_architecture_page_follows_the_data_flow() -> None:
    """Packages appear in the order imports may run: a package before those importing it."""
    order = [path.as_posix() for path in ARCHITECTURE.packages()]
    concerns = ["strategies", "decentral_bench/scenario", "decentral_bench/network",
                "decentral_bench/experiment", "decentral_bench/tracking",
                "decentral_bench/engines", "decentral_bench/report", "decentral_bench/run",
                "decentral_bench/cli"]
    assert [order.index(concern) for concern in concerns] == \
        sorted(order.index(concern) for concern in concerns)
    assert order.index("decentral_bench/engines/flower") > order.index("decentral_bench/engines")


def test_a_module_missing_from_the_page_is_found() -> None:
    page = ARCHITECTURE.PAGE.read_text()
    without = re.sub(r"\| `observer\.py` \|[^\n]*\n", "", page)
    assert ARCHITECTURE.documented(page) - ARCHITECTURE.documented(without) == \
        {"decentral_bench/engines/observer.py"}


def test_the_readme_is_a_landing_page() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    assert "make test" in text and "make demo" in text
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [target for target in targets if "://" not in target]
    assert any(target.endswith(".png") for target in local), "the README shows the demo's plot"
    assert any(target.startswith("docs/") and target.endswith(".md") for target in local)
    assert [target for target in local if not (REPO / target).is_file()] == []


def test_the_readme_scenario_is_a_valid_scenario(tmp_path: Path) -> None:
    from decentral_bench.scenario import load

    block = re.search(r"```yaml\n(.*?)```", README.read_text(), re.DOTALL)
    assert block is not None
    path = tmp_path / "readme.yaml"
    path.write_text(block.group(1))
    scenario = load(path)
    assert [method.algorithm for method in scenario.methods] == \
        ["cdsgd", "cdmsgd", "fedavg", "centralized_sgd"]
