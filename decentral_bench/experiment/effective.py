"""A run's effective settings: what its method reads of the resolved scenario.

They are the resolved scenario less what changes no run's computation (its name and
description, where it is recorded, its report, what it runs on but the number type),
less the other methods, and less the keys the run's method ignores:

- a server-based method (FedAvg and Flower's other stock strategies) reads no graph: of
  the topology only the number of agents it splits the data over, no link failures, and
  no `training.local_steps` (it trains `local_epochs` a round);
- a single-agent method (centralized SGD) reads no topology, no partition (its one agent
  holds all the data) and no failures;
- a gossip method has no server to lose (`failures.server`);
- a single-agent method reads no `adversaries`, and a run with none drawn
  (`adversaries.count: 0`) reads only how many: with a sweep over the attacker count and
  the attack, the clean run is one run per method, not one per attack.

This is the one place a run's identity comes from: its configuration hash (what a re-run
recognises finished children by, and what runs a method once per distinct setting of a
sweep) and which swept values name it.
"""

from __future__ import annotations

from typing import Any

from decentral_bench.scenario import Scenario, TopologyConfig
from decentral_bench.scenario.adversaries import attacker_count
from strategies.registry import Method, method

# Sections that do not change what a run computes (of `resources`, `dtype` does).
NOT_COMPUTED = ("name", "description", "tracking", "report", "resources")
# The keys runs were first recorded with, of each method and of the sections whose keys
# grew since: every key added later (`aggregation`, `topology.schedule`, ...) is in a
# run's identity only when set, so a store's finished runs are recognised after an upgrade.
FIRST_KEYS = {
    "methods": frozenset({
        "algorithm", "batch_size", "consensus_control", "epochs", "fraction", "local_epochs",
        "local_steps", "lr", "momentum", "momentum_buffer", "name", "rounds", "variant"}),
    "topology": frozenset({
        "agents", "cols", "degree", "edges", "k", "kind", "lazy", "matrix_file", "mixing", "p",
        "rows", "seed", "target_lambda2"}),
}
# What a run with no attacker drawn does not read of its `adversaries`.
UNREAD_WITHOUT_ATTACKERS = ("adversaries.attack", "adversaries.seed", "adversaries.from_round")


def computed_settings(scenario: Scenario, keep: tuple[str, ...] = ()) -> dict[str, Any]:
    """The scenario as JSON-ready data without the sections of `NOT_COMPUTED` (but those in
    `keep`), less its optional sections left unset. `resources.dtype` and
    `training.deterministic` are in it only when set away from their defaults, and keys
    added after `FIRST_KEYS` only when set, so that the hashes of runs
    recorded before the keys existed stay."""
    data = without_unset_sections(
        scenario.model_dump(mode="json", exclude=set(NOT_COMPUTED) - set(keep)))
    if not data["training"]["deterministic"]:
        del data["training"]["deterministic"]
    if scenario.resources.dtype != "float32":
        data["resources"] = {"dtype": scenario.resources.dtype}
    data["methods"] = [first_or_set(entry, FIRST_KEYS["methods"]) for entry in data["methods"]]
    data["topology"] = first_or_set(data["topology"], FIRST_KEYS["topology"])
    return data


def first_or_set(entry: dict[str, Any], first: frozenset[str]) -> dict[str, Any]:
    """`entry` less the keys added after `first` that are left unset."""
    return {key: value for key, value in entry.items() if key in first or value is not None}


def ignored_keys(definition: Method, scenario: Scenario) -> tuple[str, ...]:
    """The dotted scenario keys (whole sections or single keys) a method does not read in
    `scenario`."""
    adversaries = scenario.adversaries
    unattacked = UNREAD_WITHOUT_ATTACKERS if adversaries is not None and attacker_count(
        adversaries, scenario.topology.agents) == 0 else ()
    if definition.single_agent:
        return ("topology", "dataset.partition", "failures", "adversaries")
    if not definition.is_gossip:
        graph = tuple(f"topology.{key}" for key in TopologyConfig.model_fields if key != "agents")
        return (*graph, "failures.links", "training.local_steps", *unattacked)
    return ("failures.server", *unattacked)


def reads(definition: Method, scenario: Scenario, path: str) -> bool:
    """Whether a method reads the scenario key `path` (`topology.kind`) in `scenario`."""
    return not any(path == key or path.startswith(f"{key}.")
                   for key in ignored_keys(definition, scenario))


def without_unset_sections(data: dict[str, Any]) -> dict[str, Any]:
    """The data less its optional sections left unset (`network`), so adding such a section
    to the format changes no run's identity."""
    return {key: value for key, value in data.items() if value is not None}


def effective_settings(scenario: Scenario, method_name: str) -> dict[str, Any]:
    """The settings a method's run reads, as JSON-ready data (see the module's doc)."""
    data = computed_settings(scenario)
    data["methods"] = [entry for entry in data["methods"] if entry["name"] == method_name]
    for dotted in ignored_keys(method(scenario.method(method_name).algorithm), scenario):
        section, _, key = dotted.partition(".")
        if not key:
            data.pop(section, None)
        elif isinstance(data.get(section), dict):
            data[section].pop(key, None)
    return data
