"""The same computation as a Flower run, as one plain PyTorch loop in matrix form.

With X_k the N agents' parameters stacked row-wise, P_k the published points
(P_k = X_k, or X_k + μ (X_k − X_{k−1}) for Nesterov) and G the minibatch
gradients taken at P_k:

    CDSGD     X_{k+1} = Π X_k − α_k G(X_k)                       (eq. 6)
    Polyak    X_{k+1} = Π X_k − α_k G(X_k) + μ (X_k − X_{k−1})
    Nesterov  X_{k+1} = Π P_k − α_k G(P_k)
    local velocity (the authors' code), V_0 = 0:
              V_{k+1} = μ V_k − α_k G(X_k);  Polyak X_{k+1} = Π X_k + V_{k+1},
              Nesterov X_{k+1} = Π X_k + μ V_{k+1} − α_k G(X_k)

and push-sum (SGP, Assran et al. 2019) with a column-stochastic P_k, weights w and
de-biased points Z = X / w, from W_0 = 1 and X_{½} = X_0 − α_1 G(X_0) on minibatch 0:

    SGP       X_k = P_k X_{k−½},  w_k = P_k w_{k−1},  Z_k = X_k / w_k,
              X_{k+½} = X_k − α_k G(Z_k)    (minibatch k)
              with local momentum: V_k = μ V_{k−1} + G(Z_k) (V = G first) and
              X_{k+½} = X_k − α_k (G(Z_k) + μ V_k) (Nesterov) or X_k − α_k V_k

Naive compressed gossip publishes Q(P_k) row by row (drawn as the agents draw it) and
mixes Π Q(P_k) + diag(Π) (P_k − Q(P_k)) in place of Π P_k. CHOCO-SGD (Koloskova et al.
2019, Algorithm 2), with X̂_0 = X_0 and Π's row sums one:

    X_{k+½} = X_k − α_k D_k        (D = G(X_k), or PyTorch SGD's momentum buffer form)
    X_{k+1} = X_{k+½} + γ (Π − I) X̂_k
    X̂_{k+1} = X̂_k + Q(X_{k+1} − X̂_k)

with Π X̂ computed afresh each round (the rule keeps s_i = Σ_j π_ij x̂_j as a running sum).

All run with the same x_0, minibatches and step sizes as the Flower simulation (the
adapt-then-combine methods, gradient tracking, D² and QG-DSGDm, in `reference_ahead`). Under
failures Π becomes the round's Π_k, and the rows of the agents that are down in
round k keep X_k (and X_{k−1}) unchanged. Consensus control then applies Π_k to
the published points P as many times as it decides (or replaces the alive rows by
their mean), moving X_k and X_{k−1} by P's displacement. It checks both engines (all must end
with the same parameters) and is the baseline the benchmark measures the
framework's overhead against.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

import numpy as np
import torch

from decentral_bench.engines.reference_ahead import reference_ahead, stacked_gradients
from decentral_bench.experiment.agent import AgentSetup
from decentral_bench.experiment.metrics import consensus_distance
from decentral_bench.experiment.plan import MethodPlan
from decentral_bench.experiment.training import from_numpy, to_numpy
from strategies.compression import AgentCompressor
from strategies.consensus_control import control_round
from strategies.gossip import keep_rows

Stacked = list[torch.Tensor]


def _mix(weights: torch.Tensor, stack: Stacked) -> Stacked:
    return [torch.tensordot(weights, p, dims=1) for p in stack]


class _Stack:
    """Every agent's iterate X_k and memory (X_{k−1}, or the local forms' velocity V_k),
    and under naive compression the published Q(P_k)."""

    def __init__(self, rule: str, momentum: float, start: list[torch.Tensor], agents: int,
                 compression: AgentCompressor | None = None) -> None:
        self.rule, self.momentum, self.compression = rule, momentum, compression
        self.local = rule.endswith("-local")
        self.current = [torch.stack([tensor] * agents) for tensor in start]
        self.memory = [torch.zeros_like(x) for x in self.current] if self.local \
            else self.current  # V_0 = 0; x_{−1} = x_0
        self.compressed = self._compress(0)

    def _compress(self, draw: int) -> Stacked:
        """Q(P_k), as the agents draw it after their `draw`-th step (none: P_k)."""
        if self.compression is None:
            return self.points()
        return self.compression.compress(self.points(), draw)[0]

    def points(self) -> Stacked:
        """P_k: X_k, or Nesterov's X_k + μ (X_k − X_{k−1})."""
        if self.rule == "nesterov":
            return [x + self.momentum * (x - x_prev)
                    for x, x_prev in zip(self.current, self.memory, strict=True)]
        return self.current

    def model(self) -> Stacked:
        return self.points()

    def _mixed(self, weights: torch.Tensor) -> Stacked:
        """Π P_k, or under compression Π Q(P_k) + diag(Π) (P_k − Q(P_k))."""
        if self.compression is None:
            return _mix(weights, self.points())
        own = torch.diagonal(weights)
        return [m + own.view(-1, *[1] * (p.dim() - 1)) * (p - q)
                for m, p, q in zip(_mix(weights, self.compressed), self.points(),
                                   self.compressed, strict=True)]

    def step(self, lr: float, weights: torch.Tensor, gradients: Stacked, step: int) -> None:
        """One step with mixing matrix `weights` and the gradients G(P_k) of minibatch
        `step`."""
        momentum, mixed = self.momentum, self._mixed(weights)
        if self.local:
            velocity = [momentum * v - lr * g for v, g in zip(self.memory, gradients, strict=True)]
            taken = velocity if self.rule == "polyak-local" else \
                [momentum * v - lr * g for v, g in zip(velocity, gradients, strict=True)]
            self.current = [m + s for m, s in zip(mixed, taken, strict=True)]
            self.memory = velocity
        else:
            updated = [m - lr * g for m, g in zip(mixed, gradients, strict=True)]
            if self.rule == "polyak":
                updated = [u + momentum * (x - x_prev) for u, x, x_prev in
                           zip(updated, self.current, self.memory, strict=True)]
            self.current, self.memory = updated, self.current
        self.compressed = self._compress(step + 1)

    def snapshot(self) -> list[Stacked]:
        return [self.current, self.memory, self.compressed]

    def keep(self, down: torch.Tensor, saved: list[Stacked]) -> None:
        """The rows of the agents in `down` as they were in `saved` (`snapshot`)."""
        self.current, self.memory, self.compressed = (
            keep_rows(down, now, then) for now, then in zip(self.snapshot(), saved, strict=True))

    def exchange(self, mixing: torch.Tensor, rows: list[int], exact: bool) -> float:
        """Consensus control's exchange: P ← Π_k P (exact: the alive rows ← their mean),
        X_k and X_{k−1} moved by P's displacement (a velocity is not). Returns Ξ² after."""
        published = self.points()
        if exact:
            mixed = [p.clone() for p in published]
            for m, p in zip(mixed, published, strict=True):
                m[rows] = p[rows].mean(dim=0, keepdim=True)
        else:
            mixed = [torch.tensordot(mixing, p, dims=1) for p in published]
        delta = [m - p for m, p in zip(mixed, published, strict=True)]
        self.current = [x + d for x, d in zip(self.current, delta, strict=True)]
        if not self.local:
            self.memory = [x + d for x, d in zip(self.memory, delta, strict=True)]
        return consensus_distance([p[rows] for p in self.points()])


