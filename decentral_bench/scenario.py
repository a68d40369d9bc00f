"""Scenario files: the YAML a user writes, parsed into a typed, validated `Scenario`.

Every error names the file, the dotted key path (``topology.agents``,
``methods[1].algorithm``) and what was expected, so a user can fix the file
without reading a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

Algorithm = Literal["cdsgd", "cdmsgd", "fedavg", "centralized_sgd"]
GOSSIP_ALGORITHMS: frozenset[str] = frozenset({"cdsgd", "cdmsgd", "centralized_sgd"})


class ScenarioError(ValueError):
    """A scenario file that cannot be run, with every problem found in it."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = [f"{source}: {key}: {message}" if key else f"{source}: {message}"
                 for key, message in problems]
        super().__init__("\n".join(lines))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PartitionConfig(_Strict):
    """How the training set is split over the agents."""

    kind: Literal["iid", "dirichlet", "shards", "by_size"] = "iid"
    alpha: float | None = Field(None, gt=0.0, description="dirichlet: concentration α")
    classes_per_agent: int | None = Field(None, ge=1, description="shards: classes per agent")
    sizes: tuple[float, ...] | None = Field(
        None, description="by_size: relative n_j per agent (default 1, 2, ..., N)")

    @model_validator(mode="after")
    def _keys_fit_the_kind(self) -> PartitionConfig:
        owners = {"alpha": "dirichlet", "classes_per_agent": "shards", "sizes": "by_size"}
        for key, owner in owners.items():
            if getattr(self, key) is not None and self.kind != owner:
                raise ValueError(f"'{key}' applies to partition kind '{owner}' only")
        if self.kind == "dirichlet" and self.alpha is None:
            raise ValueError("partition 'dirichlet' needs alpha (e.g. 0.1 for strong skew)")
        if self.kind == "shards" and self.classes_per_agent is None:
            raise ValueError("partition 'shards' needs classes_per_agent (e.g. 2)")
        if self.sizes is not None and any(size <= 0 for size in self.sizes):
            raise ValueError("every relative size must be positive")
        return self


DatasetName = Literal["digits", "fashion_mnist", "mnist", "cifar10", "cifar100"]


