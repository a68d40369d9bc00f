"""The methods a scenario can name: algorithm name → how it runs.

Scenario validation, the plan, the ClientApp and both engines read this table;
nothing else branches on algorithm names. Adding a gossip algorithm is one
module with its update rule (see `strategies.gossip.GossipRule`) and one entry
here; adding a server-based baseline is one entry naming Flower's class, its
keyword arguments and the same update as a pure function (`strategies.server_rules`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

from strategies import server_rules
from strategies.ad_psgd import ADPSGD
from strategies.cdmsgd import (
    LocalVelocity,
    Nesterov,
    Polyak,
    nesterov_disagreement_modulus,
    nesterov_divergence_bound,
)
from strategies.cdsgd import CDSGD
from strategies.choco import Choco
from strategies.compressed_gossip import CompressedGossip
from strategies.compression import AgentCompressor, Compressor
from strategies.d2 import D2
from strategies.dsgd_atc import DSGDAdaptThenCombine
from strategies.gossip import GossipRule
from strategies.gradient_tracking import GradientTracking
from strategies.qg_dsgdm import QuasiGlobalMomentum
from strategies.server_rules import ServerRule
from strategies.sgp import SGP

Routing = Literal["gossip", "server"]
# What a gossip rule needs of Π: doubly stochastic (CDSGD's consensus) or only
# column-stochastic (push-sum, which de-biases with its weights: directed graphs too).
Mixing = Literal["doubly_stochastic", "column_stochastic"]

# Why a server method takes no `aggregation`.
SERVER_DEFENCE = ("a server method's defence is its server strategy (Flower's FedMedian, "
                  "Krum, ...), not an aggregation of its agents; remove 'aggregation'")


@dataclass(frozen=True)
class StabilityBound:
    """The smallest eigenvalue λN of Π a rule is stable for: it needs λN > `value`
    (`condition`, as a formula). `rule` names the rule, `consequence` says what happens at
    or below the bound and `fixes` what to change, for the error message."""

    value: float
    rule: str
    condition: str
    consequence: str
    fixes: str


@dataclass(frozen=True)
class StockStrategy:
    """A server method: Flower's class `flower_class` (in `flwr.serverapp.strategy`) built
    with `keywords` (Flower's keyword → the method key holding its value), and `update`,
    the same server update as a pure function of the resolved options, for the
    vectorized engine."""

    flower_class: str
    keywords: Mapping[str, str]
    update: Callable[[Mapping[str, Any]], ServerRule]


def _server(function: Callable[..., server_rules.Update], **keys: str,
            ) -> Callable[[Mapping[str, Any]], ServerRule]:
    """`function` with its keywords taken from the options (keyword → method key)."""
    return lambda options: partial(function, **{word: options[key] for word, key in
                                                keys.items()})


def _stock(flower_class: str, function: Callable[..., server_rules.Update],
           **keys: str) -> StockStrategy:
    """A stock strategy whose Flower keywords are its update's."""
    return StockStrategy(flower_class, keys, _server(function, **keys))


@dataclass(frozen=True)
class Method:
    """One algorithm.

    `routing` is "gossip" (the server only routes points along the graph's edges and
    the agents run `rule`) or "server" (Flower's stock strategy `stock` aggregates; the
    agents run local SGD). `options` are the method keys only this algorithm takes, with
    their defaults (Flower's, for a stock strategy's); `forbids` the common keys it
    rejects, with the reason.
    """

    algorithm: str
    summary: str
    routing: Routing
    options: Mapping[str, Any] = field(default_factory=dict)
    forbids: Mapping[str, str] = field(default_factory=dict)
    single_agent: bool = False  # one node holding all the data, on the graph Π = [1]
    mixing: Mixing = "doubly_stochastic"
    # Whether the rule may take several minibatch steps per round (`local_steps` > 1), and
    # whether it runs under agent and link failures (a lost message breaks CHOCO's s_i).
    local_steps: bool = True
    failures: bool = True
    # Whether the agents step on their own simulated clocks (AD-PSGD), in virtual rounds of
    # N gradient steps, rather than in synchronous rounds.
    asynchronous: bool = False
    rule: Callable[[Mapping[str, Any]], GossipRule] | None = None
    stock: StockStrategy | None = None
    # The smallest eigenvalue of Π the rule is stable for under the resolved options
    # (None: any Π of Assumption 2), and the factor by which the rule shrinks a
    # disagreement along an eigenvector of eigenvalue λ per round in the long run, where
    # the momentum, not the graph, sets it (None: no such mode).
    lowest_eigenvalue: Callable[[Mapping[str, Any]], StabilityBound | None] = \
        lambda options: None
    disagreement_modulus: Callable[[Mapping[str, Any], float], float | None] = \
        lambda options, eigenvalue: None
    # The fewest clients a server method's round must sample under the resolved options.
    min_clients: Callable[[Mapping[str, Any]], int] = lambda options: 1

    @property
    def is_gossip(self) -> bool:
        return self.routing == "gossip"

    def update_rule(self, options: Mapping[str, Any]) -> GossipRule:
        """The gossip update rule under the resolved `options`."""
        if self.rule is None:
            raise ValueError(f"'{self.algorithm}' is not a gossip method: it has no update rule")
        return self.rule(options)

    def server_rule(self, options: Mapping[str, Any]) -> ServerRule:
        """The server update under the resolved `options`."""
        if self.stock is None:
            raise ValueError(f"'{self.algorithm}' is not a server method: it has no server "
                             "update")
        return self.stock.update(options)


def compressor(options: Mapping[str, Any]) -> Compressor | None:
    """The method's compressor, from its `compression` option (a mapping of the
    compressor's keys; None: the method does not compress)."""
    config = options.get("compression")
    if config is None:
        return None
    return Compressor(**{key: value for key, value in config.items() if value is not None})


def _compressed(rule: GossipRule, options: Mapping[str, Any]) -> GossipRule:
    """`rule`, publishing compressed points when the method has a compressor."""
    found = compressor(options)
    return rule if found is None else CompressedGossip(rule, AgentCompressor(found))


def _cdmsgd_rule(options: Mapping[str, Any]) -> GossipRule:
    if options["momentum_buffer"] == "local":
        rule: GossipRule = LocalVelocity(momentum=options["momentum"],
                                         nesterov=options["variant"] == "nesterov")
    elif options["variant"] == "polyak":
        rule = Polyak(momentum=options["momentum"])
    else:
        rule = Nesterov(momentum=options["momentum"])
    return _compressed(rule, options)


def _choco_rule(options: Mapping[str, Any]) -> GossipRule:
    found = compressor(options)
    if found is None:
        raise ValueError("CHOCO-SGD needs a compressor (its 'compression' option)")
    return Choco(consensus_step_size=float(options["consensus_step_size"]),
                 compression=AgentCompressor(found), momentum=options["momentum"],
                 nesterov=options["variant"] == "nesterov")


def _mixes_the_lookahead(options: Mapping[str, Any]) -> bool:
    return bool(options["variant"] == "nesterov" and options["momentum_buffer"] == "iterates")


def _cdmsgd_lowest_eigenvalue(options: Mapping[str, Any]) -> StabilityBound | None:
    """Nesterov on the iterates mixes the look-ahead y_k = x_k + μ (x_k − x_{k−1}), so a
    disagreement along an eigenvector of Π with eigenvalue λ follows
    e_{k+1} = λ ((1 + μ) e_k − μ e_{k−1}): a root of z² − λ(1 + μ) z + λμ passes −1
    when λ = −1/(1 + 2μ), and below it the agents drift apart geometrically whatever
    the step. Polyak's and the local-velocity forms are stable for every λ > −1."""
    if _mixes_the_lookahead(options):
        momentum = float(options["momentum"])
        return StabilityBound(
            nesterov_divergence_bound(momentum),
            f"CDMSGD-Nesterov on the iterates, momentum {momentum:g}", "−1/(1 + 2μ)",
            "where the agents' disagreement grows every round",
            "use momentum_buffer: local (the default), topology.lazy: true (every eigenvalue "
            "≥ 0), variant: polyak, or a smaller momentum")
    return None


def _cdmsgd_disagreement_modulus(options: Mapping[str, Any], eigenvalue: float,
                                 ) -> float | None:
    """Nesterov on the iterates: the larger root modulus of z² − λ(1 + μ) z + λμ."""
    if _mixes_the_lookahead(options):
        return nesterov_disagreement_modulus(eigenvalue, float(options["momentum"]))
    return None


# D² (Tang et al. 2018) needs λN > −1/3: without gradients its iterates follow
# X_{k+1} = Π (2 X_k − X_{k−1}), so the disagreement along an eigenvector of Π with
# eigenvalue λ has the roots of z² − 2λz + λ, and λ − √(λ² − λ) ≤ −1 exactly when λ ≤ −1/3:
# there the agents' disagreement no longer shrinks, whatever the step.
D2_BOUND = StabilityBound(
    -1.0 / 3.0, "D², Tang et al. 2018", "−1/3",
    "where the agents' disagreement no longer shrinks (D² needs λN > −1/3)",
    "use topology.lazy: true (every eigenvalue ≥ 0)")

ONE_STEP = "takes one gradient step per gossip round (its recursion mixes every step)"
SERVER_OPTIONS = {"fraction": 1.0, "local_epochs": 1}


def _one_step(name: str) -> dict[str, str]:
    return {"local_steps": f"{name} {ONE_STEP}; remove 'local_steps'",
            "aggregation": f"{name}'s recursion needs the plain weighted mean of its "
                           "neighbours' messages; remove 'aggregation'"}


def _server_forbids(name: str) -> dict[str, str]:
    return {"local_steps": f"{name} trains 'local_epochs' per round; remove 'local_steps'",
            "aggregation": SERVER_DEFENCE}


def _gradient_tracking_rule(options: Mapping[str, Any]) -> GossipRule:
    return GradientTracking(momentum=float(options["momentum"]),
                            nesterov=options["variant"] == "nesterov")


def _qg_rule(options: Mapping[str, Any]) -> GossipRule:
    return QuasiGlobalMomentum(momentum=float(options["momentum"]),
                               buffer_momentum=float(options["buffer_momentum"]),
                               nesterov=options["variant"] == "nesterov")


OPTIMIZER_KEYS = {"eta": "server_lr", "beta_1": "beta_1", "beta_2": "beta_2", "tau": "tau"}


METHODS: dict[str, Method] = {method.algorithm: method for method in (
    Method("cdsgd", "CDSGD, Jiang et al. 2017 eq. 5: mix the neighbours' points, step at "
           "your own", "gossip", options={"consensus_control": None, "compression": None,
                                          "aggregation": None},
           rule=lambda options: _compressed(CDSGD(), options)),
    Method("cdmsgd", "CDMSGD, Jiang et al. 2017: CDSGD with Polyak or Nesterov momentum",
           "gossip", options={"momentum": 0.9, "variant": "nesterov",
                              "momentum_buffer": "local", "consensus_control": None,
                              "compression": None, "aggregation": None},
           rule=_cdmsgd_rule, lowest_eigenvalue=_cdmsgd_lowest_eigenvalue,
           disagreement_modulus=_cdmsgd_disagreement_modulus),
    Method("dsgd_atc", "D-SGD, adapt then combine (the ClippedGossip authors' code): step "
           "your own point, then mix or robustly aggregate the neighbours' stepped points",
           "gossip", options={"momentum": 0.0, "variant": "polyak", "aggregation": None},
           forbids={"local_steps": f"D-SGD (adapt then combine) {ONE_STEP}; remove "
                                   "'local_steps'"},
           rule=lambda options: DSGDAdaptThenCombine(
               momentum=float(options["momentum"]), nesterov=options["variant"] == "nesterov")),
    Method("sgp", "SGP, Assran et al. 2019: push-sum over a directed graph, the gradient "
           "taken at the de-biased point x / w", "gossip",
           options={"momentum": 0.0, "variant": "nesterov"},
           rule=lambda options: SGP(momentum=float(options["momentum"]),
                                    nesterov=options["variant"] == "nesterov"),
           mixing="column_stochastic"),
    Method("ad_psgd", "AD-PSGD, Lian et al. 2018: each agent on its own simulated clock "
           "averages with one random neighbour, then applies its stale gradient", "gossip",
           forbids=_one_step("AD-PSGD"), rule=lambda options: ADPSGD(), local_steps=False,
           failures=False, asynchronous=True),
    Method("gradient_tracking", "gradient tracking (DSGT; Koloskova et al. 2021): step along "
           "a tracker of the average gradient, gossiped with the model", "gossip",
           options={"momentum": 0.0, "variant": "polyak"},
           forbids=_one_step("gradient tracking"), rule=_gradient_tracking_rule),
    Method("d2", "D² (Tang et al. 2018): gossip 2x_k − x_{k−1} − α g_k + α g_{k−1}, which "
           "removes the data-heterogeneity bias; needs λN > −1/3", "gossip",
           forbids=_one_step("D²"), rule=lambda options: D2(),
           lowest_eigenvalue=lambda options: D2_BOUND),
    Method("qg_dsgdm", "QG-DSGDm (Lin et al. 2021): local steps with a quasi-global "
           "momentum buffer updated from the model's displacement after gossip", "gossip",
           options={"momentum": 0.9, "variant": "nesterov", "buffer_momentum": 0.9},
           forbids=_one_step("QG-DSGDm"), rule=_qg_rule),
    Method("choco", "CHOCO-SGD, Koloskova et al. 2019: gossip compressed differences "
           "against public copies", "gossip",
           options={"compression": None, "consensus_step_size": "auto", "momentum": 0.0,
                    "variant": "nesterov"},
           rule=_choco_rule, local_steps=False, failures=False),
    Method("fedavg", "Flower's stock FedAvg: local epochs, then the example-weighted "
           "average on the server", "server", options=SERVER_OPTIONS,
           forbids=_server_forbids("FedAvg"), stock=_stock("FedAvg", server_rules.fedavg)),
    Method("fedprox", "Flower's FedProx: FedAvg with the proximal term μ/2 ||x − x_t||² in "
           "the clients' local steps", "server",
           options={**SERVER_OPTIONS, "proximal_mu": 0.0}, forbids=_server_forbids("FedProx"),
           stock=StockStrategy("FedProx", {"proximal_mu": "proximal_mu"},
                               _server(server_rules.fedavg))),
    Method("fedavgm", "Flower's FedAvgM: server momentum on the averaged update", "server",
           options={**SERVER_OPTIONS, "server_lr": 1.0, "server_momentum": 0.0},
           forbids=_server_forbids("FedAvgM"),
           stock=_stock("FedAvgM", server_rules.fedavgm, server_learning_rate="server_lr",
                        server_momentum="server_momentum")),
    Method("fedadam", "Flower's FedAdam: Adam on the server over the averaged update",
           "server", options={**SERVER_OPTIONS, "server_lr": 0.1, "beta_1": 0.9,
                              "beta_2": 0.99, "tau": 1e-3},
           forbids=_server_forbids("FedAdam"),
           stock=_stock("FedAdam", server_rules.fedadam, **OPTIMIZER_KEYS)),
    Method("fedyogi", "Flower's FedYogi: Yogi on the server over the averaged update",
           "server", options={**SERVER_OPTIONS, "server_lr": 0.01, "beta_1": 0.9,
                              "beta_2": 0.99, "tau": 1e-3},
           forbids=_server_forbids("FedYogi"),
           stock=_stock("FedYogi", server_rules.fedyogi, **OPTIMIZER_KEYS)),
    Method("fedadagrad", "Flower's FedAdagrad: Adagrad on the server over the averaged "
           "update", "server", options={**SERVER_OPTIONS, "server_lr": 0.1, "tau": 1e-3},
           forbids=_server_forbids("FedAdagrad"),
           stock=_stock("FedAdagrad", server_rules.fedadagrad, eta="server_lr", tau="tau")),
    Method("fedmedian", "Flower's FedMedian: the coordinate-wise median of the clients' "
           "models", "server", options=SERVER_OPTIONS, forbids=_server_forbids("FedMedian"),
           stock=_stock("FedMedian", server_rules.fedmedian)),
    Method("fedtrimmedavg", "Flower's FedTrimmedAvg: the coordinate-wise mean after cutting "
           "a fraction at each end", "server", options={**SERVER_OPTIONS,
                                                       "trim_fraction": 0.2},
           forbids=_server_forbids("FedTrimmedAvg"),
           stock=_stock("FedTrimmedAvg", server_rules.fedtrimmedavg, beta="trim_fraction")),
    Method("krum", "Flower's Krum: the client model closest to its n − f − 2 nearest others",
           "server", options={**SERVER_OPTIONS, "num_malicious_nodes": 0},
           forbids=_server_forbids("Krum"),
           stock=StockStrategy("Krum", {"num_malicious_nodes": "num_malicious_nodes"},
                               lambda options: partial(
                                   server_rules.multikrum, num_nodes_to_select=1,
                                   num_malicious_nodes=options["num_malicious_nodes"]))),
    Method("multikrum", "Flower's MultiKrum: the weighted average of the m models Krum "
           "scores best", "server", options={**SERVER_OPTIONS, "num_malicious_nodes": 0,
                                              "num_nodes_to_select": 1},
           forbids=_server_forbids("MultiKrum"),
           stock=_stock("MultiKrum", server_rules.multikrum,
                        num_malicious_nodes="num_malicious_nodes",
                        num_nodes_to_select="num_nodes_to_select")),
    Method("bulyan", "Flower's Bulyan: MultiKrum's n − 2f, then a coordinate-wise trimmed "
           "mean around their median", "server",
           options={**SERVER_OPTIONS, "num_malicious_nodes": 0},
           forbids=_server_forbids("Bulyan"),
           stock=_stock("Bulyan", server_rules.bulyan,
                        num_malicious_nodes="num_malicious_nodes"),
           min_clients=lambda options: 4 * int(options["num_malicious_nodes"]) + 3),
    Method("centralized_sgd", "centralized SGD: CDSGD on the one-node graph Π = [1] with "
           "all the data", "gossip", single_agent=True, rule=lambda options: CDSGD()),
)}

ALGORITHMS: tuple[str, ...] = tuple(METHODS)


def method(algorithm: str) -> Method:
    """The registry entry of `algorithm`."""
    try:
        return METHODS[algorithm]
    except KeyError:
        raise ValueError(f"unknown algorithm '{algorithm}'; known: "
                         f"{', '.join(ALGORITHMS)}") from None


def option_owners(key: str) -> list[str]:
    """The algorithms that take the method key `key`."""
    return [name for name, entry in METHODS.items() if key in entry.options]

