"""What one agent does in a round, given the message the router or the strategy sent it.

- gossip methods: the message holds the messages of Nb(j) (j's own among them) published
  last round and the weights π_jl; the agent aggregates them (the mixing sum, or the
  method's robust aggregation, `strategies.robust`) and takes its rule's step
  (`strategies.gossip.gossip_round`). A compressed message travels as its encoding (its
  compressor's wire arrays, `strategies.gossip.wire_message`) and is decoded here. What
  the message cannot supply (`GossipRule.kept`) stays in its Flower context between
  rounds; the context crosses the engine on every call, so it keeps nothing else. A rule
  whose agents start on their own computes its start state when asked (`START_KEY`),
  before round 1. An asynchronous event (AD-PSGD) takes its gradient on the minibatch the
  message names (`STEP_KEY`). An attacker keeps its honest message in its context too, mixes it in
  place of what it published, and publishes what its attack makes of it and of its honest
  neighbours' messages (`strategies.attacks`).
- server methods: the message holds the global model; the agent trains `local_epochs`
  epochs on its data (`strategies.local_sgd`, with FedProx's proximal term when the
  strategy sends its μ) and returns the result (an attacker: its attack's).
"""

from __future__ import annotations

import torch
from flwr.app import Context, RecordDict

from decentral_bench.engines.flower.arrays import from_record, to_record
from decentral_bench.experiment.agent import AgentSetup
from decentral_bench.experiment.data import steps_per_epoch
from decentral_bench.experiment.training import from_numpy, to_numpy
from strategies.attacks import gossip_attack, server_attack, view_of_one
from strategies.cdsgd import mix
from strategies.gossip import (
    GossipRule,
    State,
    Translatable,
    gossip_round,
    gradient_steps,
    received_message,
    wire_message,
)
from strategies.local_sgd import local_sgd
from strategies.protocol import (
    CONFIG_KEY,
    LOCAL_ONLY_KEY,
    MIXING_KEY,
    PROXIMAL_MU_KEY,
    PUBLISHED_KEY,
    STEP_KEY,
    int_value,
    neighbour_key,
    number_list,
)
from strategies.robust import Neighbourhoods, aggregate

CURRENT_KEY = "x"  # FedAvg: the agent's last model, for training once the server is lost
KEPT_PREFIX = "kept."  # gossip: each part of what the rule keeps (`GossipRule.kept`)
HONEST_KEY = "honest"  # gossip: an attacker's honest message, which it does not publish

# A round's outcome: the message to publish (as the network carries it), the model (None:
# the message is the model) and the round's figures.
Outcome = tuple[list[torch.Tensor], list[torch.Tensor] | None, dict[str, float]]


def _arrays(context: Context, key: str, device: torch.device) -> list[torch.Tensor] | None:
    if key not in context.state.array_records:
        return None
    return from_numpy(from_record(context.state.array_records[key]), device)


def _kept(context: Context, device: torch.device) -> State:
    """What the agent kept last round, part by part."""
    return {key[len(KEPT_PREFIX):]: from_numpy(from_record(record), device)
            for key, record in context.state.array_records.items()
            if key.startswith(KEPT_PREFIX)}


def _keep(context: Context, kept: State) -> None:
    for part, tensors in kept.items():
        context.state[KEPT_PREFIX + part] = to_record(to_numpy(tensors))


def _neighbourhood(setup: AgentSetup, rule: GossipRule, content: RecordDict,
                   ) -> tuple[list[int], list[list[torch.Tensor]], list[float], int]:
    """The members of Nb(j), their messages in the message (decoded), their weights π_jl,
    and j's place among them."""
    mixing = content.config_records[MIXING_KEY]
    neighbours = [int(agent) for agent in number_list(mixing, "agents")]
    shapes = [tuple(array.shape) for array in setup.plan.initial_parameters]
    points = [received_message(rule, from_numpy(
        from_record(content.array_records[neighbour_key(l)]), setup.device), shapes)
        for l in neighbours]
    return neighbours, points, number_list(mixing, "weights"), neighbours.index(setup.agent)


def _aggregate(setup: AgentSetup, members: list[list[torch.Tensor]], weights: list[float],
               own: int) -> list[torch.Tensor]:
    """The agent's aggregate of its neighbourhood: Σ π_jl m^l, or its robust aggregation."""
    aggregation = setup.plan.aggregation
    if aggregation.kind == "mean":
        return mix(members, weights)
    return [t[0] for t in aggregate(aggregation, Neighbourhoods.of_one(members, weights, own))]


def _attacked(setup: AgentSetup, message: list[torch.Tensor], neighbours: list[int],
              points: list[list[torch.Tensor]], weights: list[float],
              server_round: int) -> list[torch.Tensor]:
    """What the agent publishes: its honest message, or, an attacker once the attack is on,
    what the attack makes of it and of its honest neighbours' messages of this round."""
    adversaries = setup.plan.adversaries
    if adversaries is None or setup.agent not in adversaries.attackers \
            or not adversaries.active(server_round):
        return message
    view, attackers_weight = view_of_one(points, weights, neighbours.index(setup.agent),
                                         [l in adversaries.attackers for l in neighbours])
    own = [m.unsqueeze(0) for m in message]
    noise = adversaries.attack.noise(own, setup.plan.seed, [setup.agent], server_round)
    return [t[0] for t in gossip_attack(adversaries.attack, own, view, attackers_weight, noise)]


def _published(rule: GossipRule, state: State) -> Outcome:
    """The state's message as the network carries it, and its model where that is not the
    message."""
    model = rule.model(state)
    return wire_message(rule, state), None if model is rule.message(state) else model, {}