class DatasetConfig(_Strict):
    """The data set, its held-out test split and its partition over agents."""

    name: DatasetName = "digits"
    partition: PartitionConfig = PartitionConfig()
    test_fraction: float | None = Field(
        None, gt=0.0, lt=1.0, description="digits only: held-out share (default 0.2)")
    root: str | None = Field(None, description="folder holding the data set's files")
    download: bool = Field(False, description="mnist/cifar: let torchvision download")
    augment: bool = Field(False, description="cifar: random crop (pad 4) and horizontal flip")
    train_samples: int | None = Field(
        None, ge=1, description="use a seeded, class-stratified subset of the training set")

    @field_validator("partition", mode="before")
    @classmethod
    def _partition_shorthand(cls, value: Any) -> Any:
        return {"kind": value} if isinstance(value, str) else value

    @field_validator("root")
    @classmethod
    def _root_folder(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        base = (info.context or {}).get("base", Path.cwd())
        path = Path(value).expanduser()
        return str((path if path.is_absolute() else Path(base) / path).resolve())

    @model_validator(mode="after")
    def _keys_fit_the_data_set(self) -> DatasetConfig:
        if self.test_fraction is not None and self.name != "digits":
            raise ValueError(f"'test_fraction' applies to digits only; {self.name} has its "
                             "own test split")
        if self.augment and not self.name.startswith("cifar"):
            raise ValueError("'augment' applies to cifar10 and cifar100 only")
        if self.download and self.name not in ("mnist", "cifar10", "cifar100"):
            raise ValueError(f"'download' applies to mnist, cifar10 and cifar100, not {self.name}")
        return self


class ModelConfig(_Strict):
    """The network every agent trains."""

    name: Literal["mlp", "cnn_paper", "resnet20"] = "mlp"
    hidden: tuple[int, ...] | None = Field(
        None, description="mlp only: hidden layer widths (default [64])")

    @model_validator(mode="after")
    def _widths(self) -> ModelConfig:
        if self.hidden is not None:
            if self.name != "mlp":
                raise ValueError("'hidden' applies to model 'mlp' only")
            if any(width <= 0 for width in self.hidden):
                raise ValueError("every hidden layer width must be a positive integer")
        return self


TopologyKind = Literal["complete", "ring", "path", "star", "torus", "hypercube", "erdos_renyi",
                       "random_regular", "small_world", "exponential", "edges"]

# Which optional keys each graph family takes, and which it needs.
_FAMILY_KEYS: dict[str, set[str]] = {
    "torus": {"rows", "cols"},
    "erdos_renyi": {"p", "target_lambda2"},
    "random_regular": {"degree", "target_lambda2"},
    "small_world": {"k", "p", "target_lambda2"},
    "edges": {"edges"},
}
_FAMILY_NEEDS: dict[str, tuple[str, str]] = {
    "erdos_renyi": ("p", "the edge probability p (or target_lambda2)"),
    "random_regular": ("degree", "the degree (or target_lambda2)"),
    "small_world": ("k", "the neighbour count k (or target_lambda2)"),
    "edges": ("edges", "an edge list [[0, 1], ...] or the path of a file of 'j l' lines"),
}


def _resolve_path(value: str, info: ValidationInfo) -> str:
    """A path relative to the scenario file's folder, checked to exist."""
    base = (info.context or {}).get("base", Path.cwd())
    path = Path(value).expanduser()
    path = path if path.is_absolute() else Path(base) / path
    if not path.is_file():
        raise ValueError(f"file not found: {path}")
    return str(path.resolve())


class TopologyConfig(_Strict):
    """The communication graph of the agents and its mixing matrix Π."""

    kind: TopologyKind = "complete"
    agents: int = Field(5, ge=1, le=4096)
    rows: int | None = Field(None, ge=1, description="torus: grid rows")
    cols: int | None = Field(None, ge=1, description="torus: grid columns")
    p: float | None = Field(None, gt=0.0, le=1.0,
                            description="erdos_renyi: edge probability; small_world: rewiring")
    degree: int | None = Field(None, ge=1, description="random_regular: degree of every agent")
    k: int | None = Field(None, ge=2, description="small_world: ring neighbours per agent")
    edges: tuple[tuple[int, int], ...] | str | None = Field(
        None, description="edges: inline [[j, l], ...] or a file of 'j l' lines")
    mixing: Literal["metropolis", "max_degree", "uniform", "matrix"] = "metropolis"
    lazy: bool = Field(False, description="use (I + Π) / 2")
    matrix_file: str | None = Field(None, description="mixing: matrix; a .npy or .csv file")
    target_lambda2: float | None = Field(
        None, gt=0.0, lt=1.0,
        description="pick the family parameter whose Π has λ2 closest to this")
    seed: int | None = Field(None, ge=0, description="random graphs; default training.seed")

    @model_validator(mode="before")
    @classmethod
    def _infer_agents(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "agents" in data:
            return data
        if data.get("kind") == "torus" and isinstance(data.get("rows"), int) \
                and isinstance(data.get("cols"), int):
            return {**data, "agents": data["rows"] * data["cols"]}
        if data.get("kind") == "edges" and isinstance(data.get("edges"), list) and data["edges"]:
            nodes = [n for edge in data["edges"] if isinstance(edge, list) for n in edge
                     if isinstance(n, int)]
            return {**data, "agents": max(nodes) + 1} if nodes else data
        return data

    @field_validator("edges")
    @classmethod
    def _edges_file(cls, value: Any, info: ValidationInfo) -> Any:
        return _resolve_path(value, info) if isinstance(value, str) else value

    @field_validator("matrix_file")
    @classmethod
    def _matrix_file(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        if not value.endswith((".npy", ".csv")):
            raise ValueError("the mixing matrix file must be a .npy or .csv file")
        return _resolve_path(value, info)

    @model_validator(mode="after")
    def _keys_fit_the_family(self) -> TopologyConfig:
        allowed = _FAMILY_KEYS.get(self.kind, set())
        for key in ("rows", "cols", "p", "degree", "k", "edges", "target_lambda2"):
            if getattr(self, key) is not None and key not in allowed:
                takes = f"; it takes: {', '.join(sorted(allowed))}" if allowed else ""
                raise ValueError(f"'{key}' does not apply to kind '{self.kind}'{takes}")
        if self.kind in _FAMILY_NEEDS:
            key, what = _FAMILY_NEEDS[self.kind]
            if getattr(self, key) is None and self.target_lambda2 is None:
                raise ValueError(f"kind '{self.kind}' needs {what}")
        if self.kind == "edges" and self.target_lambda2 is not None:
            raise ValueError("target_lambda2 needs a random graph family")
        if self.kind == "small_world" and self.p is None:
            raise ValueError("kind 'small_world' needs the rewiring probability p")
        if self.kind == "torus":
            if (self.rows is None) != (self.cols is None):
                raise ValueError("a torus needs both rows and cols, or neither (square agents)")
            if self.rows is not None and self.rows * self.cols != self.agents:
                raise ValueError(f"rows × cols = {self.rows * self.cols} but agents = "
                                 f"{self.agents}; drop agents or make them agree")
        if self.kind == "hypercube" and self.agents & (self.agents - 1):
            raise ValueError(f"a hypercube needs a power of two agents, not {self.agents}")
        if (self.mixing == "matrix") != (self.matrix_file is not None):
            raise ValueError("mixing: matrix goes with matrix_file (and matrix_file with it)")
        return self


class TrainingConfig(_Strict):
    """Optimisation settings shared by every method unless a method overrides them."""

    rounds: int = Field(100, ge=1)
    local_steps: int = Field(1, ge=1, description="Minibatch steps per round.")
    batch_size: int = Field(32, ge=1)
    lr: float = Field(0.1, gt=0.0)
    seed: int = Field(0, ge=0)
    seeds: tuple[int, ...] | None = Field(
        None, description="run every method once per seed (replaces seed)")
    eval_every: int = Field(1, ge=1, description="Evaluate test accuracy every this many rounds.")
    eval_samples: int | None = Field(
        None, ge=1, description="agents evaluate on at most this many train/test samples "
                                "(a seeded subset); the average model uses the whole test set")
    lr_schedule: Literal["constant", "diminishing"] = "constant"
    epsilon: float | None = Field(
        None, description="diminishing: α_k = α_0 / (k + 1)^ε with ε in (0.5, 1]")
    weight_decay: float = Field(0.0, ge=0.0, description="L2 term λx added inside g_j")

    @field_validator("seeds")
    @classmethod
    def _seed_list(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is not None:
            if not value:
                raise ValueError("list at least one seed, or drop 'seeds'")
            if any(seed < 0 for seed in value) or len(set(value)) != len(value):
                raise ValueError("seeds must be distinct non-negative integers")
        return value

    @model_validator(mode="after")
    def _schedule(self) -> TrainingConfig:
        if self.lr_schedule == "diminishing":
            if self.epsilon is None:
                raise ValueError("lr_schedule 'diminishing' needs epsilon in (0.5, 1]")
            if not 0.5 < self.epsilon <= 1.0:
                raise ValueError(f"epsilon must lie in (0.5, 1] (the paper's condition), "
                                 f"got {self.epsilon}")
        elif self.epsilon is not None:
            raise ValueError("epsilon goes with lr_schedule: diminishing")
        return self


class MethodConfig(_Strict):
    """One method to compare.

    `fraction` and `local_epochs` belong to FedAvg, `momentum` and `variant` to CDMSGD.
    """

    name: str = Field(min_length=1)
    algorithm: Algorithm
    momentum: float | None = Field(None, ge=0.0, lt=1.0, description="CDMSGD μ (default 0.9)")
    variant: Literal["nesterov", "polyak"] | None = Field(
        None, description="CDMSGD momentum form (default nesterov, as the paper's experiments)")
    fraction: float | None = Field(None, gt=0.0, le=1.0)
    local_epochs: int | None = Field(None, ge=1)
    lr: float | None = Field(None, gt=0.0)
    local_steps: int | None = Field(None, ge=1)
    batch_size: int | None = Field(None, ge=1)
    rounds: int | None = Field(None, ge=1, description="this method's rounds (default: "
                                                        "training.rounds)")

    @model_validator(mode="after")
    def _keys_fit_the_algorithm(self) -> MethodConfig:
        owners = {"fraction": "fedavg", "local_epochs": "fedavg",
                  "momentum": "cdmsgd", "variant": "cdmsgd"}
        for key, owner in owners.items():
            if getattr(self, key) is not None and self.algorithm != owner:
                raise ValueError(f"'{key}' applies to algorithm '{owner}' only, "
                                 f"not '{self.algorithm}'; remove it")
        if self.algorithm == "fedavg" and self.local_steps is not None:
            raise ValueError("FedAvg trains 'local_epochs' per round; remove 'local_steps'")
        return self


class ServerFailureConfig(_Strict):
    """The aggregating server is lost after round `round`."""

    round: int = Field(ge=0, description="last round the server completes")
    mode: Literal["local", "halt"] = Field(
        "local", description="local: clients go on training alone; halt: training stops")


class AgentCrashConfig(_Strict):
    """Agent `agent` neither trains nor publishes from `round` until `recover` (if given)."""

    agent: int = Field(ge=0)
    round: int = Field(ge=1, description="first round the agent is down")
    recover: int | None = Field(None, description="first round it is back, from its last state")

    @model_validator(mode="after")
    def _recovers_later(self) -> AgentCrashConfig:
        if self.recover is not None and self.recover <= self.round:
            raise ValueError(f"recover ({self.recover}) must come after round ({self.round})")
        return self


class LinkFailuresConfig(_Strict):
    """Every round, every edge of the graph fails independently with `drop_probability`."""

    drop_probability: float = Field(ge=0.0, lt=1.0)
    seed: int | None = Field(None, ge=0, description="default: training.seed")


class FailuresConfig(_Strict):
    """Failures to inject: the server, agents, links."""

    server: ServerFailureConfig | None = None
    agents: tuple[AgentCrashConfig, ...] = ()
    links: LinkFailuresConfig | None = None


class TrackingConfig(_Strict):
    """Where the MLflow runs go."""

    experiment: str | None = Field(None, description="Defaults to the scenario name.")
    uri: str | None = Field(None, description="Defaults to sqlite:///mlflow.db.")


class ResourcesConfig(_Strict):
    """Where the agents compute."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    cpus_per_agent: int = Field(1, ge=1, description="Ray CPUs and torch threads per agent")
    gpus_per_agent: float | None = Field(
        None, gt=0.0, le=1.0, description="GPU share per agent (default: split one GPU)")


class ReportConfig(_Strict):
    """What the comparison report measures."""

    target_accuracy: float | None = Field(
        None, gt=0.0, le=1.0, description="report the first round the mean test accuracy "
                                          "reaches this")


# Keys a sweep may not vary: they name or organise the runs rather than define one.
UNSWEEPABLE = ("name", "description", "methods", "sweep", "tracking", "training.seeds",
               "training.seed")


class Scenario(_Strict):
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
            if not _is_scenario_key(path):
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
            if crash.round > rounds:
                problems.append(f"failures.agents[{index}].round {crash.round} is after the last "
                                f"round ({rounds})")
        if failures.server is not None and failures.server.round >= rounds:
            problems.append(f"failures.server.round {failures.server.round} must be below "
                            f"training.rounds ({rounds}) for the failure to happen")
        if problems:
            raise ValueError("; ".join(problems))
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


def _is_scenario_key(dotted: str) -> bool:
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


def _key_path(location: tuple[int | str, ...]) -> str:
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.startswith("function-") or part in {"str", "dict"}:
            continue
        else:
            path += f".{part}" if path else part
    return path


def _describe(error: dict[str, Any], model: type[BaseModel]) -> tuple[str, str]:
    location = tuple(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        parent = _key_path(location[:-1])
        allowed = _allowed_keys(model, location[:-1])
        hint = f"; allowed keys here: {', '.join(allowed)}" if allowed else ""
        return parent or "(top level)", f"unknown key '{location[-1]}'{hint}"
    if kind == "missing":
        return _key_path(location), "missing required key"
    message = error["msg"]
    if kind.startswith("value_error"):
        message = message.removeprefix("Value error, ")
    given = error.get("input")
    if not isinstance(given, dict | list) and kind != "value_error":
        message += f" (got {given!r})"
    return _key_path(location) or "(top level)", message


def _allowed_keys(model: type[BaseModel], location: tuple[int | str, ...]) -> list[str]:
    current: Any = model
    for part in location:
        if isinstance(part, int):
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        annotation = field.annotation
        inner = getattr(annotation, "__args__", None)
        current = inner[0] if inner else annotation
    fields = getattr(current, "model_fields", None)
    return sorted(fields) if fields else []


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
        problems = [_describe(e, Scenario) for e in error.errors()]
        raise ScenarioError(source, problems) from None


def set_key(data: dict[str, Any], dotted: str, value: Any, source: str = "<scenario>") -> None:
    """Set `a.b.c` (list items by number: `methods.0.lr`) in nested YAML data, in place.

    Shorthand values on the way (`partition: iid`, `model: mlp`) become mappings.
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
        else:
            child = current.get(part)
            if isinstance(child, str):
                child = {"name" if part == "model" else "kind": child}
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
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ScenarioError(source, [("", f"not valid YAML: {where}{problem}")]) from None
    if overrides and isinstance(data, dict):
        for dotted, value in overrides.items():
            set_key(data, dotted, value, source)
    return parse(data, source, base=path.parent)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the scenario format, for editors."""
    return Scenario.model_json_schema()
