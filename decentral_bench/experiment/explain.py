"""`decentral-bench validate FILE --explain`: what a scenario will run, before it runs.

The scenario with every default filled in — a method's from the training section and
the method registry; a key left unset says, as a comment, what stands in for it — and
keys that do not apply (alpha of an iid partition) left out. Then every child run (each
sweep combination × seed × method) with its run name, its rounds and the epochs those
rounds make: rounds × the passes over its own data an average agent makes per round
(`MethodPlan.epochs_per_round`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from decentral_bench.experiment.data import DataError
from decentral_bench.experiment.plan import MethodPlan
from decentral_bench.experiment.sweep import RunSpec, expand
from decentral_bench.scenario.base import Strict
from decentral_bench.scenario.export import keys, plain_schema, yaml_value
from decentral_bench.scenario.rules import OnlyWith
from decentral_bench.scenario.schema import Scenario


def _applies(section: Strict, key: str) -> bool:
    """Whether `key` applies to `section` as its rules say (`alpha` only to dirichlet)."""
    return all(rule.condition.holds(section) for rule in type(section).rules
               if isinstance(rule, OnlyWith) and rule.key == key)


def effective_method(plan: MethodPlan) -> dict[str, Any]:
    """Every key the method's algorithm takes, with the value it runs with: its own, else
    the training section's or the registry's default."""
    method = plan.method
    settings: dict[str, Any] = {"name": method.name, "algorithm": method.algorithm}
    for key in type(method).model_fields:
        if key in settings or not _applies(method, key):
            continue
        value = getattr(method, key)
        if key == "topology":  # a graph of its own: the whole topology it runs on
            if value is not None:
                settings[key] = _as_data(plan.scenario.topology)
            continue
        try:
            if value is None and hasattr(MethodPlan, key):
                value = getattr(plan, key)
            elif value is None and key in plan.definition.options:
                value = plan.option(key)
        except DataError:  # epochs, or rounds from epochs, need the data set's size
            value = None
        settings[key] = _as_data(value)  # a section (consensus_control) as plain data
    return settings


def _as_data(value: Any) -> Any:
    """A section (consensus_control) or a plan's resolved value (aggregation) as plain data."""
    if isinstance(value, Strict):
        return {key: _as_data(getattr(value, key)) for key in type(value).model_fields
                if _applies(value, key)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: _as_data(getattr(value, field.name))
                for field in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_as_data(item) for item in value]
    if isinstance(value, dict):
        return {key: _as_data(item) for key, item in value.items()}
    return value


def resolved(scenario: Scenario) -> dict[str, Any]:
    """The scenario as data: every key that applies, methods with their effective values."""
    data: dict[str, Any] = _as_data(scenario)
    data["methods"] = [effective_method(MethodPlan.of(scenario, method.name))
                       for method in scenario.methods]
    return data


def _stands_in(description: str) -> str:
    """What a description says stands in for an unset key: `Default: training.seed`."""
    _, found, rest = description.partition("Default: ")
    return f"  # default: {rest.rstrip('.')}" if found else ""


def as_yaml(data: dict[str, Any], prefix: str = "", indent: str = "") -> list[str]:
    """YAML lines of `data`, block style, an unset key followed by what stands in for it."""
    described = {key.path: key.schema["description"] for key in keys(plain_schema())}
    lines = []
    for name, value in data.items():
        path = f"{prefix}{name}"
        if isinstance(value, dict) and value:
            lines += [f"{indent}{name}:", *as_yaml(value, f"{path}.", indent + "  ")]
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            lines.append(f"{indent}{name}:")
            for item in value:
                block = as_yaml(item, f"{path}[].", indent + "    ")
                lines += [f"{indent}  - {block[0].lstrip()}", *block[1:]]
        else:
            note = _stands_in(described.get(path, "")) if value is None else ""
            lines.append(f"{indent}{name}: {yaml_value(value)}{note}")
    return lines


@dataclass(frozen=True)
class PlannedRun:
    """One child run as `run` will start it."""

    name: str
    rounds: int | None  # None where the data set cannot be read here (and
    epochs_per_round: float | None  # the method's budget is in epochs)

    @property
    def epochs(self) -> float | None:
        if self.rounds is None or self.epochs_per_round is None:
            return None
        return self.rounds * self.epochs_per_round


def planned(spec: RunSpec) -> PlannedRun:
    plan = MethodPlan.of(spec.scenario, spec.method)
    try:
        per_round: float | None = plan.epochs_per_round
        rounds: int | None = plan.rounds
    except DataError:
        per_round = None
        rounds = plan.method.rounds or spec.scenario.training.rounds
    return PlannedRun(spec.name, rounds, per_round)


def _count(number: int, thing: str) -> str:
    return f"{number} {thing}{'' if number == 1 else 's'}"


def _number(value: float | None, digits: int) -> str:
    return "?" if value is None else f"{value:.{digits}f}"


def explanation(scenario: Scenario, source: str) -> str:
    """The fully resolved scenario and its runs, as text."""
    specs = expand(scenario, source)
    runs = [planned(spec) for spec in specs]
    combinations = 1
    for values in scenario.sweep.values():
        combinations *= len(values)
    seeds = len(scenario.training.seeds or (scenario.training.seed,))
    width = max(len(run.name) for run in runs)
    once = {spec.method: spec.shared for spec in specs if spec.shared}
    lines = [f"# {source}: {scenario.name}, every default filled in",
             *as_yaml(resolved(scenario)), "",
             f"# {_count(len(runs), 'run')}: {_count(combinations, 'sweep combination')} × "
             f"{_count(seeds, 'seed')} × {_count(len(scenario.methods), 'method')}"
             + (", less the repeats of methods that ignore a swept key" if once else ""),
             *(f"# {method} does not read {', '.join(keys)}: one run for all its values"
               for method, keys in once.items()),
             f"{'run':<{width}}  {'rounds':>7}  {'epochs/round':>12}  {'epochs':>8}"]
    lines += [f"{run.name:<{width}}  {run.rounds or '?':>7}  "
              f"{_number(run.epochs_per_round, 4):>12}  {_number(run.epochs, 2):>8}"
              for run in runs]
    if any(run.epochs is None for run in runs):
        lines.append("(?: the data set cannot be read here, so its size is unknown)")
    return "\n".join(lines) + "\n"
