"""The `methods` section: which algorithms to compare, each with its own overrides.

What each algorithm accepts comes from the method registry (`strategies.registry`):
a key that belongs to another algorithm is an error naming the one it belongs to.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, NonNegativeInt, PositiveFloat, field_validator

from decentral_bench.scenario.base import Count, Strict
from decentral_bench.scenario.rules import (
    Is,
    IsSet,
    Needs,
    Not,
    OnlyWith,
    Shorthand,
    alternatives,
)
from strategies.consensus_control import DEFAULT_MAX_GOSSIP_STEPS
from strategies.registry import ALGORITHMS, METHODS, option_owners

Algorithm = Literal[ALGORITHMS]  # type: ignore[valid-type]


def _forbidders(key: str) -> tuple[str, ...]:
    """The algorithms that forbid `key`, with a reason of their own."""
    return tuple(name for name, entry in METHODS.items() if key in entry.forbids)


def _registry_rules() -> tuple[OnlyWith, ...]:
    """The registry's word on which algorithm takes which key, as rules: a method-only key
    (momentum, fraction, ...) belongs to the algorithms that list it among their options,
    and a key an algorithm forbids is refused with the registry's reason (in place of the
    generic one, for a method-only key)."""
    options = sorted({key for entry in METHODS.values() for key in entry.options})
    rules = [OnlyWith(key, Is("algorithm", *option_owners(key), *_forbidders(key)),
                      f"'{key}' applies to algorithm {alternatives(tuple(option_owners(key)))} "
                      "only; remove it" if _forbidders(key) else None)
             for key in options]
    for entry in METHODS.values():
        for key, reason in entry.forbids.items():
            rules.append(OnlyWith(key, Not(Is("algorithm", entry.algorithm)), reason))
    return tuple(rules)


class ConsensusControlConfig(Strict):
    """Consensus control (Kong et al. 2021): gossip-only exchanges after a round's step,
    in chosen step-size phases, to keep the consensus distance Ξ² low where it matters."""

    mode: Literal["fixed", "adaptive", "exact"] = Field(
        description="fixed: gossip_steps exchanges every round; adaptive: exchanges until Ξ² "
        "meets the target; exact: every agent gets x̄ (an all-reduce)")
    gossip_steps: Count | None = Field(
        None, description="fixed: gossip-only exchanges after every training round. No "
        "default: fixed needs it")
    target_ratio: float | None = Field(
        None, gt=0.0, lt=1.0, description="adaptive: after control Ξ² ≤ target_ratio × Ξ² "
        "before control, this round, in (0, 1). No default: adaptive needs it or target")
    target: float | None = Field(
        None, gt=0.0, description="adaptive: an absolute bound on Ξ² after control, instead "
        "of target_ratio. Default: unset")
    max_gossip_steps: Count | None = Field(
        None, description="adaptive: at most this many exchanges per round; reaching it is "
        f"logged as an event. Default: {DEFAULT_MAX_GOSSIP_STEPS}")
    phases: tuple[Count, ...] | None = Field(
        None, json_schema_extra={"minItems": 1, "uniqueItems": True},
        description="the step-size phases (numbered from 1, split by training.milestones) "
        "where control acts. Default: all")

    rules = (
        OnlyWith("gossip_steps", Is("mode", "fixed")),
        OnlyWith("target_ratio", Is("mode", "adaptive")),
        OnlyWith("target", Is("mode", "adaptive")),
        OnlyWith("max_gossip_steps", Is("mode", "adaptive")),
        Needs(Is("mode", "fixed"), ("gossip_steps",), "mode 'fixed' needs gossip_steps, e.g. 3"),
        Needs(Is("mode", "adaptive"), ("target_ratio", "target"),
              "mode 'adaptive' needs target_ratio (e.g. 0.25) or target"),
        OnlyWith("target", Not(IsSet("target_ratio")), "give target_ratio or target, not both"),
    )

    @field_validator("phases")
    @classmethod
    def _distinct(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is not None and (not value or len(set(value)) != len(value)):
            raise ValueError("list distinct phases, numbered from 1, e.g. [1]")
        return value


class AggregationConfig(Strict):
    """How a gossip method's agents aggregate their neighbourhood (`strategies.robust`)."""

    kind: Literal["mean", "clipped_gossip", "trimmed_mean", "median", "krum"] = Field(
        "mean", description="mean: Σ π_jl x_l, the plain mixing step; clipped_gossip: x_j + "
        "Σ π_jl CLIP(x_l − x_j, τ_j) (He et al. 2022); trimmed_mean: per coordinate, drop the "
        "b largest and b smallest neighbours' values, average the rest with your own "
        "(BRIDGE-T); median: the coordinate-wise median of the neighbourhood, own value "
        "included; krum: the neighbourhood's member with the smallest Krum score")
    b: Count | None = Field(
        None, description="trimmed_mean, krum: the lying neighbours tolerated; every agent "
        "needs a degree ≥ 2b + 1. Default: 1")
    tau: PositiveFloat | None = Field(
        None, description="clipped_gossip: the clipping radius τ > 0 of every agent. Default: "
        "the authors' adaptive rule, each agent's second largest distance to a neighbour")

    rules = (OnlyWith("b", Is("kind", "trimmed_mean", "krum", called="aggregation")),
             OnlyWith("tau", Is("kind", "clipped_gossip", called="aggregation")))


