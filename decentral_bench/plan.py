"""The effective settings of one method of a scenario, as every layer sees them.

The ServerApp, the ClientApp and the plain-PyTorch reference all derive the
agents, the graph and the step sizes from a `MethodPlan`, so they cannot
disagree about what a method runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from decentral_bench.scenario import GOSSIP_ALGORITHMS, MethodConfig, Scenario
from decentral_bench.topology import Topology, build_topology
from strategies.centralized_sgd import centralized_topology


@dataclass(frozen=True)
class MethodPlan:
    """One method of a scenario with the scenario's defaults filled in."""

    scenario: Scenario
    method: MethodConfig

    @classmethod
    def of(cls, scenario: Scenario, method_name: str) -> MethodPlan:
        return cls(scenario=scenario, method=scenario.method(method_name))

    @property
    def algorithm(self) -> str:
        return self.method.algorithm

    @property
    def is_gossip(self) -> bool:
        """Routed by the gossip router (CDSGD family, centralized SGD) rather than FedAvg."""
        return self.method.algorithm in GOSSIP_ALGORITHMS

    @property
    def agents(self) -> int:
        """Number of Flower nodes: one for centralized SGD, the graph's size otherwise."""
        return 1 if self.algorithm == "centralized_sgd" else self.scenario.topology.agents

    @cached_property
    def topology(self) -> Topology:
        if self.algorithm == "centralized_sgd":
            return centralized_topology()
        return build_topology(self.scenario.topology, self.seed)

    @property
    def rounds(self) -> int:
        rounds = self.method.rounds
        return rounds if rounds is not None else self.scenario.training.rounds

    @property
    def seed(self) -> int:
        return self.scenario.training.seed

    @property
    def lr(self) -> float:
        return self.method.lr if self.method.lr is not None else self.scenario.training.lr

    @property
    def batch_size(self) -> int:
        size = self.method.batch_size
        return size if size is not None else self.scenario.training.batch_size

    @property
    def local_steps(self) -> int:
        steps = self.method.local_steps
        return steps if steps is not None else self.scenario.training.local_steps

    @property
    def local_epochs(self) -> int:
        return self.method.local_epochs if self.method.local_epochs is not None else 1

    @property
    def fraction(self) -> float:
        return self.method.fraction if self.method.fraction is not None else 1.0

    @property
    def update_rule(self) -> str:
        """The consensus update of a gossip method: cdsgd, polyak or nesterov."""
        if self.algorithm == "cdmsgd":
            return self.method.variant or "nesterov"
        return "cdsgd"

    @property
    def momentum(self) -> float:
        """μ of CDMSGD (0.9 unless set), 0 for the other methods."""
        if self.algorithm != "cdmsgd":
            return 0.0
        return self.method.momentum if self.method.momentum is not None else 0.9

    def lr_at(self, server_round: int) -> float:
        """α_k for round k = server_round − 1: α_0, or α_0 / (k + 1)^ε when diminishing."""
        training = self.scenario.training
        if training.lr_schedule == "diminishing":
            return self.lr / server_round ** training.epsilon
        return self.lr

    @property
    def weight_decay(self) -> float:
        return self.scenario.training.weight_decay

    def evaluates(self, server_round: int) -> bool:
        """Whether test accuracy is measured after `server_round` (always after the last)."""
        every = self.scenario.training.eval_every
        return server_round % every == 0 or server_round == self.rounds
