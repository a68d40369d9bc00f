"""Expanding a scenario into runs: every sweep combination × seed × method.

Each run gets the fully resolved scenario it runs (sweep values applied, one
seed, no sweep left) and a hash of it, which is how a re-run recognises the
children it has already finished.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from decentral_bench.scenario import Scenario, ScenarioError, parse, set_key

# Keys that do not change what a run computes, left out of its hash.
NOT_HASHED = ("name", "description", "tracking", "report", "resources")


def configuration_hash(scenario: Scenario, method: str) -> str:
    """A stable hash of what one run computes: the resolved scenario and the method."""
    data = scenario.model_dump(mode="json", exclude=set(NOT_HASHED))
    data["methods"] = [m for m in data["methods"] if m["name"] == method]
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def scenario_hash(scenario: Scenario) -> str:
    """A stable hash of a whole scenario (all methods, the sweep, the seeds)."""
    text = json.dumps(scenario.model_dump(mode="json", exclude=set(NOT_HASHED) - {"name"}),
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def swept_text(value: Any) -> str:
    """A swept value as a label shows it: a section by its kind and keys
    (`dirichlet(alpha=0.1)`, `shards(classes_per_agent=2)`), a list joined by commas, any
    other value as it is written."""
    if isinstance(value, dict):
        keys = ",".join(f"{key}={swept_text(item)}" for key, item in value.items()
                        if key != "kind" and item is not None)
        kind = str(value.get("kind", ""))
        return f"{kind}({keys})" if kind and keys else kind or f"({keys})"
    if isinstance(value, list | tuple):
        return ",".join(swept_text(item) for item in value)
    return str(value)


@dataclass(frozen=True)
class RunSpec:
    """One child run: a method on one resolved scenario with one seed."""

    scenario: Scenario
    method: str
    swept: tuple[tuple[str, Any], ...]
    seed: int

    @property
    def config_hash(self) -> str:
        return configuration_hash(self.scenario, self.method)

    @property
    def label(self) -> str:
        """The method and the swept values: what the report groups seeds by."""
        values = " ".join(f"{path.rsplit('.', 1)[-1]}={swept_text(value)}"
                          for path, value in self.swept)
        return f"{self.method} {values}".strip()

    @property
    def name(self) -> str:
        return f"{self.label} seed={self.seed}"


def expand(scenario: Scenario, source: str = "<scenario>") -> list[RunSpec]:
    """All runs of a scenario, in order: combination, then seed, then method.

    Swept file names (an edges file, a matrix file) are taken relative to the scenario
    file's folder, as the file's own are."""
    data_base = scenario.model_dump(mode="json", exclude={"sweep"})
    data_base["training"]["seeds"] = None
    folder = Path(source).parent if Path(source).is_file() else None
    seeds = scenario.training.seeds or (scenario.training.seed,)
    paths = list(scenario.sweep)
    specs = []
    for values in itertools.product(*(scenario.sweep[path] for path in paths)):
        swept = tuple(zip(paths, values, strict=True))
        for seed in seeds:
            data = copy.deepcopy(data_base)
            for path, value in swept:
                set_key(data, path, value, source)
            data["training"]["seed"] = seed
            try:
                resolved = parse(data, source, base=folder)
            except ScenarioError as error:
                combination = ", ".join(f"{path}={value!r}" for path, value in swept)
                raise ScenarioError(source, [(f"sweep ({combination})", message) if not key
                                             else (f"sweep ({combination}): {key}", message)
                                             for key, message in error.problems]) from None
            specs += [RunSpec(resolved, method.name, swept, seed) for method in resolved.methods]
    return specs
