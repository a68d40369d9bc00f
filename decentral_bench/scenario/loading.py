"""Reading scenario files: YAML → validated `Scenario`, with `--set` style key overrides."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from decentral_bench.scenario.errors import ScenarioError, describe
from decentral_bench.scenario.schema import Scenario, shorthand_key


class ScenarioYaml(yaml.SafeLoader):
    """PyYAML's safe loader, reading `1e-3` as the number YAML 1.2 (and editors) read,
    not as the string YAML 1.1 makes of an exponent without a decimal point."""


ScenarioYaml.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def read_yaml(text: str) -> Any:
    """YAML text as Python data, the way scenario files and `--set` values are read."""
    return yaml.load(text, Loader=ScenarioYaml)


def parse(data: Any, source: str = "<scenario>", base: Path | None = None) -> Scenario:
    """Validate already-loaded YAML data into a `Scenario`.

    Relative file paths inside it are taken from `base` (the scenario's folder).
    """
    if not isinstance(data, dict):
        raise ScenarioError(source, [("", "the file must hold a mapping of keys "
                                     f"(name, dataset, ...), not {type(data).__name__}")])
    try:
        return Scenario.model_validate(data, context={"base": base or Path.cwd()})
    except ValidationError as error:
        problems = [describe(e, Scenario) for e in error.errors()]
        raise ScenarioError(source, problems) from None


# Keys that stand for one another: setting one removes the other beside it.
REPLACES = {"rounds": "epochs", "epochs": "rounds"}


def set_key(data: dict[str, Any], dotted: str, value: Any, source: str = "<scenario>") -> None:
    """Set `a.b.c` (list items by number: `methods.0.lr`) in nested YAML data, in place.

    Shorthand values on the way (`partition: iid`, `model: mlp`) become mappings. Setting
    one of a budget's two forms (`rounds`, `epochs`) drops the other beside it, so
    `--set training.epochs=5` works on a file that gives rounds.
    """
    parts = dotted.split(".")
    current: Any = data
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        where = ".".join(parts[:depth + 1])
        if isinstance(current, list):
            if not part.isdigit() or int(part) >= len(current):
                raise ScenarioError(source, [(".".join(parts[:depth]),
                                              f"has {len(current)} items; '{part}' is no index")])
            index = int(part)
            if last:
                current[index] = value
            else:
                current = current[index]
            continue
        if not isinstance(current, dict):
            raise ScenarioError(source, [(where, "cannot set a key inside a plain value")])
        if last:
            current[part] = value
            if part in REPLACES:
                current.pop(REPLACES[part], None)
        else:
            child = current.get(part)
            key = shorthand_key(".".join(p for p in parts[:depth + 1] if not p.isdigit()))
            if isinstance(child, str) and key is not None:
                child = {key: child}
            current[part] = child if isinstance(child, dict | list) else {}
            current = current[part]


def load(path: str | Path, overrides: dict[str, Any] | None = None) -> Scenario:
    """Read and validate the scenario file at `path`, with dotted-key `overrides` applied."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ScenarioError(source, [("", "file not found")]) from None
    except OSError as error:
        raise ScenarioError(source, [("", f"cannot read the file: {error.strerror}")]) from None
    try:
        data = read_yaml(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ScenarioError(source, [("", f"not valid YAML: {where}{problem}")]) from None
    if overrides and isinstance(data, dict):
        for dotted, value in overrides.items():
            set_key(data, dotted, value, source)
    return parse(data, source, base=path.parent)