def _round_matrix(plan: MethodPlan, server_round: int, device: torch.device) -> torch.Tensor:
    """Π_k (or P_k) of the round: the round network's when it changes, else the static."""
    schedule = plan.failure_schedule
    matrix = schedule.network(server_round).mixing_matrix if schedule.changes_network \
        else plan.topology.mixing_matrix
    return torch.as_tensor(matrix, dtype=plan.dtype, device=device)


def reference_push_sum(plan: MethodPlan) -> dict[int, list[np.ndarray]]:
    """Every agent's de-biased point Z after `plan.rounds` rounds of SGP, in matrix form."""
    setups = [AgentSetup.build(plan, agent) for agent in range(plan.agents)]
    device = setups[0].device
    gradients = partial(stacked_gradients, setups, plan)
    z = [torch.stack([tensor] * plan.agents) for tensor in
         from_numpy(plan.initial_parameters, device)]
    weights = torch.ones(plan.agents, 1, dtype=plan.dtype, device=device)
    momentum = float(plan.option("momentum"))
    nesterov = plan.option("variant") == "nesterov"
    velocity: Stacked | None = None

    def direction(g: Stacked) -> Stacked:
        """D_k: G, or with local momentum V_k = μ V_{k−1} + G (V = G first) and
        Nesterov's G + μ V_k or the heavy ball's V_k."""
        nonlocal velocity
        if not momentum:
            return g
        velocity = g if velocity is None else [momentum * v + gi for v, gi in
                                               zip(velocity, g, strict=True)]
        return [gi + momentum * v for gi, v in zip(g, velocity, strict=True)] if nesterov \
            else velocity

    half = [x - plan.lr_at(1) * d for x, d in zip(z, direction(gradients(z, 0)), strict=True)]
    for server_round in range(1, plan.rounds + 1):
        matrix = _round_matrix(plan, server_round, device)
        weights = matrix @ weights
        x = [torch.tensordot(matrix, h, dims=1) for h in half]
        z = [xi / weights.view(-1, *[1] * (xi.dim() - 1)) for xi in x]
        half = [xi - plan.lr_at(server_round) * d
                for xi, d in zip(x, direction(gradients(z, server_round)), strict=True)]
    return {agent: to_numpy([layer[agent] for layer in z]) for agent in range(plan.agents)}


