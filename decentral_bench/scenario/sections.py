"""The sections of a scenario file: data, model, training, failures, tracking, resources.

Every key carries its description here (`Field(description=...)`): the JSON Schema for
editors and the README's key table are generated from them. Rules between the keys of a
section are listed in its `rules` (see `decentral_bench.scenario.rules`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveFloat,
    ValidationInfo,
    field_validator,
    model_validator,
)

from decentral_bench.scenario.rules import (
    Is,
    Needs,
    OnlyWith,
    Rule,
    Shorthand,
    clauses,
    problems,
)

# A whole number ≥ 1 (rounds, agents, sizes).
Count = Annotated[int, Field(ge=1)]


def _as_tuples(value: Any) -> Any:
    """YAML lists as tuples, at any depth (the sections are frozen and hashable)."""
    if isinstance(value, list | tuple):
        return tuple(_as_tuples(item) for item in value)
    if isinstance(value, dict):
        return {key: _as_tuples(item) for key, item in value.items()}
    return value


def _rules_schema(schema: dict[str, Any], section: type[Any]) -> None:
    """Add a section's `rules` to its JSON Schema as `if`/`then` clauses."""
    if section.rules:
        schema["allOf"] = clauses(section, section.rules)


class Strict(BaseModel):
    """Unknown keys, non-finite numbers and values of the wrong type ("4" for 4, true for 1)
    are errors; a parsed scenario never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True,
                              json_schema_extra=_rules_schema)
    rules: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="before")
    @classmethod
    def _lists_as_tuples(cls, data: Any) -> Any:
        return _as_tuples(data) if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _follow_the_rules(self) -> Any:
        found = problems(self, self.rules)
        if found:
            raise ValueError("; ".join(found))
        return self


class PartitionConfig(Strict):
    """How the training set is split over the agents."""

    kind: Literal["iid", "dirichlet", "shards", "by_size"] = Field(
        "iid", description="iid: equal random shares; dirichlet: each agent's label mix drawn "
        "from Dirichlet(α) (non-IID); shards: each agent holds classes_per_agent classes; "
        "by_size: shares in proportion to sizes")
    alpha: PositiveFloat | None = Field(
        None, description="dirichlet: concentration α > 0 of the label mix (0.1: most agents "
        "hold a few classes; 100: close to IID). No default: dirichlet needs it")
    classes_per_agent: Count | None = Field(
        None, description="shards: number of classes each agent holds. No default: shards "
        "needs it")
    sizes: tuple[PositiveFloat, ...] | None = Field(
        None, description="by_size: relative share n_j of each agent, one positive number per "
        "agent (normalised to sum to 1). Default: 1, 2, ..., N")

    rules = (
        OnlyWith("alpha", Is("kind", "dirichlet")),
        OnlyWith("classes_per_agent", Is("kind", "shards")),
        OnlyWith("sizes", Is("kind", "by_size")),
        Needs(Is("kind", "dirichlet"), ("alpha",),
              "partition 'dirichlet' needs alpha (e.g. 0.1 for strong skew)"),
        Needs(Is("kind", "shards"), ("classes_per_agent",),
              "partition 'shards' needs classes_per_agent (e.g. 2)"),
    )


DatasetName = Literal["digits", "fashion_mnist", "mnist", "cifar10", "cifar100"]


class DatasetConfig(Strict):
    """The data set, its held-out test split and its partition over agents."""

    name: DatasetName = Field(
        "digits", description="digits: scikit-learn's 8×8 digits (bundled, 1,797 images); "
        "fashion_mnist: 28×28 clothing, 60,000 + 10,000 (offline from Debian's "
        "dataset-fashion-mnist, `make data`); mnist, cifar10, cifar100: torchvision's files "
        "under root")
    partition: Annotated[PartitionConfig, Shorthand("kind")] = Field(
        PartitionConfig(), description="how the training set is split over the agents: a "
        "kind alone (`partition: iid`) or a mapping with its keys (`{kind: dirichlet, "
        "alpha: 0.1}`)")
    test_fraction: float | None = Field(
        None, gt=0.0, lt=1.0, description="digits only: share of the images held out for "
        "testing, in (0, 1). Default: 0.2 (the other data sets have their own test split)")
    root: str | None = Field(
        None, description="folder holding the data set's files, relative to the scenario "
        "file's folder. Default: /usr/share/datasets/fashion-mnist for fashion_mnist; mnist "
        "and cifar need it")
    download: bool = Field(
        False, description="mnist, cifar10, cifar100: let torchvision download the files into "
        "root (needs internet)")
    augment: bool = Field(
        False, description="cifar10, cifar100: random crop (padding 4) and horizontal flip of "
        "every training minibatch")
    train_samples: Count | None = Field(
        None, description="train on a seeded, class-stratified subset of this many training "
        "samples, for quick runs. Default: the whole training set")

    rules = (
        OnlyWith("test_fraction", Is("name", "digits")),
        OnlyWith("augment", Is("name", "cifar10", "cifar100")),
        OnlyWith("download", Is("name", "mnist", "cifar10", "cifar100")),
    )

    @field_validator("root")
    @classmethod
    def _root_folder(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        base = (info.context or {}).get("base", Path.cwd())
        path = Path(value).expanduser()
        return str((path if path.is_absolute() else Path(base) / path).resolve())


class ModelConfig(Strict):
    """The network every agent trains."""

    name: Literal["mlp", "cnn_paper", "resnet20"] = Field(
        "mlp", description="mlp: fully connected, ReLU; cnn_paper: Jiang et al. (2017) "
        "section 5's CNN (2 × conv 32, max pool, 2 × conv 64, max pool, dense 512); resnet20: "
        "He et al.'s CIFAR ResNet-20 with GroupNorm (as Kong et al. 2021)")
    hidden: tuple[Count, ...] | None = Field(
        None, description="mlp only: the hidden layers' widths, input to output. Default: "
        "[64]")

    rules = (OnlyWith("hidden", Is("name", "mlp")),)


class TrainingConfig(Strict):
    """Optimisation settings shared by every method unless a method overrides them."""

    rounds: Count = Field(
        100, description="communication rounds per method: a consensus step (CDSGD, CDMSGD, "
        "SGD) or a FedAvg round; a method's own `rounds` overrides it")
    local_steps: Count = Field(
        1, description="minibatch gradient steps per round of the gossip methods; 1 is "
        "Jiang et al.'s Algorithm 1, more adds local_steps − 1 plain SGD steps after eq. 5")
    batch_size: Count = Field(
        32, description="minibatch size b' of each agent's stochastic gradient g_j (Jiang et "
        "al. eq. 5), in samples")
    lr: float = Field(
        0.1, gt=0.0, description="step size α of eq. 5 (α_0 of a diminishing schedule)")
    seed: NonNegativeInt = Field(
        0, description="seed of the partition, x_0, the minibatch order and random graphs")
    seeds: tuple[NonNegativeInt, ...] | None = Field(
        None, json_schema_extra={"minItems": 1, "uniqueItems": True},
        description="run every method once per seed (distinct); replaces seed. Default: "
        "[seed]")
    eval_every: Count = Field(
        1, description="measure test accuracy every this many rounds (and after the last)")
    eval_samples: Count | None = Field(
        None, description="agents evaluate on a seeded subset of at most this many "
        "training and test samples; the average model x̄ always uses the whole test set. "
        "Default: all samples")
    lr_schedule: Literal["constant", "diminishing"] = Field(
        "constant", description="constant: α_k = α; diminishing: α_k = α_0 / (k + 1)^ε "
        "(Jiang et al. section 7, needs epsilon)")
    epsilon: float | None = Field(
        None, gt=0.5, le=1.0, description="diminishing: exponent ε of α_k = α_0 / (k + 1)^ε, "
        "in (0.5, 1] as the paper's convergence result requires. No default: diminishing "
        "needs it")
    weight_decay: float = Field(
        0.0, ge=0.0, description="L2 coefficient λ ≥ 0: g_j(x) = ∇f_j(x) + λx")

    rules = (
        Needs(Is("lr_schedule", "diminishing"), ("epsilon",),
              "lr_schedule 'diminishing' needs epsilon in (0.5, 1]"),
        OnlyWith("epsilon", Is("lr_schedule", "diminishing")),
    )

    @field_validator("seeds")
    @classmethod
    def _seed_list(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is not None:
            if not value:
                raise ValueError("list at least one seed, or drop 'seeds'")
            if len(set(value)) != len(value):
                raise ValueError("seeds must be distinct")
        return value


class ServerFailureConfig(Strict):
    """The aggregating server is lost after round `round`."""

    round: NonNegativeInt = Field(
        description="the last round the server completes; it must be below training.rounds")
    mode: Literal["local", "halt"] = Field(
        "local", description="local: the clients go on training alone from their last "
        "model and nobody aggregates; halt: training stops")


class AgentCrashConfig(Strict):
    """Agent `agent` neither trains nor publishes from `round` until `recover` (if given)."""

    agent: NonNegativeInt = Field(
        description="the agent that crashes, numbered 0 .. topology.agents − 1")
    round: Count = Field(
        description="the first round the agent is down (at most training.rounds)")
    recover: int | None = Field(
        None, description="the first round it is back, resuming from its last state; after "
        "round. Default: it never comes back")

    @model_validator(mode="after")
    def _recovers_later(self) -> AgentCrashConfig:
        if self.recover is not None and self.recover <= self.round:
            raise ValueError(f"recover ({self.recover}) must come after round ({self.round})")
        return self


class LinkFailuresConfig(Strict):
    """Every round, every edge of the graph fails independently with `drop_probability`."""

    drop_probability: float = Field(
        ge=0.0, lt=1.0, description="probability in [0, 1) that an edge is down in a round, "
        "drawn independently per edge and round; Π_k is recomputed on the remaining graph")
    seed: NonNegativeInt | None = Field(
        None, description="seed of the link draws. Default: training.seed")


class FailuresConfig(Strict):
    """Failures to inject: the server, agents, links."""

    server: ServerFailureConfig | None = Field(
        None, description="FedAvg's server is lost after a round (gossip methods have none "
        "and carry on). Default: no server failure")
    agents: tuple[AgentCrashConfig, ...] = Field(
        (), description="agents that crash (and may recover) at given rounds")
    links: LinkFailuresConfig | None = Field(
        None, description="random link failures of the gossip graph. Default: none")


class TrackingConfig(Strict):
    """Where the MLflow runs go."""

    experiment: str | None = Field(
        None, description="MLflow experiment of the runs. Default: the scenario's name")
    uri: str | None = Field(
        None, description="MLflow tracking URI (a folder, sqlite:///file.db or "
        "http://host:port). Default: sqlite:///mlflow.db in the working directory")


class ResourcesConfig(Strict):
    """Where and how the agents compute."""

    engine: Literal["flower", "vectorized"] = Field(
        "flower", description="flower: Flower's simulation engine (the reference); "
                              "vectorized: all agents as one batched PyTorch program")
    agent_chunk: Count | None = Field(
        None, description="vectorized: agents per batched call. Default: what fits in free "
                          "memory")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="where tensors live: auto picks CUDA when present, else CPU")
    cpus_per_agent: Count = Field(
        1, description="Ray CPUs reserved per agent actor, and its torch threads")
    gpus_per_agent: float | None = Field(
        None, gt=0.0, le=1.0, description="share of a GPU per agent actor, in (0, 1]. "
        "Default: one GPU split over the agents that run at once")


class ReportConfig(Strict):
    """What the comparison report measures."""

    target_accuracy: float | None = Field(
        None, gt=0.0, le=1.0, description="the report gives the first round at which the "
        "mean test accuracy reaches this, in (0, 1]. Default: not reported")