class _Recorder:
    """g_j at a point, with the squared norm of every gradient it hands out."""

    def __init__(self, setup: AgentSetup) -> None:
        self.setup = setup
        self.norms: list[float] = []

    def __call__(self, point: list[torch.Tensor], step: int,
                 ) -> tuple[list[torch.Tensor], float]:
        gradient, loss = self.setup.gradient_at(point, step)
        self.norms.append(sum(float(torch.sum(g * g)) for g in gradient))
        return gradient, loss


def start_round(setup: AgentSetup, context: Context) -> Outcome:
    """The agent's start state from x_0 and its first message (`START_KEY`)."""
    plan = setup.plan
    rule = plan.agents_rule(setup.agent)
    state = rule.start(from_numpy(plan.initial_parameters, setup.device), _Recorder(setup),
                       plan.lr_at(1))
    _keep(context, rule.kept(state))
    return _published(rule, state)


def gossip_client_round(setup: AgentSetup, content: RecordDict, context: Context,
                        server_round: int) -> Outcome:
    """One round of a gossip method. Returns the message to publish, the model where it is
    not the message, and the round's figures (mean minibatch loss, mean squared gradient
    norm)."""
    plan = setup.plan
    rule = plan.agents_rule(setup.agent)
    neighbours, points, weights, own = _neighbourhood(setup, rule, content)
    honest = _arrays(context, HONEST_KEY, setup.device) or points[own]
    state = rule.restore(honest, _kept(context, setup.device))
    members = [honest if i == own else p for i, p in enumerate(points)]
    gradient_at = _Recorder(setup)
    config = content.config_records[CONFIG_KEY]
    steps = gradient_steps(rule, server_round, plan.local_steps) if STEP_KEY not in config \
        else range(int_value(config, STEP_KEY), int_value(config, STEP_KEY) + 1)
    state, losses = gossip_round(rule, state, _aggregate(setup, members, weights, own),
                                 weights[own], gradient_at, plan.lr_at(server_round), steps)
    _keep(context, rule.kept(state))
    message = rule.message(state)
    published = _attacked(setup, message, neighbours, points, weights, server_round)
    model = rule.model(state)
    if published is message:  # as the network carries it (compressed gossip: encoded)
        published = wire_message(rule, state)
    else:  # an attacker
        context.state[HONEST_KEY] = to_record(to_numpy(message))
        if model is message:  # its point is its message: it reports what it publishes
            model = published
    return published, None if model is message or model is published else model, {
        "minibatch_loss": float(sum(losses)) / len(losses),
        "grad_norm_sq": sum(gradient_at.norms) / len(gradient_at.norms)}


def gossip_only_exchange(setup: AgentSetup, content: RecordDict,
                         context: Context) -> list[torch.Tensor]:
    """Consensus control's exchange: the mixed point Σ π_jl p^l becomes j's published
    point, and what j keeps moves by the same displacement (`translate`)."""
    rule = setup.plan.update_rule
    translatable: Translatable = rule  # type: ignore[assignment]
    _, points, weights, own = _neighbourhood(setup, rule, content)
    mixed = mix(points, weights)
    state = rule.restore(points[own], _kept(context, setup.device))
    _keep(context, rule.kept(translatable.translate(
        state, [m - p for m, p in zip(mixed, points[own], strict=True)])))
    return mixed


def local_client_round(setup: AgentSetup, content: RecordDict, context: Context,
                       server_round: int) -> Outcome:
    """A server method's client update: `local_epochs` epochs of SGD from the global model,
    with the proximal term μ/2 ||x − x_t||² when the strategy sends μ (Flower's FedProx,
    `proximal-mu`), or, once the server is lost (`local-only`), from the agent's own last
    model."""
    plan = setup.plan
    config = content.config_records[CONFIG_KEY]
    if config.get(LOCAL_ONLY_KEY, False):
        start = _arrays(context, CURRENT_KEY, setup.device) or \
            from_numpy(plan.initial_parameters, setup.device)
    else:
        start = from_numpy(from_record(content.array_records[PUBLISHED_KEY]), setup.device)
    steps = plan.local_epochs * steps_per_epoch(len(setup.labels), plan.batch_size)
    proximal_mu = config.get(PROXIMAL_MU_KEY, 0.0)
    if isinstance(proximal_mu, bool) or not isinstance(proximal_mu, int | float):
        raise TypeError(f"config entry '{PROXIMAL_MU_KEY}' should be a number, got "
                        f"{proximal_mu!r}")
    parameters, losses = local_sgd(start, setup.gradient_at, plan.lr_at(server_round),
                                   (server_round - 1) * steps, steps, float(proximal_mu))
    server = plan.scenario.failures.server
    if server is not None and server.mode == "local":  # kept only for when the server is lost
        context.state[CURRENT_KEY] = to_record(to_numpy(parameters))
    adversaries = plan.adversaries
    if adversaries is not None and setup.agent in adversaries.attackers \
            and adversaries.active(server_round) \
            and not content.config_records[CONFIG_KEY].get(LOCAL_ONLY_KEY, False):
        trained = [p.unsqueeze(0) for p in parameters]
        noise = adversaries.attack.noise(trained, plan.seed, [setup.agent], server_round)
        parameters = [t[0] for t in server_attack(
            adversaries.attack, [s.unsqueeze(0) for s in start], trained, noise)]
    return parameters, None, {"minibatch_loss": float(sum(losses)) / len(losses)}
