"""The JSON Schema of scenario files: what editors use to complete, explain and check them.

It is generated from the pydantic models, so it accepts what the loader accepts: the
shorthands (`model: cnn_paper`, `partition: iid`) as `anyOf` alternatives, every key's
bounds, the rules between keys of a section as `if`/`then` clauses, the sweepable keys
with the values each takes, and finite numbers only. It is written in JSON Schema
draft-07, the dialect the YAML language server validates.

JSON has no inf or NaN, but YAML has (`.inf`, `.nan`), so every number is bounded by the
largest double and carries `not: {minimum: 0, exclusiveMaximum: 0}`: no real number is
both ≥ 0 and < 0, so the clause holds for every finite number, while NaN, which every
comparison leaves unrefuted, matches the inner schema and is refused.
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from decentral_bench.scenario.schema import Scenario, sweepable_keys

DIALECT = "http://json-schema.org/draft-07/schema#"
LARGEST = sys.float_info.max
NOT_NAN = {"not": {"minimum": 0, "exclusiveMaximum": 0}}
# Where the repository keeps the exported schema, for the shipped scenarios' editor line.
SCHEMA_FILE = Path(__file__).resolve().parents[2] / "scenario.schema.json"


class _FiniteNumbers(GenerateJsonSchema):
    """pydantic's generator, with every number bounded and NaN refused (see the module)."""

    def float_schema(self, schema: core_schema.FloatSchema) -> JsonSchemaValue:
        number = super().float_schema(schema)
        if "minimum" not in number and "exclusiveMinimum" not in number:
            number["minimum"] = -LARGEST
        if "maximum" not in number and "exclusiveMaximum" not in number:
            number["maximum"] = LARGEST
        return {**number, **NOT_NAN}


@dataclass(frozen=True)
class Key:
    """One key of the format as the schema states it: `methods[].lr`, its property schema
    (the very dict inside the document) and whether it must be given."""

    path: str
    schema: dict[str, Any]
    required: bool


def _draft_07(node: Any) -> Any:
    """pydantic's 2020-12 forms in draft-07 spelling: tuple `prefixItems` become `items`
    lists, `$defs` become `definitions`, and a `$ref` with sibling keywords (ignored beside
    a `$ref` in draft-07) moves into an `allOf`. Titles are dropped: descriptions say it."""
    if isinstance(node, list):
        return [_draft_07(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _draft_07(value) for key, value in node.items() if key != "title"}
    if "prefixItems" in node:
        node["items"] = node.pop("prefixItems")
    if "$defs" in node:
        node["definitions"] = node.pop("$defs")
    if "$ref" in node and len(node) > 1:
        node["allOf"] = [{"$ref": node.pop("$ref")}, *node.get("allOf", [])]
    return node


def _definition(root: dict[str, Any], reference: str) -> dict[str, Any]:
    name = reference.removeprefix("#/definitions/")
    definition: dict[str, Any] = root["definitions"][name]
    return definition


def _sections_of(root: dict[str, Any], schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The section definitions a property schema refers to directly (not through a list)."""
    found = []
    for option in [schema, *schema.get("allOf", []), *schema.get("anyOf", [])]:
        if "$ref" in option:
            found.append(_definition(root, option["$ref"]))
    return found


def keys(root: dict[str, Any]) -> Iterator[Key]:
    """Every key of the schema `root`, parents before children; list items appear as
    `methods[].name`."""

    def visit(section: dict[str, Any], prefix: str) -> Iterator[Key]:
        required = set(section.get("required", ()))
        for name, schema in section.get("properties", {}).items():
            path = prefix + name
            yield Key(path, schema, name in required)
            for inner in _sections_of(root, schema):
                yield from visit(inner, f"{path}.")
            items = schema.get("items")
            if isinstance(items, dict):
                for inner in _sections_of(root, items):
                    yield from visit(inner, f"{path}[].")

    yield from visit(root, "")


def _property_at(root: dict[str, Any], path: str) -> dict[str, Any]:
    return next(key.schema for key in keys(root) if key.path == path)


def _sweep_schema(root: dict[str, Any]) -> dict[str, Any]:
    """`sweep`: each sweepable key, with a non-empty list of values valid for that key."""
    entries = {}
    for path in sweepable_keys():
        values = copy.deepcopy(_property_at(root, path))
        description = values.pop("description")
        values.pop("default", None)
        entries[path] = {"type": "array", "minItems": 1, "items": values,
                         "description": f"values of {path} to run in turn: {description}"}
    sweep = root["properties"]["sweep"]
    return {"description": sweep["description"], "default": {},
            "type": "object", "properties": entries, "additionalProperties": False}


@cache
def _generated() -> str:
    schema = Scenario.model_json_schema(schema_generator=_FiniteNumbers,
                                        ref_template="#/definitions/{model}")
    root: dict[str, Any] = _draft_07(schema)
    root["properties"]["sweep"] = _sweep_schema(root)
    return json.dumps({"$schema": DIALECT, "title": "decentral-bench scenario", **root})


def plain_schema() -> dict[str, Any]:
    """The schema with each key's description as written in the models."""
    schema: dict[str, Any] = json.loads(_generated())
    return schema


def yaml_value(value: Any) -> str:
    """A value as YAML writes it on one line: `[64]`, `{kind: dirichlet, alpha: 0.1}`."""
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True,
                          sort_keys=False, width=10_000)
    return text.removesuffix("\n...\n").strip()


def shown(value: Any) -> str:
    """A default as a scenario file writes it: `metropolis`, `[64]`, `false`."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _with_default(key: Key) -> str:
    """The key's description ending with its default (or that it is required)."""
    text = key.schema["description"].rstrip(".")
    if key.required:
        return f"{text}. Required."
    default = key.schema.get("default")
    if default is None or isinstance(default, dict) or "Default:" in text:
        return f"{text}."
    return f"{text}. Default: {shown(default) if default != '' else 'empty'}."


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the scenario format, for editors: every key's description ends
    with its default."""
    root = plain_schema()
    for key in list(keys(root)):
        if "description" in key.schema:
            key.schema["description"] = _with_default(key)
    return root


def schema_text() -> str:
    """The schema as the repository keeps it in `scenario.schema.json`."""
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"
