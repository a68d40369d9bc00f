"""A whole scenario file: the top-level `Scenario`, its keys and which of them a sweep varies."""

from __future__ import annotations

import json
from functools import cache
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import (
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from decentral_bench.scenario.adversaries import AdversariesConfig, attacker_count
from decentral_bench.scenario.base import Strict
from decentral_bench.scenario.errors import KeyedError, did_you_mean
from decentral_bench.scenario.graph import TopologyConfig
from decentral_bench.scenario.methods import MethodConfig
from decentral_bench.scenario.network import NetworkConfig
from decentral_bench.scenario.rules import Shorthand
from decentral_bench.scenario.sections import (
    DatasetConfig,
    FailuresConfig,
    ModelConfig,
    ReportConfig,
    ResourcesConfig,
    TrackingConfig,
    TrainingConfig,
)
from strategies.attacks import NEEDS_NEIGHBOURS, alie_z
from strategies.registry import METHODS
from strategies.registry import method as registry_method

# Keys a sweep may not vary: they name or organise the runs rather than define one.
UNSWEEPABLE = ("name", "description", "methods", "sweep", "tracking", "training.seeds",
               "training.seed", "resources.parallel_runs", "resources.gpus_per_run")


class Scenario(Strict):
    """A whole scenario: what to train, on which graph, with which methods."""

    name: str = Field(
        min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$", description="the scenario's name: "
        "letters, digits, _ . - (names the MLflow experiment and parent run)")
    description: str = Field("", description="free text, recorded with the runs")
    dataset: DatasetConfig = Field(
        DatasetConfig(), description="the data set, its test split and its partition over "
        "the agents")
    model: Annotated[ModelConfig, Shorthand("name")] = Field(
        ModelConfig(), description="the network every agent trains: a name alone (`model: "
        "cnn_paper`) or a mapping with its keys (`{name: mlp, hidden: [64]}`)")
    topology: TopologyConfig = Field(
        TopologyConfig(), description="the communication graph of the agents and its "
        "mixing matrix Π")
    training: TrainingConfig = Field(
        TrainingConfig(), description="optimisation settings every method shares unless it "
        "overrides them")
    methods: tuple[MethodConfig, ...] = Field(
        json_schema_extra={"minItems": 1},
        description="the methods to compare, each run on the same data, graph and x_0")
    failures: FailuresConfig = Field(
        FailuresConfig(), description="failures to inject: the server, agents, links")
    adversaries: AdversariesConfig | None = Field(
        None, description="agents that attack (their published points replaced, or their "
        "labels flipped); every figure is then over the honest agents. Default: none")
    network: NetworkConfig | None = Field(
        None, description="latency, bandwidths and compute speed: every round is then timed "
        "in simulated seconds (sim_time_s). Default: none, rounds are not timed")
    tracking: TrackingConfig = Field(
        TrackingConfig(), description="where the MLflow runs go")
    resources: ResourcesConfig = Field(
        ResourcesConfig(), description="where and how the agents compute")
    report: ReportConfig = Field(
        ReportConfig(), description="what the comparison report measures")
    sweep: dict[str, tuple[Any, ...]] = Field(
        default_factory=dict, description="dotted key → list of values; every combination "
        "runs (× seeds × methods), e.g. {topology.agents: [2, 8, 16]}")

    @field_validator("sweep")
    @classmethod
    def _sweep_paths(cls, value: dict[str, tuple[Any, ...]], info: ValidationInfo,
                     ) -> dict[str, tuple[Any, ...]]:
        for path, values in value.items():
            if path in UNSWEEPABLE or path.split(".")[0] in ("methods", "tracking", "sweep"):
                hint = " (use training.seeds)" if path.startswith("training.seed") else ""
                raise ValueError(f"'{path}' cannot be swept{hint}")
            if path not in sweepable_keys():
                raise ValueError(f"unknown key '{path}'{did_you_mean(path, sweepable_keys())}: "
                                 "a sweep path must name a scenario key, e.g. topology.agents "
                                 "or dataset.partition.alpha")
            if not values:
                raise ValueError(f"'{path}' needs at least one value")
            for index, item in enumerate(values):
                _check_value(path, index, item, info.context)
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

    @model_validator(mode="after")
    def _one_step_methods(self) -> Scenario:
        """A gossip method that forbids `local_steps` takes one gradient step per round,
        whatever training.local_steps says for the others."""
        steps = self.training.local_steps
        for index, method in enumerate(self.methods):
            entry = METHODS[method.algorithm]
            if steps > 1 and entry.is_gossip and "local_steps" in entry.forbids:
                reason = entry.forbids["local_steps"].removesuffix("; remove 'local_steps'")
                raise KeyedError(f"methods[{index}]", (
                    f"training.local_steps is {steps}, but {reason}: keep "
                    "training.local_steps at 1 and give the other methods their own "
                    "local_steps"))
        return self

    @model_validator(mode="after")
    def _methods_fit_training_and_failures(self) -> Scenario:
        """A method whose rule gossips after every step (CHOCO) takes no local steps, and
        one that cannot lose a message runs without agent or link failures."""
        failing = "agents" if self.failures.agents else \
            "links" if self.failures.links is not None else None
        for index, entry in enumerate(self.methods):
            definition = METHODS[entry.algorithm]
            steps = entry.local_steps or self.training.local_steps
            if not definition.local_steps and steps > 1:
                where = "local_steps" if entry.local_steps else "training.local_steps"
                raise KeyedError(f"methods[{index}]", (
                    f"'{entry.name}' ({entry.algorithm}) gossips after every minibatch step, "
                    f"but {where} is {steps}: set local_steps: 1 on the method"))
            if not definition.failures and failing is not None:
                raise KeyedError(f"methods[{index}]", (
                    f"'{entry.name}' ({entry.algorithm}) runs on a graph that loses no "
                    f"message (each agent sums its neighbours' compressed differences), but "
                    f"failures.{failing} drops some: run it without failures"))
        return self

    @model_validator(mode="after")
    def _method_topologies_fit(self, info: ValidationInfo) -> Scenario:
        """A method's own graph is the scenario's topology with the method's keys in place
        of its own, on the same agents."""
        for index, entry in enumerate(self.methods):
            if entry.topology is None:
                continue
            if "agents" in entry.topology:
                raise KeyedError(f"methods[{index}].topology.agents", (
                    "a method's graph has the scenario's agents: remove the key and set "
                    "topology.agents (or sweep it)"))
            merged = _own_topology(self.topology, entry.topology)
            try:
                TopologyConfig.model_validate(merged, context=info.context)
            except ValidationError as error:
                first = error.errors()[0]
                where = ".".join(str(part) for part in first["loc"])
                raise KeyedError(f"methods[{index}].topology{'.' + where if where else ''}",
                                 str(first["msg"]).removeprefix("Value error, ")) from None
        return self

    def method_topology(self, name: str) -> TopologyConfig:
        """The graph method `name` runs on: the scenario's topology with the method's own
        keys in place (`MethodConfig.topology`)."""
        own = self.method(name).topology
        if own is None:
            return self.topology
        return TopologyConfig.model_validate(_own_topology(self.topology, own))

    def for_method(self, name: str) -> Scenario:
        """The scenario as method `name` runs it: itself, or, for a method with a graph of
        its own, that graph as the topology and that method alone (so every check and
        every setting a run reads sees the method's graph)."""
        entry = self.method(name)
        if entry.topology is None:
            return self
        return self.model_copy(update={"topology": self.method_topology(name),
                                       "methods": (entry,)})

    @model_validator(mode="after")
    def _asynchronous_methods_fit(self) -> Scenario:
        """An asynchronous method (AD-PSGD) runs on the simulated clock, over one undirected
        graph, with honest agents."""
        for index, entry in enumerate(self.methods):
            if not METHODS[entry.algorithm].asynchronous:
                continue
            name = f"'{entry.name}' ({entry.algorithm})"
            if self.network is None:
                raise KeyedError(f"methods[{index}]", (
                    f"{name} orders its agents' steps on the simulated clock, which the "
                    "scenario's network section sets: add one, e.g. network: {latency: 5 ms, "
                    "compute: {samples_per_second: 2000}}"))
            if self.topology.agents < 2:
                raise KeyedError("topology.agents", (
                    f"{name} averages with a neighbour at every step: it needs at least 2 "
                    "agents"))
            if self.method_topology(entry.name).schedule is not None:
                where = f"methods[{index}].topology.schedule" if entry.topology and \
                    "schedule" in entry.topology else "topology.schedule"
                raise KeyedError(where, (
                    f"{name} draws a neighbour of the graph at every step, so it takes no "
                    "time-varying schedule: remove topology.schedule or run another method"))
            if self.adversaries is not None:
                raise KeyedError(f"methods[{index}]", (
                    f"{name} is not modelled with attackers: remove adversaries or run "
                    "another method"))
        return self

    @model_validator(mode="after")
    def _adversaries_fit(self) -> Scenario:
        adversaries, agents = self.adversaries, self.topology.agents
        if adversaries is None:
            return self
        beyond = [a for a in adversaries.agents or () if a >= agents]
        if beyond:
            raise KeyedError("adversaries.agents", f"agent {beyond[0]} is not one of the "
                             f"agents 0..{agents - 1}")
        count = attacker_count(adversaries, agents)
        if count > agents:
            raise KeyedError("adversaries", f"{count} attackers are more than the {agents} "
                             "agents")
        if count == agents:
            raise KeyedError("adversaries", f"every agent is an attacker ({count} of "
                             f"{agents}): no honest agent is left to train or measure")
        kind = adversaries.attack.kind
        if kind == "alie" and adversaries.attack.z is None and count > 0:
            try:
                alie_z(agents, count)
            except ValueError as error:
                raise KeyedError("adversaries.attack.z", f"{error}; give z") from None
        return self

    @model_validator(mode="after")
    def _methods_take_the_attack(self) -> Scenario:
        if self.adversaries is None:
            return self
        kind = self.adversaries.attack.kind
        for index, entry in enumerate(self.methods):
            if entry.consensus_control is not None:
                raise KeyedError(f"methods[{index}].consensus_control", "consensus control "
                                 "does not run with adversaries; remove one of them")
            if entry.compression is not None:
                raise KeyedError(f"methods[{index}].compression", "compressed gossip does "
                                 "not run with adversaries (an attack reads and publishes "
                                 "uncompressed points); remove one of them")
            if kind in NEEDS_NEIGHBOURS and not registry_method(entry.algorithm).is_gossip:
                raise KeyedError(f"methods[{index}]", f"attack '{kind}' reads the honest "
                                 f"neighbours' points, which a {entry.algorithm} client never "
                                 "sees; use sign_flip, gaussian or label_flip, or a gossip "
                                 "method")
        return self

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


def _own_topology(scenario: TopologyConfig, own: dict[str, Any]) -> dict[str, Any]:
    """A method's topology keys over the scenario's: a method that names its own `kind`
    starts afresh on that kind, keeping only the scenario's agents and seed; one that does
    not replaces single keys of the scenario's topology."""
    base = scenario.model_dump(mode="json", exclude_unset=True)
    if "kind" in own:
        base = {key: value for key, value in base.items() if key in ("agents", "seed")}
    return {**base, **own}


def _sections(field: FieldInfo) -> list[type[Strict]]:
    """The sections (mappings of keys) a field holds directly, not inside a list."""
    annotation = field.annotation
    options = get_args(annotation) if get_origin(annotation) in (Union, UnionType) \
        else (annotation,)
    return [option for option in options if _is_section(option)]


def _is_section(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, Strict)


@cache
def scenario_keys() -> dict[str, FieldInfo]:
    """Every dotted key of the format (`topology.agents`, `dataset.partition.alpha`) with
    its field, sections included; keys inside lists (methods, failures.agents) are left out,
    since one dotted path cannot name them."""
    keys: dict[str, FieldInfo] = {}

    def visit(section: type[Strict], prefix: str) -> None:
        for name, field in section.model_fields.items():
            keys[prefix + name] = field
            for inner in _sections(field):
                visit(inner, f"{prefix}{name}.")

    visit(Scenario, "")
    return keys


@cache
def sweepable_keys() -> tuple[str, ...]:
    """The keys a sweep may vary: every scenario key but those that organise the runs."""
    return tuple(path for path in scenario_keys() if path not in UNSWEEPABLE
                 and path.split(".")[0] not in ("methods", "tracking", "sweep"))


def is_scenario_key(dotted: str) -> bool:
    """Whether `a.b.c` names a key of the scenario format."""
    return dotted in scenario_keys()


def shorthand_key(dotted: str) -> str | None:
    """The key a string stands for at `dotted` (`model` → name, `dataset.partition` →
    kind), or None where a string is no shorthand."""
    field = scenario_keys().get(dotted)
    marks = [mark for mark in field.metadata if isinstance(mark, Shorthand)] if field else []
    return marks[0].key if marks else None


@cache
def _value_type(path: str) -> TypeAdapter[Any]:
    field = scenario_keys()[path]
    value_type: Any = Annotated[(field.annotation, *field.metadata)] if field.metadata \
        else field.annotation
    if _sections(field):  # a section brings its own configuration
        return TypeAdapter(value_type)
    return TypeAdapter(value_type, config=ConfigDict(strict=True, allow_inf_nan=False))


def _check_value(path: str, index: int, value: Any, context: Any) -> None:
    """A sweep value must be a valid value of its key on its own."""
    try:
        _value_type(path).validate_python(value, context=context)
    except ValidationError as error:
        first = error.errors()[0]
        raise ValueError(f"'{path}' value {index + 1} ({value!r}): "
                         f"{first['msg'].removeprefix('Value error, ')}") from None
