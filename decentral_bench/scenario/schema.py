"""A whole scenario file: the top-level `Scenario` and its JSON Schema."""

from __future__ import annotations

import json
from typing import Any

from pydantic import Field, field_validator, model_validator

from decentral_bench.scenario.errors import KeyedError
from decentral_bench.scenario.graph import TopologyConfig
from decentral_bench.scenario.methods import MethodConfig
from decentral_bench.scenario.sections import (
    DatasetConfig,
    FailuresConfig,
    ModelConfig,
    ReportConfig,
    ResourcesConfig,
    Strict,
    TrackingConfig,
    TrainingConfig,
)

# Keys a sweep may not vary: they name or organise the runs rather than define one.
UNSWEEPABLE = ("name", "description", "methods", "sweep", "tracking", "training.seeds",
               "training.seed")


class Scenario(Strict):
    """A whole scenario: what to train, on which graph, with which methods."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str = ""
    dataset: DatasetConfig = DatasetConfig()
    model: ModelConfig = ModelConfig()
    topology: TopologyConfig = TopologyConfig()
    training: TrainingConfig = TrainingConfig()
    methods: tuple[MethodConfig, ...]
    failures: FailuresConfig = FailuresConfig()
    tracking: TrackingConfig = TrackingConfig()
    resources: ResourcesConfig = ResourcesConfig()
    report: ReportConfig = ReportConfig()
    sweep: dict[str, tuple[Any, ...]] = Field(
        default_factory=dict, description="dotted key → values; every combination runs")

    @field_validator("sweep")
    @classmethod
    def _sweep_paths(cls, value: dict[str, tuple[Any, ...]]) -> dict[str, tuple[Any, ...]]:
        for path, values in value.items():
            if path in UNSWEEPABLE or path.split(".")[0] in ("methods", "tracking", "sweep"):
                hint = " (use training.seeds)" if path.startswith("training.seed") else ""
                raise ValueError(f"'{path}' cannot be swept{hint}")
            if not is_scenario_key(path):
                raise ValueError(f"unknown key '{path}': a sweep path must name a scenario "
                                 "key, e.g. topology.agents or dataset.partition.alpha")
            if not values:
                raise ValueError(f"'{path}' needs at least one value")
        return value

    def __hash__(self) -> int:
        return hash(self.to_json())

    @model_validator(mode="after")
    def _failures_fit(self) -> Scenario:
        failures, agents, rounds = self.failures, self.topology.agents, self.training.rounds
        problems = []
        for index, crash in enumerate(failures.agents):
            if crash.agent >= agents:
                problems.append(f"failures.agents[{index}].agent is {crash.agent} but agents are "
                                f"numbered 0..{agents - 1}")
            if rounds is not None and crash.round > rounds:
                problems.append(f"failures.agents[{index}].round {crash.round} is after the last "
                                f"round ({rounds})")
        if failures.server is not None and rounds is not None and failures.server.round >= rounds:
            problems.append(f"failures.server.round {failures.server.round} must be below "
                            f"training.rounds ({rounds}) for the failure to happen")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _control_phases_exist(self) -> Scenario:
        training = self.training
        phases = len(training.milestones) + 1 if training.milestones else 1
        for index, method in enumerate(self.methods):
            control = method.consensus_control
            beyond = [p for p in control.phases or () if p > phases] if control else []
            if beyond:
                split = f"training.milestones {list(training.milestones)}" \
                    if training.milestones else "a schedule without milestones"
                raise KeyedError(f"methods[{index}].consensus_control.phases",
                                 f"phase {beyond[0]} does not exist: {split} gives {phases} "
                                 f"phase{'s' if phases > 1 else ''}")
        return self

    @field_validator("model", mode="before")
    @classmethod
    def _model_shorthand(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @field_validator("methods")
    @classmethod
    def _unique_names(cls, value: tuple[MethodConfig, ...]) -> tuple[MethodConfig, ...]:
        if not value:
            raise ValueError("list at least one method, e.g. [{name: CDSGD, algorithm: cdsgd}]")
        names = [method.name for method in value]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"method names must be unique; repeated: {', '.join(duplicates)}")
        return value

    def method(self, name: str) -> MethodConfig:
        """The method called `name`."""
        for method in self.methods:
            if method.name == name:
                return method
        known = ", ".join(m.name for m in self.methods)
        raise KeyError(f"scenario '{self.name}' has no method '{name}' (it has: {known})")

    def to_json(self) -> str:
        """A canonical JSON form, the same for equal scenarios."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True)


def is_scenario_key(dotted: str) -> bool:
    """Whether `a.b.c` names a field of the scenario schema."""
    current: Any = Scenario
    for part in dotted.split("."):
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return False
        annotation = fields[part].annotation
        models = [arg for arg in getattr(annotation, "__args__", ())
                  if hasattr(arg, "model_fields")]
        current = models[0] if models else annotation
    return True




def json_schema() -> dict[str, Any]:
    """The JSON Schema of the scenario format, for editors."""
    return Scenario.model_json_schema()
