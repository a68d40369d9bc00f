"""The Flower ClientApp: one agent, training on its own partition.

A message's config record names the scenario (as JSON) and the method, so
the same ClientApp serves every method and every scenario. It decodes the
message, runs the method's round from `strategies` (the registry says which)
and encodes the reply:

- gossip methods (CDSGD, CDMSGD, centralized SGD): the message holds the points
  Nb(j) (j itself among them) published last round and the weights π_jl; the
  agent mixes them and steps along the gradient at its own point
  (`strategies.gossip.gossip_round`). What the message cannot supply (x_{k−1}^j
  under Polyak, x_k^j under Nesterov) stays in its Flower context between rounds;
  the context crosses the engine on every call, so it keeps nothing else.
- FedAvg: the message holds the global model; the agent trains `local_epochs`
  epochs on its data (`strategies.local_sgd`) and returns the result.

Every reply carries the agent's new point and its metrics.

Node config keys it reads: `partition-id` (the agent index; Flower's simulation
sets it), `threads` (torch threads; overrides the thread budget the ServerApp
sends) and `data-cache` (a folder: keep the agent's share of the data there,
see `decentral_bench.experiment.data_cache`; deployments set it, since Flower may start a
fresh ClientApp process for every message).
"""

from __future__ import annotations

import time
from functools import lru_cache
from pathlib import Path

import torch
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from decentral_bench.engines.flower.arrays import from_record, to_record
from decentral_bench.experiment.agent import AgentSetup
from decentral_bench.experiment.data import steps_per_epoch
from decentral_bench.experiment.data_cache import cached_agent_data
from decentral_bench.experiment.plan import MethodPlan
from decentral_bench.experiment.training import from_numpy, to_numpy
from decentral_bench.scenario import Scenario
from strategies.cdsgd import mix
from strategies.gossip import gossip_round
from strategies.local_sgd import local_sgd
from strategies.protocol import (
    CONFIG_KEY,
    GOSSIP_ONLY_KEY,
    IDENTITY_KEY,
    LOCAL_ONLY_KEY,
    METRICS_KEY,
    MIXING_KEY,
    PUBLISHED_KEY,
    ROUND_KEY,
    WEIGHT_KEY,
    int_value,
    neighbour_key,
    number_list,
)

CURRENT_KEY = "x"  # FedAvg: the agent's last model, for training once the server is lost
KEPT_KEY = "kept"  # gossip: what the next round's message cannot supply (the rule's `kept`)

app = ClientApp()


@lru_cache(maxsize=8)
def plan_of(scenario_json: str, method_name: str) -> MethodPlan:
    """The plan a message names (parsed once per process)."""
    return MethodPlan.of(Scenario.model_validate_json(scenario_json), method_name)


@lru_cache(maxsize=512)
def agent_setup(scenario_json: str, method_name: str, agent: int,
                cache_folder: str = "") -> AgentSetup:
    """Agent `agent` under a method of a scenario, built once per process; its share of
    the data is kept in `cache_folder` when one is given."""
    plan = plan_of(scenario_json, method_name)
    data = cached_agent_data(plan, agent, Path(cache_folder)) if cache_folder else None
    return AgentSetup.build(plan, agent, data)


def _limit_threads(config: ConfigRecord, node_config: dict) -> None:
    """Torch threads: the node's own `threads`, else the message's thread budget."""
    if "threads" in node_config:
        threads = int(node_config["threads"])
    else:
        threads = int_value(config, "threads") if "threads" in config else 0
    if threads > 0 and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def setup_for(config: ConfigRecord, context: Context) -> AgentSetup:
    """This node's agent under the message's scenario and method, its torch threads set
    (node config `threads`, else the message's) and its data kept in the node's
    `data-cache` folder, if it names one."""
    _limit_threads(config, dict(context.node_config))
    return agent_setup(str(config["scenario"]), str(config["method"]), partition_of(context),
                       str(context.node_config.get("data-cache", "")))


def partition_of(context: Context) -> int:
    """The agent index of this node: its `partition-id` node config entry."""
    if "partition-id" not in context.node_config:
        raise ValueError("this node has no partition-id in its node config; start it with "
                         "--node-config \"partition-id=J num-partitions=N\"")
    value = context.node_config["partition-id"]
    if isinstance(value, bool) or not isinstance(value, int | str) or \
            not str(value).isdigit():
        raise ValueError(f"this node's partition-id {value!r} is not an agent index "
                         "(0, 1, ...)")
    return int(value)


def _state(context: Context, key: str, device: torch.device) -> list[torch.Tensor] | None:
    if key not in context.state.array_records:
        return None
    return from_numpy(from_record(context.state.array_records[key]), device)


def _neighbourhood(setup: AgentSetup, content: RecordDict,
                   ) -> tuple[list[list[torch.Tensor]], list[float], list[torch.Tensor]]:
    """The points of Nb(j) in the message, their weights π_jl, and j's own point."""
    mixing = content.config_records[MIXING_KEY]
    neighbours = [int(agent) for agent in number_list(mixing, "agents")]
    points = [from_numpy(from_record(content.array_records[neighbour_key(l)]), setup.device)
              for l in neighbours]
    return points, number_list(mixing, "weights"), points[neighbours.index(setup.agent)]


