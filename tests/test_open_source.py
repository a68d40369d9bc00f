"""What an open-source project ships beside its code: a license that pyproject.toml
declares, a citation file with the papers it implements, those papers in the docs, and a
Python range that says why it is what it is."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
PAPERS = ("Collaborative Deep Learning in Fixed Topology Networks",
          "Consensus Control for Decentralized Deep Learning",
          "Communication-Efficient Learning of Deep Networks from Decentralized Data")


def test_the_license_file_is_the_one_pyproject_declares() -> None:
    text = (REPO / "LICENSE").read_text()
    assert PYPROJECT["license"] == "Apache-2.0"
    assert PYPROJECT["license-files"] == ["LICENSE"]
    assert "Apache License\n                           Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text


def test_the_citation_file_describes_this_version_and_the_papers() -> None:
    citation = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0"
    assert {"message", "title", "authors"} <= set(citation)  # required by CFF 1.2.0
    assert citation["version"] == PYPROJECT["version"]
    assert citation["license"] == PYPROJECT["license"]
    assert citation["type"] == "software"
    titles = [reference["title"] for reference in citation["references"]]
    assert set(PAPERS) <= set(titles)
    for reference in citation["references"]:
        assert {"type", "title", "authors", "year"} <= set(reference), reference["title"]
        for author in reference["authors"]:
            assert {"family-names", "given-names"} <= set(author) or "name" in author
    jiang = next(r for r in citation["references"] if r["title"] == PAPERS[0])
    assert [a["family-names"] for a in jiang["authors"]] == ["Jiang", "Balu", "Hegde",
                                                              "Sarkar"]
    assert (jiang["year"], jiang["start"], jiang["end"]) == (2017, 5904, 5914)


def test_the_docs_list_every_cited_paper() -> None:
    references = (REPO / "docs" / "references.md").read_text()
    citation = yaml.safe_load((REPO / "CITATION.cff").read_text())
    flat = " ".join(references.split())
    for reference in citation["references"]:
        assert reference["title"].rstrip(".") in flat, reference["title"]
        assert str(reference["year"]) in flat
    readme = (REPO / "README.md").read_text()
    assert "docs/references.md" in readme and "CITATION.cff" in readme


def test_the_python_range_is_one_the_project_states_and_checks() -> None:
    """pyproject.toml, the type checker, the linter and the Makefile name one Python, and
    the docs say why the range is not wider."""
    pinned = PYPROJECT["requires-python"]
    assert pinned == ">=3.11,<3.12"
    tools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]
    assert tools["mypy"]["python_version"] == "3.11"
    assert tools["ruff"]["target-version"] == "py311"
    assert re.search(r"^PYTHON \?= python3\.11$", (REPO / "Makefile").read_text(), re.M)
    guide = " ".join((REPO / "docs" / "getting-started.md").read_text().split())
    assert "Python is pinned to 3.11 because that is the only version the project is " \
           "tested on" in guide
