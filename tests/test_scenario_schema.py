"""The exported JSON Schema agrees with the loader: on the shipped scenarios, on a corpus
of malformed ones, and on scenarios generated from the schema itself; and the schema
file, the docs' key table and the descriptions are complete and current."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import given
from hypothesis_jsonschema import from_schema

from decentral_bench.scenario import ScenarioError, json_schema, load, parse, read_yaml
from decentral_bench.scenario.export import SCHEMA_FILE, keys, schema_text
from decentral_bench.scenario.keytable import KEY_PAGE, UNEXPRESSED, key_section

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted((REPO / "scenarios").rglob("*.yaml"))
MALFORMED = sorted((Path(__file__).parent / "malformed").glob("*.yaml"))
SCHEMA = jsonschema.Draft7Validator(json_schema())


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    """A validator of the schema file kept in the repository, as an editor reads it."""
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def _documented(error: ScenarioError) -> bool:
    """Whether every problem the loader found is a rule the key page lists as beyond the
    schema."""
    return all(any(rule.explains(message) for rule in UNEXPRESSED)
               for _, message in error.problems)


def test_the_schema_file_is_current() -> None:
    assert SCHEMA_FILE.read_text() == schema_text(), \
        "scenario.schema.json is stale: run `make docs`"


def test_the_docs_key_table_is_current() -> None:
    assert key_section() in KEY_PAGE.read_text(), \
        f"{KEY_PAGE.name}'s table of scenario keys is stale: run `make docs`"


def test_every_key_has_a_description_that_states_its_default() -> None:
    schema = json_schema()
    found = list(keys(schema))
    assert len(found) > 70
    undescribed = [key.path for key in found if not key.schema.get("description")]
    assert undescribed == []
    sweep = schema["properties"]["sweep"]["properties"]
    assert all(entry["description"].startswith(f"values of {path}")
               for path, entry in sweep.items())
    silent = [key.path for key in found if not isinstance(key.schema.get("default"), dict)
              and not any(word in key.schema["description"]
                          for word in ("Default", "default", "Required"))]
    assert silent == []


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: path.name)
def test_shipped_scenarios_pass_the_schema_and_name_it(
        path: Path, validator: jsonschema.Draft7Validator) -> None:
    text = path.read_text()
    problems = [error.message for error in validator.iter_errors(yaml.safe_load(text))]
    assert problems == []
    load(path)
    first = text.splitlines()[0]
    assert first.startswith("# yaml-language-server: $schema=")
    assert (path.parent / first.split("=", 1)[1]).resolve() == SCHEMA_FILE


@pytest.mark.parametrize("path", MALFORMED, ids=lambda path: path.stem)
def test_malformed_scenarios_fail_the_loader_and_the_schema(
        path: Path, validator: jsonschema.Draft7Validator) -> None:
    with pytest.raises(ScenarioError) as caught:
        load(path)
    data = yaml.safe_load(path.read_text())
    if _documented(caught.value):
        # A rule beyond JSON Schema: the key page lists it, and the schema lets it through.
        assert validator.is_valid(data), caught.value
    else:
        assert not validator.is_valid(data), caught.value


def test_the_corpus_covers_each_documented_rule() -> None:
    messages = []
    for path in MALFORMED:
        try:
            load(path)
        except ScenarioError as error:
            messages += [message for _, message in error.problems]
    assert all(any(rule.explains(message) for message in messages) for rule in UNEXPRESSED)


def _without_rules(node: Any) -> Any:
    """The schema less its rules between keys and its NaN guards: hypothesis-jsonschema
    generates from it quickly, and what it generates tests the rules from both sides."""
    if isinstance(node, list):
        return [_without_rules(item) for item in node]
    if not isinstance(node, dict):
        return node
    return {key: _without_rules(value) for key, value in node.items()
            if key != "not" and not (key == "allOf" and all("if" in c for c in value))}


@given(from_schema(_without_rules(json_schema())))
def test_schema_and_loader_agree_on_generated_scenarios(data: dict[str, Any]) -> None:
    """Every key well-typed and in bounds, the rules between keys kept or broken at random:
    the schema accepts exactly the scenarios the loader accepts, but for the rules the
    key page lists as beyond JSON Schema. The examples are the same on every run
    (tests/conftest.py's Hypothesis profiles); `make test-explore` draws new ones."""
    schema_accepts = SCHEMA.is_valid(data)
    try:
        parse(data, "<generated>")
    except ScenarioError as error:
        assert not schema_accepts or _documented(error), error
    else:
        assert schema_accepts, json.dumps(data)


def test_yaml_numbers_and_strict_values() -> None:
    assert read_yaml("lr: 1e-3\nsteps: 1_000\nname: '1e-3'") == \
        {"lr": 0.001, "steps": 1000, "name": "1e-3"}
    base = {"name": "x", "methods": [{"name": "a", "algorithm": "cdsgd"}]}
    assert parse({**base, "training": {"lr": 1}}).training.lr == 1.0
    with pytest.raises(ScenarioError, match=r"training\.lr: Input should be a valid number"):
        parse({**base, "training": {"lr": "0.1"}})
    with pytest.raises(ScenarioError, match=r"topology\.agents: Input should be a valid int"):
        parse({**base, "topology": {"agents": 4.0}})


@pytest.mark.parametrize("address", ["auto", "10.0.0.5:6379", "[::1]:6379", "head:6379\n",
                                     "head", ":6379", "head:²", "he ad:1", "U\x8a<", ""])
def test_schema_and_loader_agree_on_ray_addresses(address: str) -> None:
    data = {"name": "x", "methods": [{"name": "a", "algorithm": "cdsgd"}],
            "resources": {"ray_address": address}}
    try:
        loaded = parse(data).resources.ray_address
    except ScenarioError as error:
        assert "expected HOST:PORT of a Ray head" in str(error)
        assert not SCHEMA.is_valid(data)
    else:
        assert SCHEMA.is_valid(data) and loaded == address.rstrip("\n")


def test_a_folder_under_an_unknown_users_home_is_taken_literally(tmp_path: Path) -> None:
    """As a shell keeps `~nosuchuser`: no crash while loading; the folder check of
    `validate` then names the missing folder."""
    data = {"name": "x", "methods": [{"name": "a", "algorithm": "cdsgd"}],
            "dataset": {"name": "mnist", "root": "~no-such-user-here/data"}}
    assert parse(data, base=tmp_path).dataset.root == \
        str(tmp_path / "~no-such-user-here" / "data")
    assert parse({**data, "dataset": {"name": "mnist", "root": "~/data"}}).dataset.root == \
        str(Path.home() / "data")
