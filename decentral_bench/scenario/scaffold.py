"""`decentral-bench init`: a commented scenario file to start from.

The file takes its values from one of the shipped scenarios, but for its `name` and
MLflow experiment, which become the file's name (so its runs never land in the template's
experiment), and explains every key of the format above it, from the same descriptions
as the JSON Schema; keys the template leaves out are listed commented out, with their
defaults. It starts with the YAML language server's `$schema` line, validates, and never
replaces an existing file.
"""

from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path
from typing import Any

from decentral_bench.scenario.base import user_path
from decentral_bench.scenario.errors import ScenarioError
from decentral_bench.scenario.export import (
    SCHEMA_FILE,
    Key,
    keys,
    plain_schema,
    yaml_value,
)
from decentral_bench.scenario.loading import parse, read_yaml
from decentral_bench.scenario.schema import shorthand_key

SCENARIOS = SCHEMA_FILE.parent / "scenarios"
WIDTH = 100
MODELINE = "# yaml-language-server: $schema="
# Keys holding a path relative to the scenario file's folder.
RELATIVE_PATHS = ("dataset.root", "topology.edges", "topology.matrix_file")


class ScaffoldError(ValueError):
    """A scaffold that cannot be written: the file exists, or no such template."""


def templates() -> dict[str, Path]:
    """The shipped scenarios by name: `quickstart`, `paper/fig1a_cdsgd_vs_sgd`, ..."""
    if not SCENARIOS.is_dir():
        return {}
    return {path.relative_to(SCENARIOS).with_suffix("").as_posix(): path
            for path in sorted(SCENARIOS.rglob("*.yaml"))}


def _comment(text: str, indent: str, hang: str = "", margin: int = 0) -> list[str]:
    """`text` as comment lines at `indent` (after `margin` more columns), wrapped, later
    lines indented by `hang`."""
    return [f"{indent}# {line}" for line in textwrap.wrap(
        text, WIDTH - margin - len(indent) - 2, subsequent_indent=hang,
        break_on_hyphens=False)]


def _seen_from(target: Path, path: Path) -> str:
    """`path` as the file `target` should name it: relative inside the repository (so a
    checkout may move), absolute elsewhere."""
    folder = target.resolve().parent
    if folder.is_relative_to(SCHEMA_FILE.parent):
        return Path(os.path.relpath(path, folder)).as_posix()
    return str(path.resolve())


def _header(template: Path) -> list[str]:
    """The template's leading comment block, without its `$schema` line."""
    lines = []
    for line in template.read_text().splitlines():
        if not line.startswith("#"):
            break
        if not line.startswith(MODELINE):
            lines.append(line)
    return lines