class _ChocoStack:
    """CHOCO-SGD's X_k, X̂_k and momentum buffer B_k (see the module docstring)."""

    def __init__(self, start: list[torch.Tensor], agents: int, step_size: float,
                 compression: AgentCompressor, momentum: float, nesterov: bool) -> None:
        self.step_size, self.compression = step_size, compression
        self.momentum, self.nesterov = momentum, nesterov
        self.current = [torch.stack([tensor] * agents) for tensor in start]
        self.public = self.current  # X̂_0 = X_0
        self.buffer = [torch.zeros_like(x) for x in self.current]

    def points(self) -> Stacked:
        return self.current

    def model(self) -> Stacked:
        return self.current

    def step(self, lr: float, weights: torch.Tensor, gradients: Stacked, step: int) -> None:
        if self.momentum:
            self.buffer = [self.momentum * b + g
                           for b, g in zip(self.buffer, gradients, strict=True)]
            gradients = [g + self.momentum * b for g, b in
                         zip(gradients, self.buffer, strict=True)] if self.nesterov \
                else self.buffer
        half = [x - lr * g for x, g in zip(self.current, gradients, strict=True)]
        self.current = [h + self.step_size * (m - x_hat) for h, m, x_hat in
                        zip(half, _mix(weights, self.public), self.public, strict=True)]
        difference = [x - x_hat for x, x_hat in zip(self.current, self.public, strict=True)]
        compressed, _ = self.compression.compress(difference, step + 1)
        self.public = [x_hat + q for x_hat, q in zip(self.public, compressed, strict=True)]

    def snapshot(self) -> list[Stacked]:
        return [self.current, self.public, self.buffer]

    def keep(self, down: torch.Tensor, saved: list[Stacked]) -> None:
        self.current, self.public, self.buffer = (
            keep_rows(down, now, then) for now, then in zip(self.snapshot(), saved, strict=True))


def _stack_of(plan: MethodPlan, start: list[torch.Tensor]) -> _Stack | _ChocoStack:
    """The matrix form of the plan's method, its compressor bound to every agent."""
    found = plan.compressor
    compression = None if found is None else \
        AgentCompressor(found).bind(plan.seed, tuple(range(plan.agents)))
    momentum = float(plan.options.get("momentum", 0.0))
    if plan.consensus_step_size is not None and compression is not None:
        return _ChocoStack(start, plan.agents, plan.consensus_step_size, compression, momentum,
                           plan.options["variant"] == "nesterov")
    return _Stack(plan.update_rule.name, momentum, start, plan.agents, compression)


def reference_gossip(plan: MethodPlan, on_round: Callable[[float], None] | None = None,
                     ) -> dict[int, list[np.ndarray]]:
    """Every agent's published point after `plan.rounds` rounds, in matrix form, from x_0.

    `on_round` receives each round's wall time in seconds.
    """
    if not plan.is_gossip:
        raise ValueError(f"the matrix-form reference covers gossip methods, not {plan.algorithm}")
    if plan.aggregation.kind != "mean" or plan.adversaries is not None:
        raise ValueError("the matrix-form reference covers plain mixing among honest agents, "
                         "not robust aggregation or attackers")
    if plan.update_rule.ahead:
        return reference_ahead(plan, on_round)
    setups = [AgentSetup.build(plan, agent) for agent in range(plan.agents)]
    device = setups[0].device
    stack = _stack_of(plan, from_numpy(plan.initial_parameters, device))
    schedule = plan.failure_schedule
    static = torch.as_tensor(plan.topology.mixing_matrix, dtype=plan.dtype, device=device)
    identity = torch.eye(plan.agents, dtype=plan.dtype, device=device)
    everyone = frozenset(range(plan.agents))
    for server_round in range(1, plan.rounds + 1):
        round_started = time.perf_counter()
        lr = plan.lr_at(server_round)
        first_step = (server_round - 1) * plan.local_steps
        mixing, alive = static, everyone
        if schedule.changes_network:
            network = schedule.network(server_round)
            mixing = torch.as_tensor(network.mixing_matrix, dtype=plan.dtype, device=device)
            alive = network.alive
        down = torch.tensor([agent not in alive for agent in range(plan.agents)], device=device)
        saved = stack.snapshot()
        for step in range(first_step, first_step + plan.local_steps):
            stack.step(lr, mixing if step == first_step else identity,
                       stacked_gradients(setups, plan, stack.points(), step), step)
        if bool(down.any()):  # agents that are down neither step nor publish
            stack.keep(down, saved)
        if plan.consensus_control is not None and isinstance(stack, _Stack):
            rows = sorted(alive)
            control_round(plan.consensus_control, plan.phase(server_round),
                          consensus_distance([p[rows] for p in stack.points()]),
                          partial(stack.exchange, mixing, rows))
        if on_round is not None:
            on_round(time.perf_counter() - round_started)
    final = stack.model()
    return {agent: to_numpy([layer[agent] for layer in final]) for agent in range(plan.agents)}

