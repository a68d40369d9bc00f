"""The `methods` section: which algorithms to compare, each with its own overrides.

What each algorithm accepts comes from the method registry (`strategies.registry`):
a key that belongs to another algorithm is an error naming the one it belongs to.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from decentral_bench.scenario.rules import Is, OnlyWith
from decentral_bench.scenario.sections import Count, Strict
from strategies.registry import ALGORITHMS, METHODS, option_owners

Algorithm = Literal[ALGORITHMS]  # type: ignore[valid-type]


def _registry_rules() -> tuple[OnlyWith, ...]:
    """The registry's word on which algorithm takes which key, as rules: a method-only key
    (momentum, fraction, ...) belongs to the algorithms that list it among their options,
    and a common key an algorithm forbids is refused with the registry's reason."""
    options = sorted({key for entry in METHODS.values() for key in entry.options})
    rules = [OnlyWith(key, Is("algorithm", *option_owners(key))) for key in options]
    for entry in METHODS.values():
        for key, reason in entry.forbids.items():
            others = tuple(name for name in ALGORITHMS if key not in METHODS[name].forbids)
            rules.append(OnlyWith(key, Is("algorithm", *others), reason))
    return tuple(rules)


class MethodConfig(Strict):
    """One method to compare.

    `fraction` and `local_epochs` belong to FedAvg, `momentum` and `variant` to CDMSGD
    (the registry says which algorithm takes which key).
    """

    name: str = Field(
        min_length=1, description="the method's name in MLflow and the report, unique in the "
        "scenario")
    algorithm: Algorithm = Field(
        description="cdsgd: Jiang et al. eq. 5; cdmsgd: CDSGD with momentum (section 7); "
        "fedavg: Flower's FedAvg; centralized_sgd: CDSGD on the one-node graph Π = [1] with "
        "all the data")
    momentum: float | None = Field(
        None, ge=0.0, lt=1.0, description="cdmsgd: momentum μ in [0, 1). Default: 0.9")
    variant: Literal["nesterov", "polyak"] | None = Field(
        None, description="cdmsgd: the momentum form, Polyak x_{k+1} = Σ π_jl x_k^l − α g + "
        "μ(x_k − x_{k−1}) or Nesterov (steps from y_k = x_k + μ(x_k − x_{k−1})). Default: "
        "nesterov, as the paper's experiments")
    fraction: float | None = Field(
        None, gt=0.0, le=1.0, description="fedavg: fraction C of the clients sampled each "
        "round, in (0, 1]. Default: 1.0")
    local_epochs: Count | None = Field(
        None, description="fedavg: local epochs E each sampled client trains per round. "
        "Default: 1")
    lr: float | None = Field(
        None, gt=0.0, description="this method's step size α. Default: training.lr")
    local_steps: Count | None = Field(
        None, description="gossip methods: minibatch steps per round. Default: "
        "training.local_steps")
    batch_size: Count | None = Field(
        None, description="this method's minibatch size. Default: training.batch_size")
    rounds: Count | None = Field(
        None, description="this method's rounds (a FedAvg round is E epochs, a gossip round "
        "local_steps minibatches). Default: training.rounds")

    rules = _registry_rules()
