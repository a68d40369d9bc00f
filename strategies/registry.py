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

from strategies.cdmsgd import LocalVelocity, Nesterov, Polyak
from strategies.cdsgd import CDSGD
from strategies.gossip import GossipRule

Routing = Literal["gossip", "server"]

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
    rule: Callable[[Mapping[str, Any]], GossipRule] | None = None
    # The smallest eigenvalue of Π the rule is stable for under the resolved options
    # (None: any Π of Assumption 2).
    lowest_eigenvalue: Callable[[Mapping[str, Any]], float | None] = lambda options: None

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


def _cdmsgd_lowest_eigenvalue(options: Mapping[str, Any]) -> float | None:
    """Nesterov on the iterates mixes the look-ahead y_k = x_k + μ (x_k − x_{k−1}), so a
    disagreement along an eigenvector of Π with eigenvalue λ follows
    e_{k+1} = λ ((1 + μ) e_k − μ e_{k−1}): a root of z² − λ(1 + μ) z + λμ passes −1
    when λ = −1/(1 + 2μ), and below it the agents drift apart geometrically whatever
    the step. Polyak's and the local-velocity forms are stable for every λ > −1."""
    if options["variant"] == "nesterov" and options["momentum_buffer"] == "iterates":
        return -1.0 / (1.0 + 2.0 * float(options["momentum"]))
    return None


METHODS: dict[str, Method] = {method.algorithm: method for method in (
    Method("cdsgd", "CDSGD, Jiang et al. 2017 eq. 5: mix the neighbours' points, step at "
           "your own", "gossip", options={"consensus_control": None, "aggregation": None},
           rule=lambda options: CDSGD()),
    Method("cdmsgd", "CDMSGD, Jiang et al. 2017: CDSGD with Polyak or Nesterov momentum",
           "gossip", options={"momentum": 0.9, "variant": "nesterov",
                              "momentum_buffer": "iterates", "consensus_control": None,
                              "aggregation": None},
           rule=_cdmsgd_rule, lowest_eigenvalue=_cdmsgd_lowest_eigenvalue),
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

