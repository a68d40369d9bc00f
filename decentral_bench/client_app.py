"""The Flower ClientApp: one agent, training on its own partition.

A message's `config` record names the scenario (as JSON) and the method, so
the same ClientApp serves every method and every scenario:

- CDSGD, CDMSGD, centralized SGD: the message holds the points Nb(j) (and j
  itself) published last round and the weights π_jl. The agent mixes them and
  steps along the gradient taken at its own point; what the message cannot
  supply (x_{k−1}^j under Polyak, x_k^j under Nesterov) stays in its Flower
  context between rounds.
- FedAvg: the message holds the global model; the agent trains
  `local_epochs` epochs on its data and returns the result.

Every reply carries the agent's new parameters and its metrics.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache

import torch
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from torch import nn

from decentral_bench.arrays import from_record, to_record
from decentral_bench.data import (
    augment,
    evaluation_subset,
    load_dataset,
    minibatch_indices,
    partition_indices,
    steps_per_epoch,
)
from decentral_bench.models import build_model
from decentral_bench.plan import MethodPlan
from decentral_bench.scenario import Scenario
from decentral_bench.training import evaluate, from_numpy, gradient, select_device, to_numpy
from strategies.cdmsgd import consensus_step, published_point
from strategies.cdsgd import sgd_step
from strategies.gossip_router import (
    CONFIG_KEY,
    LOCAL_ONLY_KEY,
    METRICS_KEY,
    MIXING_KEY,
    PUBLISHED_KEY,
    neighbour_key,
)

CURRENT_KEY = "x"  # FedAvg: the agent's last model, for training once the server is lost
KEPT_KEY = "kept"  # gossip: what the next round's message cannot supply (_consensus_round)

app = ClientApp()


@dataclass(frozen=True)
class AgentSetup:
    """What an agent needs to train, built once per process and agent."""

    plan: MethodPlan
    agent: int
    model: nn.Module
    device: torch.device
    features: torch.Tensor
    labels: torch.Tensor
    train_evaluation: tuple[torch.Tensor, torch.Tensor]
    test_evaluation: tuple[torch.Tensor, torch.Tensor]

    def minibatch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The minibatch of this agent's `step`-th SGD step (augmented when asked)."""
        index = minibatch_indices(len(self.labels), self.plan.batch_size, self.plan.seed,
                                  self.agent, step)
        index_tensor = torch.as_tensor(index, device=self.device)
        features = self.features[index_tensor]
        if self.plan.scenario.dataset.augment:
            features = augment(features, self.plan.seed, self.agent, step)
        return features, self.labels[index_tensor]


@lru_cache(maxsize=8)
def _plan(scenario_json: str, method_name: str) -> MethodPlan:
    return MethodPlan.of(Scenario.model_validate_json(scenario_json), method_name)


@lru_cache(maxsize=8)
def _model(plan: MethodPlan, device: torch.device) -> nn.Module:
    dataset = load_dataset(plan.scenario.dataset, plan.seed)
    return build_model(plan.scenario.model, dataset.input_shape, dataset.num_classes,
                       plan.seed).to(device)


@lru_cache(maxsize=512)
def agent_setup(scenario_json: str, method_name: str, agent: int) -> AgentSetup:
    """The data, model and device of `agent` under a method of a scenario."""
    plan = _plan(scenario_json, method_name)
    device = select_device(plan.scenario.resources.device)
    dataset = load_dataset(plan.scenario.dataset, plan.seed)
    own = torch.as_tensor(partition_indices(plan.scenario.dataset, plan.seed, plan.agents)[agent])
    features, labels = dataset.train_x[own].to(device), dataset.train_y[own].to(device)
    limit = plan.scenario.training.eval_samples
    return AgentSetup(
        plan=plan,
        agent=agent,
        model=_model(plan, device),
        device=device,
        features=features,
        labels=labels,
        train_evaluation=evaluation_subset(features, labels, limit, plan.seed),
        test_evaluation=evaluation_subset(dataset.test_x.to(device), dataset.test_y.to(device),
                                          limit, plan.seed),
    )


def _limit_threads(config: ConfigRecord) -> None:
    threads = int(config.get("threads", 0))
    if threads > 0 and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def _state(context: Context, key: str, device: torch.device) -> list[torch.Tensor] | None:
    if key not in context.state:
        return None
    return from_numpy(from_record(context.state[key]), device)


