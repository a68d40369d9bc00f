"""The `methods` section: which algorithms to compare, each with its own overrides.

What each algorithm accepts comes from the method registry (`strategies.registry`):
a key that belongs to another algorithm is an error naming the one it belongs to.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    NonNegativeInt,
    PositiveFloat,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
)

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


def _one_step_size_error(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """γ's two forms give one message, not one per form."""
    try:
        return handler(value)
    except ValidationError:
        raise ValueError(f"expected a number in (0, 1] or 'auto' (got {value!r})") from None


# CHOCO's consensus step γ: a number in (0, 1], or "auto" (searched before training).
StepSize = Annotated[Annotated[float, Field(gt=0.0, le=1.0)] | Literal["auto"],
                     WrapValidator(_one_step_size_error)]


class CompressionConfig(Strict):
    """A compressor Q of gossip messages (`strategies.compression`): what each agent's
    message is reduced to, and the bytes it then travels as."""

    kind: Literal["top_k", "random_k", "qsgd", "sign", "none"] = Field(
        description="top_k: the k largest entries (values + int32 positions); random_k: k "
        "entries drawn at random (values + the draw's seed); qsgd: stochastic rounding to "
        "2^bits − 1 levels (packed levels and signs, one scale per block); sign: the scaled "
        "sign ‖x‖₁/d · sign(x) (one bit per entry, one scale per block); none: the exact "
        "message")
    fraction: float | None = Field(
        None, gt=0.0, le=1.0, description="top_k, random_k: the fraction f of each block's "
        "entries kept, k = max(1, ⌊f d⌋), in (0, 1]. No default: top_k and random_k need it")
    bits: int | None = Field(
        None, ge=1, le=16, description="qsgd: bits per level, s = 2^bits − 1 levels, 1..16. "
        "No default: qsgd needs it")
    unbiased: bool = Field(
        False, description="random_k: scale the kept entries by d/k (E Q(x) = x); qsgd: "
        "QSGD's unbiased form instead of the one divided by τ = 1 + min(d/s², √d/s), the "
        "contraction CHOCO's analysis needs. Default: false (biased, as CHOCO uses them)")
    per_tensor: bool = Field(
        True, description="compress each parameter tensor on its own (true, as the "
        "authors' code) or the whole model flattened into one vector (false). Default: true")

    rules = (
        OnlyWith("fraction", Is("kind", "top_k", "random_k", called="compressor")),
        OnlyWith("bits", Is("kind", "qsgd", called="compressor")),
        OnlyWith("unbiased", Is("kind", "random_k", "qsgd", called="compressor")),
        OnlyWith("per_tensor", Is("kind", "top_k", "random_k", "qsgd", "sign",
                                  called="compressor")),
        Needs(Is("kind", "top_k", "random_k"), ("fraction",),
              "compressors top_k and random_k need fraction, e.g. 0.1 (a tenth of the "
              "entries)"),
        Needs(Is("kind", "qsgd"), ("bits",), "compressor qsgd needs bits, e.g. 4"),
    )
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
    CDMSGD, CHOCO, gradient tracking, QG-DSGDm, SGP and D-SGD (adapt then combine),
    `momentum_buffer` to CDMSGD, the server optimizers' keys to their strategy,
    `consensus_control` to CDSGD and CDMSGD, `compression` to those and CHOCO,
    `aggregation` to CDSGD, CDMSGD and D-SGD (adapt then combine), `consensus_step_size`
    to CHOCO.
    """

    name: str = Field(
        min_length=1, description="the method's name in MLflow and the report, unique in the "
        "scenario")
    algorithm: Algorithm = Field(
        description="cdsgd: Jiang et al. eq. 5; cdmsgd: CDSGD with momentum (section 7); "
        "gradient_tracking: DSGT (Koloskova et al. 2021); d2: D² (Tang et al. 2018); "
        "qg_dsgdm: quasi-global momentum (Lin et al. 2021); dsgd_atc: D-SGD adapt then "
        "combine, each agent steps, then mixes (or robustly aggregates) its neighbours' "
        "stepped points, the ClippedGossip authors' form; choco: CHOCO-SGD, Koloskova et "
        "al. 2019 (compressed differences against public copies); fedavg, fedprox, fedavgm, "
        "fedadam, fedyogi, fedadagrad, fedmedian, fedtrimmedavg, krum, multikrum, bulyan: "
        "Flower's stock strategy of that name; centralized_sgd: CDSGD on the one-node graph "
        "Π = [1] with all the data; sgp: Stochastic Gradient Push (Assran et al. 2019), "
        "push-sum with a column-stochastic Π, the only method for a directed graph; ad_psgd: "
        "AD-PSGD (Lian et al. 2018), each agent on its own simulated clock averaging with "
        "one random neighbour (needs a network section)")
    momentum: float | None = Field(
        None, ge=0.0, lt=1.0, description="cdmsgd, choco, qg_dsgdm, gradient_tracking, sgp, "
        "dsgd_atc: momentum μ (QG-DSGDm's β) in [0, 1). Default: 0.9; choco, "
        "gradient_tracking, sgp and dsgd_atc 0 (no momentum)")
    variant: Literal["nesterov", "polyak"] | None = Field(
        None, description="cdmsgd: the momentum form, Polyak x_{k+1} = Σ π_jl x_k^l − α g + "
        "μ(x_k − x_{k−1}) or Nesterov (steps from y_k = x_k + μ(x_k − x_{k−1})); qg_dsgdm "
        "and gradient_tracking: heavy ball (polyak, step along the buffer m) or Nesterov "
        "(g + μ m); choco (when momentum > 0): PyTorch SGD's buffer b = μ b + g, the step "
        "−α b (polyak) or −α (g + μ b) (nesterov), as the authors' code; sgp (when momentum "
        "> 0): the same local buffer, stepping on the push-sum numerator, as the authors' "
        "code; dsgd_atc (when momentum > 0): the same local buffer, as the ClippedGossip "
        "authors' workers. Default: nesterov, as the papers' experiments; "
        "gradient_tracking and dsgd_atc polyak")
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
        "(gradient_tracking, d2, qg_dsgdm and dsgd_atc take one). Default: training.local_steps")
    batch_size: Count | None = Field(
        None, description="this method's minibatch size. Default: training.batch_size")
    rounds: Count | None = Field(
        None, description="this method's rounds (a FedAvg round is E epochs, a gossip round "
        "local_steps minibatches). Default: training.rounds or training.epochs")
    epochs: float | None = Field(
        None, gt=0.0, description="this method's epochs, instead of rounds. Default: "
        "training's")
    topology: dict[str, Any] | None = Field(
        None, description="this method's own graph: topology keys that replace the "
        "scenario's for this method only (e.g. `{kind: directed_exponential}` for sgp, "
        "`{kind: exponential, schedule: one_peer_exponential}`), so one file compares "
        "methods on the graphs they are built for; the agents stay topology.agents. A "
        "method that names its own kind starts afresh on that kind (only the scenario's "
        "agents and seed carry over); one that does not replaces single keys. Default: "
        "the scenario's topology")
    consensus_control: ConsensusControlConfig | None = Field(
        None, description="cdsgd, cdmsgd: extra gossip-only exchanges after each round "
        "(Kong et al. 2021). Default: none")
    compression: Annotated[CompressionConfig, Shorthand("kind")] | None = Field(
        None, description="cdsgd, cdmsgd: naive compressed gossip, every agent publishes "
        "Q(its point) and mixes its neighbours' compressed points with its own exact one; "
        "choco: the compressor of its differences (required; kind none makes it CDSGD's "
        "exchange). A kind alone (`compression: sign`) or a mapping with its keys. "
        "Default: none (no compression)")
    consensus_step_size: StepSize | None = Field(
        None, description="choco: the consensus step γ in (0, 1], or auto: searched before "
        "training on the method's graph and compressor (CHOCO-Gossip from random points, as "
        "the authors' tune_consensus_stepsize) and logged as the param "
        "method.consensus_step_size. Default: auto")
    aggregation: Annotated[AggregationConfig, Shorthand("kind")] | None = Field(
        None, description="cdsgd, cdmsgd, dsgd_atc: how each agent aggregates its "
        "neighbourhood, a kind alone (`aggregation: median`) or a mapping (`{kind: "
        "trimmed_mean, b: 1}`); robust rules are meant for dsgd_atc (adapt then combine). "
        "Server methods defend with their strategy instead. Default: mean")

    rules = (*_registry_rules(),
             OnlyWith("epochs", Not(IsSet("rounds")), "give rounds or epochs, not both"),
             Needs(Is("algorithm", "choco"), ("compression",),
                   "algorithm 'choco' needs compression, e.g. {kind: top_k, fraction: 0.1} "
                   "(kind none gossips exact differences)"),
             OnlyWith("consensus_control", Not(IsSet("compression")),
                      "consensus control moves the published points, which compressed "
                      "gossip does not publish: remove consensus_control or compression"),
             OnlyWith("aggregation", Not(IsSet("compression")),
                      "robust aggregation reads the neighbours' exact points, which "
                      "compressed gossip does not publish: remove aggregation or "
                      "compression"))
