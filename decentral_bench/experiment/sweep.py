"""Expanding a scenario into runs: every sweep combination × seed × method.

Each run gets the fully resolved scenario it runs (sweep values applied, one
seed, no sweep left) and a hash of its effective settings, which is how a re-run
recognises the children it has already finished. A method that ignores a swept
key (FedAvg does not read `topology.kind`) runs once for all its values, not once
per value: one run per distinct effective setting.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from decentral_bench.experiment.effective import computed_settings, effective_settings, reads
from decentral_bench.scenario import Scenario, ScenarioError, parse, set_key
from strategies.registry import method as registry_entry


def _digest(data: Any) -> str:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def configuration_hash(scenario: Scenario, method: str) -> str:
    """A stable hash of what one run computes: its effective settings."""
    return _digest(effective_settings(scenario, method))


def scenario_hash(scenario: Scenario) -> str:
    """A stable hash of the experiment a scenario is: its name, every method and setting,
    and which keys it sweeps, but not its seeds nor the swept values, which a re-run may
    add to. A scenario run resumes a parent run only of the same hash: any other change
    (a `--set`, an edited file) is another experiment, with a parent of its own."""
    data = computed_settings(scenario, keep=("name",))
    data["training"].pop("seed", None)
    data["training"].pop("seeds", None)
    data["sweep"] = sorted(data["sweep"])
    return _digest(data)


def swept_names(paths: Sequence[str]) -> dict[str, str]:
    """How labels name each swept key: its last part (`agents`), or as many of its last
    parts as tell it from the other swept keys (`topology.kind`, `partition.kind`)."""
    names = {}
    for path in paths:
        parts = path.split(".")
        size = 1
        while size < len(parts) and any(other != path and other.split(".")[-size:] ==
                                        parts[-size:] for other in paths):
            size += 1
        names[path] = ".".join(parts[-size:])
    return names


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
    swept: tuple[tuple[str, Any], ...]  # the swept keys the method reads, with their values
    seed: int
    names: tuple[str, ...] = ()  # each swept key's name in the label (default: its last part)
    shared: tuple[str, ...] = ()  # swept keys the method ignores: the run serves every value
    # The method's place in the file's `methods` when it runs on a graph of its own (its
    # scenario then lists it alone, `Scenario.for_method`); None otherwise.
    own_graph_index: int | None = None

    @property
    def config_hash(self) -> str:
        return configuration_hash(self.scenario, self.method)

    @property
    def label(self) -> str:
        """The method and the swept values it reads, each named so that no two swept keys
        read alike: what the report groups seeds by."""
        names = self.names or tuple(path.rsplit(".", 1)[-1] for path, _ in self.swept)
        values = " ".join(f"{name}={swept_text(value)}" for name, (_, value)
                          in zip(names, self.swept, strict=True))
        return f"{self.method} {values}".strip()

    @property
    def name(self) -> str:
        return f"{self.label} seed={self.seed}"


def expand(scenario: Scenario, source: str = "<scenario>") -> list[RunSpec]:
    """All runs of a scenario, in order: combination, then seed, then method; a method's
    run whose effective settings an earlier one has already (a swept key it ignores)
    is left out, the earlier one standing for it.

    Swept file names (an edges file, a matrix file) are taken relative to the scenario
    file's folder, as the file's own are."""
    data_base = scenario.model_dump(mode="json", exclude={"sweep"})
    data_base["training"]["seeds"] = None
    folder = Path(source).parent if Path(source).is_file() else None
    seeds = scenario.training.seeds or (scenario.training.seed,)
    paths = list(scenario.sweep)
    names = swept_names(paths)
    specs: list[RunSpec] = []
    seen: set[str] = set()
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
            for entry in resolved.methods:
                spec = _run_spec(resolved, entry.name, swept, seed, names)
                if spec.config_hash not in seen:
                    seen.add(spec.config_hash)
                    specs.append(spec)
    return specs


def _run_spec(resolved: Scenario, method: str, swept: tuple[tuple[str, Any], ...], seed: int,
              names: dict[str, str]) -> RunSpec:
    """One method's run of a resolved combination, named by the swept keys it reads (on its
    own graph where it has one: `Scenario.for_method`)."""
    entry = resolved.method(method)
    index = [m.name for m in resolved.methods].index(method) \
        if entry.topology is not None else None
    resolved = resolved.for_method(method)
    definition = registry_entry(entry.algorithm)

    def read(path: str) -> bool:  # a topology key the method sets itself is not read
        own_key = path.startswith("topology.") and entry.topology is not None and \
            path.split(".")[1] in entry.topology
        return not own_key and reads(definition, resolved, path)

    own = tuple((path, value) for path, value in swept if read(path))
    return RunSpec(resolved, method, own, seed, names=tuple(names[path] for path, _ in own),
                   shared=tuple(path for path, _ in swept if not read(path)),
                   own_graph_index=index)
