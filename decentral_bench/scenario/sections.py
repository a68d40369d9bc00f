"""The sections of a scenario file: data, model, training, failures, tracking, resources."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator


class Strict(BaseModel):
    """Unknown keys and non-finite numbers are errors; a parsed scenario never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class PartitionConfig(Strict):
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


class DatasetConfig(Strict):
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


class ModelConfig(Strict):
    """The network every agent trains."""

    name: Literal["mlp", "cnn_paper", "resnet20"] = "mlp"
    hidden: tuple[int, ...] | None = Field(
        None, description="mlp only: hidden layer widths (default [64])")
    dropout: float | None = Field(
        None, ge=0.0, lt=1.0, description="cnn_paper only: dropout probability after each "
                                          "pooling layer (the authors' code: 0.25; default 0)")

    @model_validator(mode="after")
    def _widths(self) -> ModelConfig:
        if self.dropout is not None and self.name != "cnn_paper":
            raise ValueError("'dropout' applies to model 'cnn_paper' only")
        if self.hidden is not None:
            if self.name != "mlp":
                raise ValueError("'hidden' applies to model 'mlp' only")
            if any(width <= 0 for width in self.hidden):
                raise ValueError("every hidden layer width must be a positive integer")
        return self


DEFAULT_ROUNDS = 100