class MethodConfig(Strict):
    """One method to compare.

    The registry (`strategies.registry`) says which algorithm takes which method-only key:
    `fraction` and `local_epochs` belong to the server methods, `momentum` and `variant` to
    CDMSGD, gradient tracking and QG-DSGDm, the server optimizers' keys to their strategy,
    `consensus_control` to CDSGD and CDMSGD.
    """

    name: str = Field(
        min_length=1, description="the method's name in MLflow and the report, unique in the "
        "scenario")
    algorithm: Algorithm = Field(
        description="cdsgd: Jiang et al. eq. 5; cdmsgd: CDSGD with momentum (section 7); "
        "gradient_tracking: DSGT (Koloskova et al. 2021); d2: D² (Tang et al. 2018); "
        "qg_dsgdm: quasi-global momentum (Lin et al. 2021); fedavg, fedprox, fedavgm, "
        "fedadam, fedyogi, fedadagrad, fedmedian, fedtrimmedavg, krum, multikrum, bulyan: "
        "Flower's stock strategy of that name; centralized_sgd: CDSGD on the one-node graph "
        "Π = [1] with all the data; sgp: Stochastic Gradient Push (Assran et al. 2019), "
        "push-sum with a column-stochastic Π, the only method for a directed graph")
    momentum: float | None = Field(
        None, ge=0.0, lt=1.0, description="cdmsgd, qg_dsgdm, gradient_tracking: momentum μ "
        "(QG-DSGDm's β) in [0, 1). Default: 0.9; gradient_tracking 0 (no momentum)")
    variant: Literal["nesterov", "polyak"] | None = Field(
        None, description="cdmsgd: the momentum form, Polyak x_{k+1} = Σ π_jl x_k^l − α g + "
        "μ(x_k − x_{k−1}) or Nesterov (steps from y_k = x_k + μ(x_k − x_{k−1})); qg_dsgdm "
        "and gradient_tracking: heavy ball (polyak, step along the buffer m) or Nesterov "
        "(g + μ m). Default: nesterov, as the papers' experiments; gradient_tracking polyak")
    momentum_buffer: Literal["iterates", "local"] | None = Field(
        None, description="cdmsgd: local, the authors' code (and Kong et al.'s): a velocity "
        "of the agent's own gradient steps, never mixed, stable on every graph; or iterates, "
        "the paper's equations' μ(x_k − x_{k−1}), whose Nesterov form diverges where Π's λN "
        "≤ −1/(1 + 2μ) and is slow close above it. Default: local")
    buffer_momentum: float | None = Field(
        None, ge=0.0, lt=1.0, description="qg_dsgdm: μ of the quasi-global buffer "
        "m̂ ← μ m̂ + (1 − μ)(x_k − x_{k+1})/α, in [0, 1). Default: 0.9 (the authors' code)")
    fraction: float | None = Field(
        None, gt=0.0, le=1.0, description="server methods: fraction C of the clients sampled "
        "each round, in (0, 1]. Default: 1.0")
    local_epochs: Count | None = Field(
        None, description="server methods: local epochs E each sampled client trains per "
        "round. Default: 1")
    proximal_mu: float | None = Field(
        None, ge=0.0, description="fedprox: μ of the proximal term μ/2 ||x − x_t||² the "
        "clients add to their loss (x_t the round's global model). Default: 0.0, Flower's "
        "(which is FedAvg)")
    server_lr: float | None = Field(
        None, gt=0.0, description="fedavgm, fedadam, fedyogi, fedadagrad: the server's step "
        "size η (Flower's server_learning_rate or eta). Default: Flower's, 1.0 fedavgm, 0.1 "
        "fedadam and fedadagrad, 0.01 fedyogi")
    server_momentum: float | None = Field(
        None, ge=0.0, lt=1.0, description="fedavgm: the server's momentum β in [0, 1). "
        "Default: 0.0, Flower's")
    beta_1: float | None = Field(
        None, ge=0.0, lt=1.0, description="fedadam, fedyogi: β1 of the server's first "
        "moment, in [0, 1). Default: 0.9")
    beta_2: float | None = Field(
        None, ge=0.0, lt=1.0, description="fedadam, fedyogi: β2 of the server's second "
        "moment, in [0, 1). Default: 0.99")
    tau: float | None = Field(
        None, gt=0.0, description="fedadam, fedyogi, fedadagrad: τ, the server optimizer's "
        "degree of adaptivity (added to √v). Default: 0.001")
    trim_fraction: float | None = Field(
        None, ge=0.0, lt=0.5, description="fedtrimmedavg: fraction β in [0, 0.5) of the "
        "values cut at each end of every coordinate (Flower's beta). Default: 0.2")
    num_malicious_nodes: NonNegativeInt | None = Field(
        None, description="krum, multikrum, bulyan: f, the malicious clients the rule "
        "tolerates (bulyan needs at least 4f + 3 clients a round). Default: 0")
    num_nodes_to_select: Count | None = Field(
        None, description="multikrum: m, the best-scored clients averaged. Default: 1")
    lr: float | None = Field(
        None, gt=0.0, description="this method's step size α. Default: training.lr")
    local_steps: Count | None = Field(
        None, description="cdsgd, cdmsgd, centralized_sgd: minibatch steps per round "
        "(gradient_tracking, d2 and qg_dsgdm take one). Default: training.local_steps")
    batch_size: Count | None = Field(
        None, description="this method's minibatch size. Default: training.batch_size")
    rounds: Count | None = Field(
        None, description="this method's rounds (a FedAvg round is E epochs, a gossip round "
        "local_steps minibatches). Default: training.rounds or training.epochs")
    epochs: float | None = Field(
        None, gt=0.0, description="this method's epochs, instead of rounds. Default: "
        "training's")
    consensus_control: ConsensusControlConfig | None = Field(
        None, description="cdsgd, cdmsgd: extra gossip-only exchanges after each round "
        "(Kong et al. 2021). Default: none")
    aggregation: Annotated[AggregationConfig, Shorthand("kind")] | None = Field(
        None, description="cdsgd, cdmsgd: how each agent aggregates its neighbourhood, a kind "
        "alone (`aggregation: median`) or a mapping (`{kind: trimmed_mean, b: 1}`). Server "
        "methods defend with their strategy instead. Default: mean")

    rules = (*_registry_rules(),
             OnlyWith("epochs", Not(IsSet("rounds")), "give rounds or epochs, not both"))
