"""The sections of a scenario file: data, model, training, failures, tracking, resources.

Every key carries its description here (`Field(description=...)`): the JSON Schema for
editors and the docs' key table are generated from them. Rules between the keys of a
section are listed in its `rules` (see `decentral_bench.scenario.rules`).
"""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    NonNegativeInt,
    PositiveFloat,
    ValidationInfo,
    field_validator,
    model_validator,
)

from decentral_bench.scenario.base import Count, Strict, user_path
from decentral_bench.scenario.rules import Is, IsSet, Needs, Not, OnlyWith, Shorthand


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
        OnlyWith("test_fraction", Is("name", "digits", called="data set")),
        OnlyWith("augment", Is("name", "cifar10", "cifar100", called="data set")),
        OnlyWith("download", Is("name", "mnist", "cifar10", "cifar100", called="data set")),
    )

    @field_validator("root")
    @classmethod
    def _root_folder(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        base = (info.context or {}).get("base", Path.cwd())
        return str(user_path(value, base).resolve())


class ModelConfig(Strict):
    """The network every agent trains."""

    name: Literal["mlp", "cnn_paper", "resnet20"] = Field(
        "mlp", description="mlp: fully connected, ReLU; cnn_paper: Jiang et al. (2017) "
        "section 5's CNN (2 × conv 32, max pool, 2 × conv 64, max pool, dense 512); resnet20: "
        "He et al.'s CIFAR ResNet-20 with GroupNorm (as Kong et al. 2021)")
    hidden: tuple[Count, ...] | None = Field(
        None, description="mlp only: the hidden layers' widths, input to output; [] is the "
        "linear model (multinomial logistic regression). Default: [64]")
    dropout: float | None = Field(
        None, ge=0.0, lt=1.0, description="cnn_paper only: dropout probability in [0, 1) "
        "after each pooling layer (the authors' code: 0.25). Default: 0")

    rules = (OnlyWith("hidden", Is("name", "mlp", called="model")),
             OnlyWith("dropout", Is("name", "cnn_paper", called="model")))


DEFAULT_ROUNDS = 100


class TrainingConfig(Strict):
    """Optimisation settings shared by every method unless a method overrides them."""

    rounds: Count | None = Field(
        None, description=f"communication rounds per method: a consensus step (CDSGD, "
        "CDMSGD, SGD) or a FedAvg round; a method's own `rounds` overrides it. Default: "
        f"{DEFAULT_ROUNDS}, unless epochs is given")
    epochs: float | None = Field(
        None, gt=0.0, description="instead of rounds: the passes over its own data every "
        "method makes (a gossip round is local_steps minibatches, a FedAvg round local_epochs "
        "epochs). Default: unset, rounds count")
    local_steps: Count = Field(
        1, description="minibatch gradient steps per round of the gossip methods; 1 is "
        "Jiang et al.'s Algorithm 1, more adds local_steps − 1 plain SGD steps after eq. 5")
    batch_size: Count = Field(
        32, description="minibatch size b' of each agent's stochastic gradient g_j (Jiang et "
        "al. eq. 5), in samples")
    lr: float = Field(
        0.1, gt=0.0, description="step size α of eq. 5 (α_0 of a diminishing or step "
        "schedule)")
    seed: NonNegativeInt = Field(
        0, description="seed of the partition, x_0, the minibatch order and random graphs")
    seeds: tuple[NonNegativeInt, ...] | None = Field(
        None, json_schema_extra={"minItems": 1, "uniqueItems": True},
        description="run every method once per seed (distinct); replaces seed. Default: "
        "[seed]")
    eval_every: Count = Field(
        1, description="measure test accuracy every this many rounds (and after the last)")
    eval_every_epochs: float | None = Field(
        None, gt=0.0, description="instead of eval_every: measure whenever a method's agents "
        "complete another this-many epochs, so methods whose rounds differ in length are "
        "measured at the same epochs. Default: unset, eval_every counts")
    eval_samples: Count | None = Field(
        None, description="agents evaluate on a seeded subset of at most this many "
        "training and test samples; the average model x̄ always uses the whole test set. "
        "Default: all samples")
    train_evaluation: Literal["common", "own"] = Field(
        "common", description="where agents measure training loss and accuracy: common, one "
        "seeded subset of the whole training set for every agent (as the authors' code; the "
        "generalization gap compares like with like); own, each agent's own partition")
    lr_schedule: Literal["constant", "diminishing", "step"] = Field(
        "constant", description="constant: α_k = α; diminishing: α_k = α_0 / (k + 1)^ε "
        "(Jiang et al. section 7, needs epsilon); step: α multiplied by gamma at each of the "
        "milestones")
    epsilon: float | None = Field(
        None, gt=0.5, le=1.0, description="diminishing: exponent ε of α_k = α_0 / (k + 1)^ε, "
        "in (0.5, 1] as the paper's convergence result requires. No default: diminishing "
        "needs it")
    milestones: tuple[float, ...] | None = Field(
        None, json_schema_extra={"minItems": 1, "items": {"anyOf": [
            {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
            {"type": "integer", "minimum": 1}]}},
        description="step: where the step size drops, increasing, as fractions of a method's "
        "rounds (0.5) or round numbers (50); they split training into phases 1, 2, ... No "
        "default: step needs them")
    gamma: float | None = Field(
        None, gt=0.0, le=1.0, description="step: the factor in (0, 1] the step size is "
        "multiplied by at each milestone. Default: 0.1")
    weight_decay: float = Field(
        0.0, ge=0.0, description="L2 coefficient λ ≥ 0: g_j(x) = ∇f_j(x) + λx")
    deterministic: bool = Field(
        False, description="true: the run computes the same bits every time on one machine: "
        "deterministic kernels only (torch.use_deterministic_algorithms, cuDNN without "
        "autotuning), one CPU thread, and on the vectorized engine agents per batched call "
        "from the device's total memory instead of its free memory (which changes between "
        "reruns and with it the batched kernels' summation order); bench measures its cost")

    rules = (
        OnlyWith("epochs", Not(IsSet("rounds")), "give rounds or epochs, not both"),
        Needs(Is("lr_schedule", "diminishing"), ("epsilon",),
              "lr_schedule 'diminishing' needs epsilon in (0.5, 1]"),
        OnlyWith("epsilon", Is("lr_schedule", "diminishing")),
        Needs(Is("lr_schedule", "step"), ("milestones",),
              "lr_schedule 'step' needs milestones, e.g. [0.5, 0.75]"),
        OnlyWith("milestones", Is("lr_schedule", "step"),
                 "milestones and gamma go with lr_schedule: step"),
        OnlyWith("gamma", Is("lr_schedule", "step"),
                 "milestones and gamma go with lr_schedule: step"),
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

    @field_validator("milestones")
    @classmethod
    def _milestones(cls, value: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if value is not None:
            problem = "list at least one" if not value else milestone_problem(value)
            if problem:
                raise ValueError(problem)
        return value

    @model_validator(mode="before")
    @classmethod
    def _rounds_or_epochs(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("rounds") is None and data.get("epochs") is None:
            return {**data, "rounds": DEFAULT_ROUNDS}
        return data


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


# A Ray head's address as the JSON Schema and the loader both check it (the same search, so
# they agree): auto, or HOST:PORT without spaces, the port ASCII digits after the last colon.
RAY_ADDRESS = r"^(auto|\S+:[0-9]+)$"


# GPUs per child run: a share of one device, or whole devices.
GpuShare = Annotated[float, Field(gt=0.0, le=1.0)]
WholeGpus = Annotated[int, Field(ge=2)]


class ResourcesConfig(Strict):
    """Where and how the agents compute."""

    engine: Literal["flower", "vectorized"] = Field(
        "flower", description="flower: Flower's simulation engine (the reference); "
                              "vectorized: all agents as one batched PyTorch program")
    agent_chunk: Count | None = Field(
        None, description="vectorized: agents per block, the agents whose mixing, gradients "
                          "and update are computed at once. Default: as many as fit in 512 MiB "
                          "of scratch on a CPU, in free memory on a GPU (under "
                          "training.deterministic: in half the total memory)")
    batched: bool | Literal["auto"] = Field(
        "auto", description="vectorized: a block's gradients in one batched call (true) or "
                            "agent by agent (false); auto: batched on a GPU and for models "
                            "without convolutions, otherwise the faster of the two by a "
                            "measurement at start, noted in the run's events")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="where tensors live: auto picks CUDA when present, else CPU")
    cpus_per_agent: Count = Field(
        1, description="Ray CPUs reserved per agent actor, and its torch threads")
    dtype: Literal["float32", "float64"] = Field(
        "float32", description="the floating-point type of the models, the data, the stacked "
        "agents and the arrays Flower moves, on both engines; float64 is a check mode that "
        "tells a real difference between two paths from float32 rounding")
    gpus_per_agent: float | None = Field(
        None, gt=0.0, le=1.0, description="share of a GPU per agent actor, in (0, 1]. "
        "Default: one GPU split over the agents that run at once")
    ray_address: str | None = Field(
        None, description="join this running Ray cluster (HOST:PORT of its head, or auto): "
                          "the flower engine's agents run on it as actors instead of on a "
                          "private Ray on 127.0.0.1, and vectorized child runs as Ray tasks; "
                          "RAY_ADDRESS and --ray-address set it too. Default: a private Ray",
        json_schema_extra={"pattern": RAY_ADDRESS})
    parallel_runs: Count | Literal["auto"] = Field(
        1, description="child runs at once, each in a process of its own with its share of "
                       "the CPUs (and GPUs); auto: from the cores, the memory a run needs "
                       "and the devices (on a Ray cluster, from its CPUs and GPUs); --jobs "
                       "sets it too. Default: one after another")
    gpus_per_run: GpuShare | WholeGpus | None = Field(
        None, description="GPUs each child run gets where runs go in parallel: a "
        "share of one device in (0, 1], or a whole number of devices. Default: one device "
        "each while there are as many as runs at once, else an equal share of them")

    @field_validator("parallel_runs", mode="before")
    @classmethod
    def _runs_at_once(cls, value: Any) -> Any:
        if value == "auto" or (type(value) is int and value >= 1):
            return value
        raise ValueError(f"expected a whole number of runs at once (1 or more) or auto, "
                         f"got {value!r}")

    @field_validator("gpus_per_run", mode="before")
    @classmethod
    def _share_or_whole_devices(cls, value: Any) -> Any:
        if type(value) in (int, float) and math.isfinite(value) and value > 1.0 \
                and float(value).is_integer():
            return int(value)  # whole devices, written 2 or 2.0
        if value is None or (type(value) in (int, float) and 0.0 < value <= 1.0):
            return value
        raise ValueError(f"expected a share of one GPU in (0, 1] or a whole number of GPUs, "
                         f"got {value!r}")

    @field_validator("batched", mode="before")
    @classmethod
    def _batched(cls, value: Any) -> Any:
        if value == "auto" or isinstance(value, bool):
            return value
        raise ValueError(f"expected true, false or auto, got {value!r}")

    @field_validator("ray_address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if re.search(RAY_ADDRESS, value):
            return value.rstrip("\n")  # Python's $ lets one final newline by
        raise ValueError(f"expected HOST:PORT of a Ray head (e.g. 10.0.0.5:6379) or auto, "
                         f"got {value!r}")


class ReportConfig(Strict):
    """What the comparison report measures."""

    target_accuracy: float | None = Field(
        None, gt=0.0, le=1.0, description="the report gives the first round at which the "
        "mean test accuracy reaches this, in (0, 1]. Default: not reported")


def milestone_problem(milestones: tuple[float, ...]) -> str | None:
    """Why a list of step-size milestones is unusable (None when it is fine): each is a
    fraction in (0, 1) or a whole round number ≥ 1, in increasing order."""
    for value in milestones:
        if not (0.0 < value < 1.0 or (value >= 1.0 and float(value).is_integer())):
            return f"{value:g} is neither a fraction in (0, 1) nor a round number"
    if any(later <= earlier for earlier, later in itertools.pairwise(milestones)):
        return "they must increase"
    return None