class _Writer:
    """Emits sections in the schema's key order, each key under its description; a key
    the template leaves out is commented out with its default (a section with its keys)."""

    def __init__(self, described: dict[str, Key], margin: int = 0) -> None:
        self.described = described
        self.margin = margin  # columns taken left of the lines (by commenting them out)
        self.lines: list[str] = []

    def children(self, prefix: str) -> list[str]:
        """The keys directly under `prefix` (`topology.` → topology.kind, ...)."""
        return [path for path in self.described if path.startswith(prefix)
                and path[len(prefix):] and not re.search(r"[.\[]", path[len(prefix):])]

    def section(self, data: dict[str, Any], prefix: str, indent: str) -> None:
        for path in self.children(prefix):
            name = path[len(prefix):]
            self.lines += _comment(self.described[path].schema["description"], indent,
                                   margin=self.margin)
            if name in data:
                self.value(data[name], path, indent)
            else:
                self.unset(path, indent)

    def value(self, value: Any, path: str, indent: str) -> None:
        name = path.rsplit(".", 1)[-1]
        if isinstance(value, dict) and self.children(f"{path}."):
            self.lines.append(f"{indent}{name}:")
            self.section(value, f"{path}.", indent + "  ")
        elif isinstance(value, list) and self.children(f"{path}[]."):
            self.items(value, path, indent)
        elif isinstance(value, str) and shorthand_key(path):
            self.lines.append(f"{indent}{name}: {yaml_value(value)}")
            self.commented({**self.defaults(path), shorthand_key(path): value}, path, indent,
                           "the same, with every key:")
        else:
            self.lines.append(f"{indent}{name}: {yaml_value(value)}" if value is not None
                              else f"{indent}{name}:")
            if value is not None and self.children(f"{path}."):  # `latency: 20 ms`
                self.commented(self.defaults(path), path, indent,
                               "or as a mapping, with every key:")

    def items(self, value: list[dict[str, Any]], path: str, indent: str) -> None:
        """A list of mappings (methods, crashes): what each item's keys mean, then one item
        a line."""
        self.lines.append(f"{indent}# Each item's keys:")
        prefix = f"{path}[]."
        for child in (key for key in self.described if key.startswith(prefix)):
            text = f"{child[len(prefix):]}: {self.described[child].schema['description']}"
            self.lines += _comment(text, indent, hang="    ", margin=self.margin)
        name = path.rsplit(".", 1)[-1]
        self.lines += [f"{indent}{name}:", *(f"{indent}  - {yaml_value(item)}" for item in value)]
        if not value:
            self.lines[-1] += " []"

    def defaults(self, path: str) -> Any:
        """A key's default; a section's as the mapping of its keys' defaults."""
        nested = self.children(f"{path}.")
        if nested:
            return {child.rsplit(".", 1)[-1]: self.defaults(child) for child in nested}
        return self.described[path].schema.get("default")

    def commented(self, value: Any, path: str, indent: str, title: str = "") -> None:
        """`value` of the key at `path`, commented out, under `title`."""
        block = _Writer(self.described, self.margin + len(indent) + 2)
        block.value(value, path, "")
        self.lines += [f"{indent}# {title}"] if title else []
        self.lines += [f"{indent}# {line}" for line in block.lines]

    def unset(self, path: str, indent: str) -> None:
        """A key the template leaves out, commented out with its default: uncommenting it
        (and filling in what it requires) gives a valid key."""
        self.commented(self.defaults(path), path, indent)


def _relocated(data: dict[str, Any], template: Path, target: Path) -> dict[str, Any]:
    """Relative file paths of the template, rewritten to hold from the target's folder."""
    for dotted in RELATIVE_PATHS:
        section, key = dotted.split(".")
        value = data.get(section, {}).get(key) if isinstance(data.get(section), dict) else None
        if isinstance(value, str) and not user_path(value).is_absolute():
            data[section] = {**data[section], key: _seen_from(target, template.parent / value)}
    return data


def scaffold(template_name: str, target: Path) -> str:
    """The commented scenario text for `target`, from the shipped scenario
    `template_name`; it is checked to load before it is returned."""
    known = templates()
    if template_name not in known:
        raise ScaffoldError(f"no shipped scenario '{template_name}'; choose one of: "
                            f"{', '.join(known) or '(none found next to the package)'}")
    template = known[template_name]
    data = _relocated(read_yaml(template.read_text()), template, target)
    name = re.sub(r"[^A-Za-z0-9_.\-]", "_", target.stem) or "scenario"
    data["name"] = name
    data["tracking"] = {**data.get("tracking", {}), "experiment": name}  # its own experiment
    writer = _Writer({key.path: key for key in keys(plain_schema())})
    writer.section(data, "", "")
    note = (f"Written by `decentral-bench init` from scenarios/{template_name}.yaml: each key "
            "under its meaning; keys left out are commented out with their defaults. Check "
            f"it with `decentral-bench validate {target} --explain`.")
    lines = [f"{MODELINE}{_seen_from(target, SCHEMA_FILE)}", *_header(template), "#",
             *_comment(note, ""), "", *writer.lines]
    text = "\n".join(lines) + "\n"
    parse(read_yaml(text), str(target), base=target.resolve().parent)
    return text


def write_scaffold(target: Path, template_name: str) -> None:
    """Write the scaffold to `target`; an existing file is never replaced."""
    if target.exists():
        raise ScaffoldError(f"{target} exists; init never replaces a file: choose another "
                            "name or remove it first")
    try:
        text = scaffold(template_name, target)
    except ScenarioError as error:  # a shipped scenario that no longer loads: a bug here
        raise ScaffoldError(f"the scaffold from '{template_name}' does not load: "
                            f"{error}") from None
    with target.open("x") as file:
        file.write(text)
