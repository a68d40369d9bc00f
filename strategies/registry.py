"""The methods a scenario can name: algorithm name → how it runs.

Scenario validation, the plan, the ClientApp and both engines read this table;
nothing else branches on algorithm names. Adding a gossip algorithm is one
module with its update rule (see `strategies.gossip.GossipRule`) and one entry
here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from strategies.cdmsgd import (
    LocalVelocity,
    Nesterov,
    Polyak,
    nesterov_disagreement_modulus,
    nesterov_divergence_bound,
)
from strategies.cdsgd import CDSGD
from strategies.gossip import GossipRule
from strategies.sgp import SGP

Routing = Literal["gossip", "server"]
# What a gossip rule needs of Π: doubly stochastic (CDSGD's consensus) or only
# column-stochastic (push-sum, which de-biases with its weights: directed graphs too).
Mixing = Literal["doubly_stochastic", "column_stochastic"]

# Why a server method takes no `aggregation`.
SERVER_DEFENCE = ("a server method's defence is its server strategy (Flower's FedMedian, "
                  "Krum, ...), not an aggregation of its agents; remove 'aggregation'")


@dataclass(frozen=True)
class Method:
    """One algorithm.

    `routing` is "gossip" (the server only routes points along the graph's edges and
    the agents run `rule`) or "server" (Flower's FedAvg aggregates; the agents run
    local SGD). `options` are the method keys only this algorithm takes, with their
    defaults; `forbids` the common keys it rejects, with the reason.
    """

    algorithm: str
    summary: str
    routing: Routing
    options: Mapping[str, Any] = field(default_factory=dict)
    forbids: Mapping[str, str] = field(default_factory=dict)
    single_agent: bool = False  # one node holding all the data, on the graph Π = [1]
    mixing: Mixing = "doubly_stochastic"
    rule: Callable[[Mapping[str, Any]], GossipRule] | None = None
    # The smallest eigenvalue of Π the rule is stable for under the resolved options
    # (None: any Π of Assumption 2), and the factor by which the rule shrinks a
    # disagreement along an eigenvector of eigenvalue λ per round in the long run, where
    # the momentum, not the graph, sets it (None: no such mode).
    lowest_eigenvalue: Callable[[Mapping[str, Any]], float | None] = lambda options: None
    disagreement_modulus: Callable[[Mapping[str, Any], float], float | None] = \
        lambda options, eigenvalue: None

    @property
    def is_gossip(self) -> bool:
        return self.routing == "gossip"

    def update_rule(self, options: Mapping[str, Any]) -> GossipRule:
        """The gossip update rule under the resolved `options`."""
        if self.rule is None:
            raise ValueError(f"'{self.algorithm}' is not a gossip method: it has no update rule")
        return self.rule(options)


def _cdmsgd_rule(options: Mapping[str, Any]) -> GossipRule:
    if options["momentum_buffer"] == "local":
        return LocalVelocity(momentum=options["momentum"],
                             nesterov=options["variant"] == "nesterov")
    if options["variant"] == "polyak":
        return Polyak(momentum=options["momentum"])
    return Nesterov(momentum=options["momentum"])


def _mixes_the_lookahead(options: Mapping[str, Any]) -> bool:
    return bool(options["variant"] == "nesterov" and options["momentum_buffer"] == "iterates")


def _cdmsgd_lowest_eigenvalue(options: Mapping[str, Any]) -> float | None:
    """Nesterov on the iterates mixes the look-ahead y_k = x_k + μ (x_k − x_{k−1}), so a
    disagreement along an eigenvector of Π with eigenvalue λ follows
    e_{k+1} = λ ((1 + μ) e_k − μ e_{k−1}): a root of z² − λ(1 + μ) z + λμ passes −1
    when λ = −1/(1 + 2μ), and below it the agents drift apart geometrically whatever
    the step. Polyak's and the local-velocity forms are stable for every λ > −1."""
    if _mixes_the_lookahead(options):
        return nesterov_divergence_bound(float(options["momentum"]))
    return None


def _cdmsgd_disagreement_modulus(options: Mapping[str, Any], eigenvalue: float,
                                 ) -> float | None:
    """Nesterov on the iterates: the larger root modulus of z² − λ(1 + μ) z + λμ."""
    if _mixes_the_lookahead(options):
        return nesterov_disagreement_modulus(eigenvalue, float(options["momentum"]))
    return None


METHODS: dict[str, Method] = {method.algorithm: method for method in (
    Method("cdsgd", "CDSGD, Jiang et al. 2017 eq. 5: mix the neighbours' points, step at "
           "your own", "gossip", options={"consensus_control": None, "aggregation": None},
           rule=lambda options: CDSGD()),
    Method("cdmsgd", "CDMSGD, Jiang et al. 2017: CDSGD with Polyak or Nesterov momentum",
           "gossip", options={"momentum": 0.9, "variant": "nesterov",
                              "momentum_buffer": "local", "consensus_control": None,
                              "aggregation": None},
           rule=_cdmsgd_rule, lowest_eigenvalue=_cdmsgd_lowest_eigenvalue,
           disagreement_modulus=_cdmsgd_disagreement_modulus),
    Method("sgp", "SGP, Assran et al. 2019: push-sum over a directed graph, the gradient "
           "taken at the de-biased point x / w", "gossip", rule=lambda options: SGP(),
           mixing="column_stochastic"),
    Method("fedavg", "Flower's stock FedAvg: local epochs, then the example-weighted "
           "average on the server", "server", options={"fraction": 1.0, "local_epochs": 1},
           forbids={"local_steps": "FedAvg trains 'local_epochs' per round; remove "
                                   "'local_steps'",
                    "aggregation": SERVER_DEFENCE}),
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

