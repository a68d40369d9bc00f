"""The effective settings of one method of a scenario, as every layer sees them.

Both engines, the ClientApp, the observer and the plain-PyTorch reference
derive the agents, the graph, the step sizes, the failures and the starting
point x_0 from a `MethodPlan`, so they cannot disagree about what a method runs.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel
from torch import nn

from decentral_bench.experiment.adversaries import Adversaries, resolve
from decentral_bench.experiment.data import (
    Dataset,
    load_dataset,
    partition_indices,
    steps_per_epoch,
)
from decentral_bench.experiment.models import build_model
from decentral_bench.network.asynchrony import AsyncSchedule, build_schedule
from decentral_bench.network.clock import NetworkClock
from decentral_bench.network.failures import FailureSchedule
from decentral_bench.network.schedules import GraphSchedule
from decentral_bench.network.topology import Topology, build_topology, single_agent
from decentral_bench.network.traffic import parameter_bytes
from decentral_bench.scenario import FailuresConfig, MethodConfig, Scenario
from decentral_bench.scenario.sections import DEFAULT_ROUNDS
from strategies.choco import tune_consensus_step_size
from strategies.compression import AgentCompressor, Compressor
from strategies.consensus_control import ConsensusControl
from strategies.gossip import Agents, GossipRule, bound, gradient_steps
from strategies.registry import Method, compressor, method
from strategies.robust import Aggregation

DEFAULT_GAMMA = 0.1  # the step schedule's factor per milestone


@lru_cache(maxsize=64)
def searched_step_size(matrix: bytes, agents: int, compressor: Compressor,
                       shapes: tuple[tuple[int, ...], ...]) -> float:
    """CHOCO's γ on a graph (Π as float64 bytes, `agents` × `agents`), compressor and
    model: `tune_consensus_step_size` from points of a fixed seed, so the seeds and
    methods of a run that share all three search once."""
    mixing_matrix = np.frombuffer(matrix, dtype=np.float64).reshape(agents, agents).copy()
    gamma, _ = tune_consensus_step_size(mixing_matrix, shapes, AgentCompressor(compressor))
    return gamma


@dataclass(frozen=True)
class MethodPlan:
    """One method of a scenario with the scenario's and the registry's defaults filled in."""

    scenario: Scenario
    method: MethodConfig

    @classmethod
    def of(cls, scenario: Scenario, method_name: str) -> MethodPlan:
        """Method `method_name` of `scenario`, on its own graph where it has one."""
        own = scenario.for_method(method_name)
        return cls(scenario=own, method=own.method(method_name))

    @property
    def definition(self) -> Method:
        """The registry entry of the method's algorithm."""
        return method(self.method.algorithm)

    @property
    def algorithm(self) -> str:
        return self.method.algorithm

    @property
    def is_gossip(self) -> bool:
        """Routed by the gossip router (the gossip methods, centralized SGD) rather than run
        by a server strategy."""
        return self.definition.is_gossip

    @property
    def agents(self) -> int:
        """Number of agents (Flower nodes): one for a single-agent method (centralized
        SGD), the graph's size otherwise."""
        return 1 if self.definition.single_agent else self.scenario.topology.agents

    @cached_property
    def topology(self) -> Topology:
        if self.definition.single_agent:
            return single_agent()
        return build_topology(self.scenario.topology, self.seed)

    def option(self, key: str) -> Any:
        """A method-only key (momentum, variant, fraction, ...): its value, else the
        registry's default."""
        value = getattr(self.method, key)
        return value if value is not None else self.definition.options[key]

    @property
    def options(self) -> dict[str, Any]:
        """Every method-only key of the algorithm, resolved."""
        return {key: self.option(key) for key in self.definition.options}

    @property
    def has_graph(self) -> bool:
        """Whether the method's agents talk over the scenario's graph (the gossip methods
        but centralized SGD's single agent): only then do Π, λ2 and link failures apply."""
        return self.is_gossip and not self.definition.single_agent

    @property
    def _plain_options(self) -> dict[str, Any]:
        return {key: value.model_dump() if isinstance(value, BaseModel) else value
                for key, value in self.options.items()}

    @property
    def rule_options(self) -> dict[str, Any]:
        """The options as the registry's rules take them: sections as mappings, a searched
        setting (CHOCO's γ under `auto`) as what the search found."""
        options = self._plain_options
        if options.get("consensus_step_size") == "auto":
            options["consensus_step_size"] = self.consensus_step_size
        return options

    @cached_property
    def update_rule(self) -> GossipRule:
        """The gossip update rule (CDSGD, CDMSGD, CHOCO, gradient tracking, D², QG-DSGDm, SGP)."""
        return self.definition.update_rule(self.rule_options)

    def agents_rule(self, agents: Agents) -> GossipRule:
        """The update rule as `agents` run it: one agent (its index) or a stack of agents;
        a rule that compresses seeds its draws from (seed, agent, step)."""
        return bound(self.update_rule, self.seed, agents)

    @property
    def compressor(self) -> Compressor | None:
        """The method's message compressor, if it has one."""
        return compressor(self._plain_options)

    @cached_property
    def consensus_step_size(self) -> float | None:
        """CHOCO's γ: the method's, or under `auto` the one the authors' search picks on this
        method's graph, compressor and model (`searched_step_size`). None for a method
        without one."""
        if "consensus_step_size" not in self.definition.options:
            return None
        value = self.option("consensus_step_size")
        if value != "auto":
            return float(value)
        found = self.compressor
        if found is None:  # the scenario's rules require a compressor: not reached
            raise ValueError(f"'{self.method.name}' has no compressor to search γ for")
        matrix = self.topology.mixing_matrix
        shapes = tuple(tuple(array.shape) for array in self.initial_parameters)
        return searched_step_size(np.asarray(matrix, dtype=np.float64).tobytes(), len(matrix),
                                  found, shapes)

    def settled(self) -> MethodPlan:
        """This plan with what a search found written in (CHOCO's γ under `auto`): what the
        Flower engine sends its agents, so that none repeats the search."""
        if self.options.get("consensus_step_size") != "auto":
            return self
        settled = self.method.model_copy(
            update={"consensus_step_size": self.consensus_step_size})
        methods = tuple(settled if entry.name == settled.name else entry
                        for entry in self.scenario.methods)
        return MethodPlan(self.scenario.model_copy(update={"methods": methods}), settled)

    @cached_property
    def rounds(self) -> int:
        """The method's own rounds or epochs, else the scenario's (rounds by default).
        E epochs are the rounds that make E passes over an average agent's data: E ×
        steps per epoch / local_steps for a gossip method, E / local_epochs for FedAvg."""
        method, training = self.method, self.scenario.training
        if method.rounds is not None:
            return method.rounds
        epochs = method.epochs if method.epochs is not None else training.epochs
        if epochs is None:
            return training.rounds or DEFAULT_ROUNDS
        return max(1, math.ceil(epochs / self.epochs_per_round - 1e-9))

    @property
    def epochs(self) -> float:
        """Passes over its data an average agent makes in the method's rounds."""
        return self.rounds * self.epochs_per_round

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
        return int(self.option("local_epochs"))

    @property
    def fraction(self) -> float:
        return float(self.option("fraction"))

    def sampled_agents(self, server_round: int, alive: Collection[int]) -> list[int]:
        """The agents a server round trains: ⌊fraction × n⌋ of the n alive ones (at least
        one, as Flower's FedAvg counts them), drawn without replacement from
        (seed, 6, round). Both engines train these: the Flower engine shows the stock
        strategy only them."""
        members = sorted(alive)
        count = max(int(len(members) * self.fraction), 1)
        if count >= len(members):
            return members
        draw = np.random.default_rng([self.seed, 6, server_round])
        return sorted(int(agent) for agent in draw.choice(members, count, replace=False))

    @cached_property
    def milestone_rounds(self) -> tuple[int, ...]:
        """The last round of each step-size phase but the last: a fraction f of the rounds
        R ends its phase at round ⌊f R + 1/2⌋, a whole number r at round r."""
        return tuple(math.floor(m * self.rounds + 0.5) if m < 1 else int(m)
                     for m in self.scenario.training.milestones or ())

    def phase(self, server_round: int) -> int:
        """The step-size phase (1, 2, ...) of `server_round`: one more than the milestones
        it has passed."""
        return 1 + sum(server_round > last for last in self.milestone_rounds)

    def lr_at(self, server_round: int) -> float:
        """α_k for round k = server_round − 1: α_0; α_0 / (k + 1)^ε when diminishing;
        α_0 γ^(p − 1) in step-size phase p under the step schedule."""
        training = self.scenario.training
        if training.lr_schedule == "diminishing" and training.epsilon is not None:
            return self.lr / server_round ** training.epsilon
        if training.lr_schedule == "step":
            gamma = training.gamma if training.gamma is not None else DEFAULT_GAMMA
            return self.lr * gamma ** (self.phase(server_round) - 1)
        return self.lr

    @cached_property
    def consensus_control(self) -> ConsensusControl | None:
        """The method's consensus control, if any (gossip methods only)."""
        config = self.method.consensus_control
        if config is None:
            return None
        given = {key: value for key, value in config.model_dump().items() if value is not None}
        if "phases" in given:
            given["phases"] = frozenset(given["phases"])
        return ConsensusControl(**given)  # its own defaults for what the file leaves out

    @cached_property
    def aggregation(self) -> Aggregation:
        """How a gossip method's agents aggregate their neighbourhood (mean unless the
        method says otherwise)."""
        config = self.method.aggregation
        if config is None:
            return Aggregation()
        return Aggregation(kind=config.kind, b=config.b if config.b is not None else 1,
                           tau=config.tau)

    @property
    def dtype(self) -> torch.dtype:
        """The floating-point type of the run's models, data and points (resources.dtype)."""
        return torch.float64 if self.scenario.resources.dtype == "float64" else torch.float32

    @property
    def weight_decay(self) -> float:
        return self.scenario.training.weight_decay

    def evaluates(self, server_round: int) -> bool:
        """Whether test accuracy is measured after `server_round`: every `eval_every` rounds,
        or each time another `eval_every_epochs` epochs are complete; always after the last."""
        training = self.scenario.training
        if server_round == self.rounds:
            return True
        if training.eval_every_epochs is None:
            return server_round % training.eval_every == 0
        per_epoch = self.epochs_per_round / training.eval_every_epochs
        return math.floor(server_round * per_epoch + 1e-9) > \
            math.floor((server_round - 1) * per_epoch + 1e-9)

    # ------------------------------------------------------------ data, model, x_0

    @property
    def dataset(self) -> Dataset:
        return load_dataset(self.scenario.dataset, self.seed)

    @property
    def partitions(self) -> tuple[np.ndarray, ...]:
        """Each agent's indices into the training split."""
        return partition_indices(self.scenario.dataset, self.seed, self.agents)

    def build_model(self) -> nn.Module:
        """The scenario's network, initialised from the seed: its parameters are x_0, drawn
        in float32 and then held in the run's dtype (float64 runs start where float32 ones
        do)."""
        dataset = self.dataset
        return build_model(self.scenario.model, dataset.input_shape, dataset.num_classes,
                           self.seed).to(self.dtype)

    @cached_property
    def initial_parameters(self) -> list[np.ndarray]:
        """x_0, the same for every agent (and FedAvg's first global model)."""
        return [p.detach().cpu().numpy() for p in self.build_model().parameters()]

    @cached_property
    def epochs_per_round(self) -> float:
        """Passes over its own data an average agent makes per round."""
        if not self.is_gossip:
            return float(self.local_epochs)
        mean_size = sum(len(part) for part in self.partitions) / self.agents
        return self.local_steps * min(self.batch_size, mean_size) / mean_size

    # ------------------------------------------------------------ adversaries

    @cached_property
    def adversaries(self) -> Adversaries | None:
        """The run's attackers and their attack (None: every agent is honest, as the one
        worker of a single-agent method always is)."""
        if self.definition.single_agent:
            return None
        return resolve(self.scenario.adversaries, self.agents, self.seed)

    @property
    def attackers(self) -> frozenset[int]:
        return frozenset() if self.adversaries is None else self.adversaries.attackers

    def poisoned_from(self, agent: int, samples: int) -> int | None:
        """The first minibatch step whose labels agent `agent` (holding `samples` samples)
        flips, or None when it trains on true labels: the first step of the attack's first
        round."""
        adversaries = self.adversaries
        if adversaries is None or not adversaries.flips_labels_of(agent):
            return None
        first = adversaries.from_round
        if self.is_gossip:
            return gradient_steps(self.update_rule, first, self.local_steps).start
        return (first - 1) * self.local_epochs * steps_per_epoch(samples, self.batch_size)

    # ------------------------------------------------------------ failures

    @cached_property
    def failure_schedule(self) -> FailureSchedule:
        """The scenario's failures and time-varying graph on the graph this method runs on
        (none for a single-agent method, whose one worker stands for the whole data set)."""
        if self.definition.single_agent:
            return FailureSchedule(FailuresConfig(), self.scenario.topology, self.topology,
                                   self.seed)
        topology = self.scenario.topology
        schedule = None if topology.schedule is None or not self.has_graph else \
            GraphSchedule(topology, self.topology, self.seed)
        return FailureSchedule(self.scenario.failures, topology, self.topology, self.seed,
                               schedule)

    # ------------------------------------------------------------ asynchrony

    @property
    def is_asynchronous(self) -> bool:
        """Whether the agents step on their own clocks (AD-PSGD), in virtual rounds."""
        return self.definition.asynchronous

    @cached_property
    def async_schedule(self) -> AsyncSchedule:
        """An asynchronous method's events on the scenario's network clock
        (`decentral_bench.network.asynchrony`): the same for both engines and the timer."""
        network = self.scenario.network
        if network is None:  # the scenario's rules require one: not reached
            raise ValueError(f"'{self.method.name}' runs on the simulated clock: the scenario "
                             "needs a network section")
        matrix = self.topology.mixing_matrix
        neighbours = [[int(l) for l in np.flatnonzero(matrix[j]) if l != j]
                      for j in range(self.agents)]
        clock = NetworkClock(network, self.seed, self.agents, self.batch_size,
                             self.failure_schedule.edges)
        return build_schedule(clock, neighbours, self.rounds,
                              parameter_bytes(self.initial_parameters), self.seed)