def _consensus_round(setup: AgentSetup, content: RecordDict, context: Context,
                     server_round: int) -> tuple[list[torch.Tensor], float]:
    """One consensus step (CDSGD eq. 5 or its momentum forms), then `local_steps − 1`
    steps of the same rule without mixing. Returns the point to publish and the mean loss.

    The message holds the points p_k^l of Nb(j), j's own p_k^j among them (with
    weight π_jj, which may be 0). The Flower context travels through the
    simulation engine both ways on every call, so it keeps only the one array
    list the message cannot supply: nothing under CDSGD (p_k^j = x_k^j),
    x_{k−1}^j under Polyak (p_k^j = x_k^j), x_k^j under Nesterov (p_k^j = y_k^j,
    and x_{k−1}^j is needed only to form y_k^j, which arrives).
    """
    plan = setup.plan
    rule, momentum, lr = plan.update_rule, plan.momentum, plan.lr_at(server_round)
    mixing = content[MIXING_KEY]
    neighbours = [int(agent) for agent in mixing["agents"]]
    weights = [float(weight) for weight in mixing["weights"]]
    points = [from_numpy(from_record(content[neighbour_key(l)]), setup.device)
              for l in neighbours]
    own_point = points[neighbours.index(setup.agent)]
    kept = _state(context, KEPT_KEY, setup.device)  # None in the first round
    if rule == "nesterov":
        current = own_point if kept is None else kept  # x_0 = y_0
        previous = current  # replaced by the first step before anything reads it
    else:
        current = own_point
        previous = current if kept is None else kept  # x_{−1} = x_0
    first_step = (server_round - 1) * plan.local_steps
    losses = []
    for step in range(first_step, first_step + plan.local_steps):
        if step > first_step:  # local steps after the consensus step: Π = I
            own_point = published_point(rule, current, previous, momentum)
            points, weights = [own_point], [1.0]
        grads, loss, _ = gradient(setup.model, own_point, *setup.minibatch(step),
                                  weight_decay=plan.weight_decay)
        current, previous = consensus_step(rule, points, weights, grads, lr, momentum,
                                           current, previous), current
        losses.append(loss)
    if rule == "nesterov":
        context.state[KEPT_KEY] = to_record(to_numpy(current))
    elif rule == "polyak":
        context.state[KEPT_KEY] = to_record(to_numpy(previous))
    return published_point(rule, current, previous, momentum), sum(losses) / len(losses)


def _local_training(setup: AgentSetup, content: RecordDict, context: Context,
                    server_round: int) -> tuple[list[torch.Tensor], float]:
    """FedAvg's client update: `local_epochs` epochs of SGD from the global model, or, once
    the server is lost (`local-only`), from the agent's own last model."""
    plan = setup.plan
    if content[CONFIG_KEY].get(LOCAL_ONLY_KEY, False):
        parameters = _state(context, CURRENT_KEY, setup.device) or initial_parameters(setup)
    else:
        parameters = from_numpy(from_record(content[PUBLISHED_KEY]), setup.device)
    steps = plan.local_epochs * steps_per_epoch(len(setup.labels), plan.batch_size)
    first_step = (server_round - 1) * steps
    losses = []
    lr = plan.lr_at(server_round)
    for step in range(first_step, first_step + steps):
        grads, loss, _ = gradient(setup.model, parameters, *setup.minibatch(step),
                                  weight_decay=plan.weight_decay)
        parameters = sgd_step(parameters, grads, lr)
        losses.append(loss)
    server = plan.scenario.failures.server
    if server is not None and server.mode == "local":  # kept only for when the server is lost
        context.state[CURRENT_KEY] = to_record(to_numpy(parameters))
    return parameters, sum(losses) / len(losses)


def initial_parameters(setup: AgentSetup) -> list[torch.Tensor]:
    """x_0 of the scenario's seed (what the server would have sent first)."""
    dataset = load_dataset(setup.plan.scenario.dataset, setup.plan.seed)
    model = build_model(setup.plan.scenario.model, dataset.input_shape, dataset.num_classes,
                        setup.plan.seed)
    return [p.detach().to(setup.device) for p in model.parameters()]


@app.query()
def identify(message: Message, context: Context) -> Message:
    """Tell the router which agent (partition) this node is."""
    partition = int(context.node_config["partition-id"])
    content = RecordDict({"identity": ConfigRecord({"partition-id": partition})})
    return Message(content, reply_to=message)


@app.train()
def train(message: Message, context: Context) -> Message:
    """One round of the method named in the message's config."""
    started = time.perf_counter()
    config = message.content[CONFIG_KEY]
    _limit_threads(config)
    agent = int(context.node_config["partition-id"])
    setup = agent_setup(str(config["scenario"]), str(config["method"]), agent)
    server_round = int(config["server-round"])
    if setup.plan.is_gossip:
        parameters, minibatch_loss = _consensus_round(setup, message.content, context,
                                                      server_round)
    else:
        parameters, minibatch_loss = _local_training(setup, message.content, context,
                                                     server_round)
    metrics = MetricRecord({
        "num-examples": len(setup.labels),
        "minibatch_loss": minibatch_loss,
    })
    if setup.plan.evaluates(server_round):
        train_loss, train_accuracy = evaluate(setup.model, parameters, *setup.train_evaluation)
        test_loss, test_accuracy = evaluate(setup.model, parameters, *setup.test_evaluation)
        metrics["train_loss"] = train_loss
        metrics["train_accuracy"] = train_accuracy
        metrics["test_loss"] = test_loss
        metrics["test_accuracy"] = test_accuracy
    published = to_record(to_numpy(parameters))
    metrics["client_time_s"] = time.perf_counter() - started
    return Message(RecordDict({PUBLISHED_KEY: published, METRICS_KEY: metrics}),
                   reply_to=message)