def _keep(context: Context, kept: list[torch.Tensor] | None) -> None:
    if kept is not None:
        context.state[KEPT_KEY] = to_record(to_numpy(kept))


def gossip_client_round(setup: AgentSetup, content: RecordDict, context: Context,
                        server_round: int) -> tuple[list[torch.Tensor], dict[str, float]]:
    """One round of a gossip method. Returns the point to publish and the round's figures
    (mean minibatch loss, mean squared gradient norm)."""
    plan, rule = setup.plan, setup.plan.update_rule
    points, weights, own_point = _neighbourhood(setup, content)
    state = rule.restore(own_point, _state(context, KEPT_KEY, setup.device))
    norms: list[float] = []

    def gradient_at(point: list[torch.Tensor], step: int) -> tuple[list[torch.Tensor], float]:
        gradient, loss = setup.gradient_at(point, step)
        norms.append(sum(float(torch.sum(g * g)) for g in gradient))
        return gradient, loss

    state, losses = gossip_round(rule, state, own_point, mix(points, weights), gradient_at,
                                 plan.lr_at(server_round), (server_round - 1) * plan.local_steps,
                                 plan.local_steps)
    _keep(context, rule.kept(state))
    return rule.published_point(state), {"minibatch_loss": float(sum(losses)) / len(losses),
                                         "grad_norm_sq": sum(norms) / len(norms)}


def gossip_only_exchange(setup: AgentSetup, content: RecordDict,
                         context: Context) -> list[torch.Tensor]:
    """Consensus control's exchange: the mixed point Σ π_jl p^l becomes j's published
    point, and what j keeps moves by the same displacement (`UpdateRule.translate`)."""
    rule = setup.plan.update_rule
    points, weights, own_point = _neighbourhood(setup, content)
    mixed = mix(points, weights)
    state = rule.restore(own_point, _state(context, KEPT_KEY, setup.device))
    _keep(context, rule.kept(rule.translate(
        state, [m - p for m, p in zip(mixed, own_point, strict=True)])))
    return mixed


def local_client_round(setup: AgentSetup, content: RecordDict, context: Context,
                       server_round: int) -> tuple[list[torch.Tensor], dict[str, float]]:
    """FedAvg's client update: `local_epochs` epochs of SGD from the global model, or, once
    the server is lost (`local-only`), from the agent's own last model."""
    plan = setup.plan
    if content.config_records[CONFIG_KEY].get(LOCAL_ONLY_KEY, False):
        start = _state(context, CURRENT_KEY, setup.device) or \
            from_numpy(plan.initial_parameters, setup.device)
    else:
        start = from_numpy(from_record(content.array_records[PUBLISHED_KEY]), setup.device)
    steps = plan.local_epochs * steps_per_epoch(len(setup.labels), plan.batch_size)
    parameters, losses = local_sgd(start, setup.gradient_at, plan.lr_at(server_round),
                                   (server_round - 1) * steps, steps)
    server = plan.scenario.failures.server
    if server is not None and server.mode == "local":  # kept only for when the server is lost
        context.state[CURRENT_KEY] = to_record(to_numpy(parameters))
    return parameters, {"minibatch_loss": float(sum(losses)) / len(losses)}


@app.query()
def identify(message: Message, context: Context) -> Message:
    """Tell the router which agent (partition) this node is."""
    content = RecordDict({IDENTITY_KEY: ConfigRecord({"partition-id": partition_of(context)})})
    return Message(content, reply_to=message)


@app.evaluate()
def measure(message: Message, context: Context) -> Message:
    """Loss and accuracy of the point the message brings back (the agent's latest)."""
    setup = setup_for(message.content.config_records[CONFIG_KEY], context)
    point = from_numpy(from_record(message.content.array_records[PUBLISHED_KEY]),
                       setup.device)
    metrics = MetricRecord()
    metrics.update(setup.evaluate(point))
    return Message(RecordDict({METRICS_KEY: metrics}), reply_to=message)


@app.train()
def train(message: Message, context: Context) -> Message:
    """One round of the method named in the message's config."""
    started = time.perf_counter()
    config = message.content.config_records[CONFIG_KEY]
    setup = setup_for(config, context)
    server_round = int_value(config, ROUND_KEY)
    metrics = MetricRecord({WEIGHT_KEY: len(setup.labels)})
    if config.get(GOSSIP_ONLY_KEY, False):
        parameters = gossip_only_exchange(setup, message.content, context)
    else:
        client_round = gossip_client_round if setup.plan.is_gossip else local_client_round
        parameters, figures = client_round(setup, message.content, context, server_round)
        metrics.update(figures)
        # With consensus control the round ends after its exchanges: the router then asks
        # for an evaluation of the point the agent ends it with (`measure`).
        if setup.plan.evaluates(server_round) and setup.plan.consensus_control is None:
            metrics.update(setup.evaluate(parameters))
    published = to_record(to_numpy(parameters))
    metrics["client_time_s"] = time.perf_counter() - started
    return Message(RecordDict({PUBLISHED_KEY: published, METRICS_KEY: metrics}),
                   reply_to=message)
