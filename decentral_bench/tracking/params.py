"""The MLflow params of a child run: the settings that define it, each once.

Only set values (no `None`, no empty list, no switched-off flag), only what
applies to the method (no graph for FedAvg or centralized SGD), and the
effective value where a method overrides the scenario: `training.lr` is the
step size the method ran with, `method.momentum` the momentum after the
registry's default. The full resolved scenario is the parent's YAML artifact.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from pydantic import BaseModel

from decentral_bench.experiment.plan import MethodPlan

# Sections that name or organise runs, or that a child states elsewhere (tags, the run's
# own `engine` param, the method's own keys).
NOT_PARAMS = {"name", "description", "methods", "sweep", "tracking", "report"}


def _is_set(value: Any) -> bool:
    return value is not None and value is not False and value != [] and value != {}


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mapping → {"a.b.c": "value"} of its set values; lists become JSON."""
    flat: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        elif not _is_set(value):
            continue
        elif isinstance(value, list | tuple):
            flat[name] = json.dumps(value)
        else:
            flat[name] = str(value)
    return flat


def _number(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def resolved_options(plan: MethodPlan) -> dict[str, Any]:
    """The algorithm's own keys after the registry's defaults, sections as mappings."""
    return {key: value.model_dump(mode="json", exclude_none=True)
            if isinstance(value, BaseModel) else value for key, value in plan.options.items()}


def adversary_params(plan: MethodPlan, section: Mapping[str, Any] | None) -> dict[str, str]:
    """The adversaries as the file gives them, and who attacked how in this run: the
    attackers drawn and the attack's resolved parameters (or why there are none)."""
    if section is None:
        return {}
    params = flatten(section, "adversaries.")
    adversaries = plan.adversaries
    if adversaries is None:
        params["adversaries.attackers"] = "none" if not plan.definition.single_agent \
            else "not applicable"
        return params
    params["adversaries.attackers"] = json.dumps(sorted(adversaries.attackers))
    params.update({f"adversaries.attack.{key}": _number(value)
                   for key, value in asdict(adversaries.attack).items()
                   if key == "kind" or _applies(adversaries.attack.kind, key)})
    return params


def _applies(kind: str, parameter: str) -> bool:
    """Whether an attack's parameter is one `kind` uses."""
    return parameter == {"sign_flip": "scale", "gaussian": "std", "alie": "z",
                         "ipm": "epsilon", "dissensus": "epsilon"}.get(kind)


def method_params(plan: MethodPlan, engine: str) -> dict[str, str]:
    """A child's params: data, model, effective training settings, the method and its
    resolved options (its aggregation, on a graph), the graph and its spectrum (gossip
    methods with a graph), the failures, the attackers and their attack, the device and
    the engine that ran it."""
    scenario = plan.scenario.model_dump(mode="json", exclude_none=True, exclude=NOT_PARAMS)
    topology = scenario.pop("topology")
    scenario["resources"].pop("engine", None)
    training = scenario["training"]
    training.update(rounds=plan.rounds, lr=plan.lr, batch_size=plan.batch_size)
    if plan.method.epochs is not None:
        training["epochs"] = plan.method.epochs
    if plan.is_gossip:
        training["local_steps"] = plan.local_steps
    else:
        training.pop("local_steps", None)
    adversaries = scenario.pop("adversaries", None)
    params = flatten(scenario)
    params.update(flatten({"name": plan.method.name, "algorithm": plan.algorithm,
                           **resolved_options(plan)}, "method."))
    if plan.has_graph:
        params.update(flatten(asdict(plan.aggregation), "method.aggregation."))
    params.update(adversary_params(plan, adversaries))
    params["agents"] = str(plan.agents)
    params["engine"] = engine
    if plan.has_graph:
        topology.pop("agents", None)
        params.update(flatten(topology, "topology."))
        params.update({f"topology.{key}": _number(value)
                       for key, value in plan.topology.summary().items() if key != "agents"})
    return params