class TrainingConfig(Strict):
    """Optimisation settings shared by every method unless a method overrides them."""

    rounds: int | None = Field(
        None, ge=1, description=f"rounds every method runs (default {DEFAULT_ROUNDS}); or give "
                                "epochs instead")
    epochs: float | None = Field(
        None, gt=0.0, description="passes over its data every method makes, instead of rounds: "
                                  "a gossip round is local_steps minibatches, a FedAvg round "
                                  "local_epochs epochs")
    local_steps: int = Field(1, ge=1, description="Minibatch steps per round.")
    batch_size: int = Field(32, ge=1)
    lr: float = Field(0.1, gt=0.0)
    seed: int = Field(0, ge=0)
    seeds: tuple[int, ...] | None = Field(
        None, description="run every method once per seed (replaces seed)")
    eval_every: int = Field(1, ge=1, description="Evaluate test accuracy every this many rounds.")
    eval_every_epochs: float | None = Field(
        None, gt=0.0, description="instead of eval_every: evaluate whenever a method's agents "
                                  "complete another this-many epochs (methods whose rounds "
                                  "differ in length are then measured at the same epochs)")
    eval_samples: int | None = Field(
        None, ge=1, description="agents evaluate on at most this many train/test samples "
                                "(a seeded subset); the average model uses the whole test set")
    train_evaluation: Literal["common", "own"] = Field(
        "common", description="where agents measure training loss and accuracy: common, one "
                              "seeded subset of the whole training set for every agent (as the "
                              "authors' code; the generalization gap compares like with like); "
                              "own, each agent's own partition")
    lr_schedule: Literal["constant", "diminishing", "step"] = "constant"
    epsilon: float | None = Field(
        None, description="diminishing: α_k = α_0 / (k + 1)^ε with ε in (0.5, 1]")
    milestones: tuple[float, ...] | None = Field(
        None, description="step: where the step size drops, as fractions of a method's rounds "
                          "(0.5) or round numbers (50); they split training into phases 1, 2, ...")
    gamma: float | None = Field(
        None, gt=0.0, le=1.0, description="step: the step size is multiplied by gamma at each "
                                          "milestone (default 0.1)")
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

    @model_validator(mode="before")
    @classmethod
    def _rounds_or_epochs(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("rounds") is None and data.get("epochs") is None:
            return {**data, "rounds": DEFAULT_ROUNDS}
        return data

    @model_validator(mode="after")
    def _schedule(self) -> TrainingConfig:
        if self.rounds is not None and self.epochs is not None:
            raise ValueError("give rounds or epochs, not both")
        if self.lr_schedule == "step":
            if not self.milestones:
                raise ValueError("lr_schedule 'step' needs milestones, e.g. [0.5, 0.75]")
            problem = milestone_problem(self.milestones)
            if problem:
                raise ValueError(f"milestones: {problem}")
        elif self.milestones is not None or self.gamma is not None:
            raise ValueError("milestones and gamma go with lr_schedule: step")
        if self.lr_schedule == "diminishing":
            if self.epsilon is None:
                raise ValueError("lr_schedule 'diminishing' needs epsilon in (0.5, 1]")
            if not 0.5 < self.epsilon <= 1.0:
                raise ValueError(f"epsilon must lie in (0.5, 1] (the paper's condition), "
                                 f"got {self.epsilon}")
        elif self.epsilon is not None:
            raise ValueError("epsilon goes with lr_schedule: diminishing")
        return self


class ServerFailureConfig(Strict):
    """The aggregating server is lost after round `round`."""

    round: int = Field(ge=0, description="last round the server completes")
    mode: Literal["local", "halt"] = Field(
        "local", description="local: clients go on training alone; halt: training stops")


class AgentCrashConfig(Strict):
    """Agent `agent` neither trains nor publishes from `round` until `recover` (if given)."""

    agent: int = Field(ge=0)
    round: int = Field(ge=1, description="first round the agent is down")
    recover: int | None = Field(None, description="first round it is back, from its last state")

    @model_validator(mode="after")
    def _recovers_later(self) -> AgentCrashConfig:
        if self.recover is not None and self.recover <= self.round:
            raise ValueError(f"recover ({self.recover}) must come after round ({self.round})")
        return self


class LinkFailuresConfig(Strict):
    """Every round, every edge of the graph fails independently with `drop_probability`."""

    drop_probability: float = Field(ge=0.0, lt=1.0)
    seed: int | None = Field(None, ge=0, description="default: training.seed")


class FailuresConfig(Strict):
    """Failures to inject: the server, agents, links."""

    server: ServerFailureConfig | None = None
    agents: tuple[AgentCrashConfig, ...] = ()
    links: LinkFailuresConfig | None = None


class TrackingConfig(Strict):
    """Where the MLflow runs go."""

    experiment: str | None = Field(None, description="Defaults to the scenario name.")
    uri: str | None = Field(None, description="Defaults to sqlite:///mlflow.db.")


class ResourcesConfig(Strict):
    """Where and how the agents compute."""

    engine: Literal["flower", "vectorized"] = Field(
        "flower", description="flower: Flower's simulation engine (the reference); "
                              "vectorized: all agents as one batched PyTorch program")
    agent_chunk: int | None = Field(
        None, ge=1, description="vectorized: agents per batched call (default: what fits in "
                                "free memory)")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    cpus_per_agent: int = Field(1, ge=1, description="Ray CPUs and torch threads per agent")
    gpus_per_agent: float | None = Field(
        None, gt=0.0, le=1.0, description="GPU share per agent (default: split one GPU)")
    ray_address: str | None = Field(
        None, description="flower engine: join this running Ray cluster (HOST:PORT of its "
                          "head, or auto) instead of starting a private Ray on 127.0.0.1; "
                          "RAY_ADDRESS and --ray-address set it too")

    @field_validator("ray_address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        host, separator, port = (value or "").rpartition(":")
        if value is None or value == "auto" or (separator and host and port.isdigit()):
            return value
        raise ValueError(f"expected HOST:PORT of a Ray head (e.g. 10.0.0.5:6379) or auto, "
                         f"got {value!r}")


class ReportConfig(Strict):
    """What the comparison report measures."""

    target_accuracy: float | None = Field(
        None, gt=0.0, le=1.0, description="report the first round the mean test accuracy "
                                          "reaches this")


def milestone_problem(milestones: tuple[float, ...]) -> str | None:
    """Why a list of step-size milestones is unusable (None when it is fine): each is a
    fraction in (0, 1) or a whole round number ≥ 1, in increasing order."""
    for value in milestones:
        if not (0.0 < value < 1.0 or (value >= 1.0 and float(value).is_integer())):
            return f"{value:g} is neither a fraction in (0, 1) nor a round number"
    if any(later <= earlier for earlier, later in itertools.pairwise(milestones)):
        return "they must increase"
    return None
