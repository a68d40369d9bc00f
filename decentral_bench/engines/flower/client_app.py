"""The Flower ClientApp: one agent, training on its own partition.

A message's config record names the scenario (as JSON) and the method, so
the same ClientApp serves every method and every scenario. It decodes the
message, runs the method's round (`client_rounds`: the registry says which rule)
and encodes the reply: the agent's new message, its model where that is not its
message, and its metrics.

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
from decentral_bench.engines.flower.client_rounds import (
    gossip_client_round,
    gossip_only_exchange,
    local_client_round,
    start_round,
)
from decentral_bench.experiment.agent import AgentSetup
from decentral_bench.experiment.data_cache import cached_agent_data
from decentral_bench.experiment.plan import MethodPlan
from decentral_bench.experiment.training import (
    DETERMINISTIC_THREADS,
    from_numpy,
    to_numpy,
    use_deterministic_kernels,
)
from decentral_bench.scenario import Scenario
from strategies.protocol import (
    CONFIG_KEY,
    GOSSIP_ONLY_KEY,
    IDENTITY_KEY,
    METRICS_KEY,
    MODEL_KEY,
    PUBLISHED_KEY,
    ROUND_KEY,
    START_KEY,
    STEP_KEY,
    WEIGHT_KEY,
    int_value,
)

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


def _limit_threads(config: ConfigRecord, node_config: dict, deterministic: bool) -> None:
    """Torch threads: the node's own `threads`, else the message's thread budget; one for
    a deterministic run, whose kernels are then the deterministic ones."""
    if deterministic:
        threads = DETERMINISTIC_THREADS
    elif "threads" in node_config:
        threads = int(node_config["threads"])
    else:
        threads = int_value(config, "threads") if "threads" in config else 0
    if threads > 0 and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    if torch.are_deterministic_algorithms_enabled() != deterministic:
        use_deterministic_kernels(deterministic)


def setup_for(config: ConfigRecord, context: Context) -> AgentSetup:
    """This node's agent under the message's scenario and method, its torch threads set
    (node config `threads`, else the message's; one under training.deterministic) and its
    data kept in the node's `data-cache` folder, if it names one."""
    setup = agent_setup(str(config["scenario"]), str(config["method"]), partition_of(context),
                        str(context.node_config.get("data-cache", "")))
    _limit_threads(config, dict(context.node_config), setup.plan.scenario.training.deterministic)
    return setup


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
    """One round of the method named in the message's config (or, `START_KEY`, a gossip
    agent's start)."""
    started = time.perf_counter()
    config = message.content.config_records[CONFIG_KEY]
    setup = setup_for(config, context)
    metrics = MetricRecord({WEIGHT_KEY: len(setup.labels)})
    model = None
    if config.get(START_KEY, False):
        parameters, model, _ = start_round(setup, context)
    elif config.get(GOSSIP_ONLY_KEY, False):
        parameters = gossip_only_exchange(setup, message.content, context)
    else:
        server_round = int_value(config, ROUND_KEY)
        client_round = gossip_client_round if setup.plan.is_gossip else local_client_round
        parameters, model, figures = client_round(setup, message.content, context,
                                                  server_round)
        metrics.update(figures)
        # With consensus control the round ends after its exchanges, an asynchronous event
        # (STEP_KEY) ends no round: the router then asks for an evaluation of the point the
        # agent ends the round with (`measure`).
        if setup.plan.evaluates(server_round) and setup.plan.consensus_control is None \
                and STEP_KEY not in config:
            metrics.update(setup.evaluate(parameters if model is None else model))
    content = RecordDict({PUBLISHED_KEY: to_record(to_numpy(parameters))})
    if model is not None:
        content[MODEL_KEY] = to_record(to_numpy(model))
    metrics["client_time_s"] = time.perf_counter() - started
    content[METRICS_KEY] = metrics
    return Message(content, reply_to=message)
