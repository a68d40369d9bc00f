"""The adapt-then-combine methods as plain PyTorch loops in matrix form (see `reference`).

With X_k the agents' iterates stacked row-wise, S_k the messages they publish, G(X) the
minibatch gradients (minibatch 0 at x_0, minibatch k in round k) and α_k round k's step
(α_0 = α_1):

    gradient tracking  S_k = [X_k − α_k U_k, Y_k];  X_{k+1} = Π S_k^x,
                       Y_{k+1} = Π S_k^y + G(X_{k+1}) − G(X_k),  Y_0 = G(X_0),
                       U_k = Y_k, or with momentum V_k = β V_{k−1} + Y_k and U_k = V_k
                       (Nesterov: Y_k + β V_k)
    D²                 S_0 = X_0 − α_0 G(X_0),
                       S_k = 2 X_k − X_{k−1} − α_k G(X_k) + α_{k−1} G(X_{k−1});  X_{k+1} = Π S_k
    QG-DSGDm           M_k = β M̂_{k−1} + G(X_k), U_k = M_k (Nesterov: G(X_k) + β M_k),
                       S_k = X_k − α_k U_k;  X_{k+1} = Π S_k,
                       M̂_k = μ M̂_{k−1} + (1 − μ)(X_k − X_{k+1}) / α_k
    D-SGD (ATC)        V_k = μ V_{k−1} + G(X_k), U_k = V_k (Nesterov: G(X_k) + μ V_k),
                       S_k = X_k − α_k U_k;  X_{k+1} = Π S_k

Under failures Π is the round's Π_k and the rows of the agents that are down keep every
part of their state.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch

from decentral_bench.experiment.agent import AgentSetup
from decentral_bench.experiment.plan import MethodPlan
from decentral_bench.experiment.training import from_numpy, gradient, to_numpy
from strategies.d2 import D2
from strategies.dsgd_atc import DSGDAdaptThenCombine
from strategies.gossip import keep_rows
from strategies.gradient_tracking import GradientTracking
from strategies.qg_dsgdm import QuasiGlobalMomentum

Stack = list[torch.Tensor]
Matrices = dict[str, Stack]
Gradients = Callable[[Stack, int], Stack]  # G(X) on minibatch `step`


def stacked_gradients(setups: list[AgentSetup], plan: MethodPlan, points: Stack,
                      step: int) -> Stack:
    """G(P): every agent's minibatch gradient at its row of `points` on minibatch `step`."""
    per_agent = [gradient(setup.model, [layer[agent] for layer in points],
                          *setup.minibatch(step), weight_decay=plan.weight_decay)[0]
                 for agent, setup in enumerate(setups)]
    return [torch.stack([g[index] for g in per_agent]) for index in range(len(points))]


def _product(mixing: torch.Tensor, stack: Stack) -> Stack:
    return [torch.tensordot(mixing, layer, dims=1) for layer in stack]


def _combine(*terms: tuple[float | torch.Tensor, Stack]) -> Stack:
    """Σ c_i A_i over stacks, layer by layer (a tensor coefficient scales rows)."""
    layers = len(terms[0][1])
    total = []
    for index in range(layers):
        value = torch.zeros_like(terms[0][1][index])
        for coefficient, stack in terms:
            factor = coefficient.view(-1, *[1] * (stack[index].dim() - 1)) \
                if isinstance(coefficient, torch.Tensor) else coefficient
            value = value + factor * stack[index]
        total.append(value)
    return total


class Recursion(Protocol):
    """One method's matrix form: its state before round 1, and a round."""

    def start(self, x0: Stack, grads: Gradients, lr: float) -> Matrices: ...

    def round(self, state: Matrices, mixing: torch.Tensor, grads: Gradients, lr: float,
              step: int) -> Matrices: ...


class Tracking:
    def __init__(self, rule: GradientTracking) -> None:
        self.momentum, self.nesterov = rule.momentum, rule.nesterov

    def _publish(self, state: Matrices, lr: float) -> Matrices:
        y = state["y"]
        if self.momentum:
            v = _combine((self.momentum, state["v"]), (1.0, y))
            u = _combine((1.0, y), (self.momentum, v)) if self.nesterov else v
            state = {**state, "v": v}
        else:
            u = y
        return {**state, "s_x": _combine((1.0, state["x"]), (-lr, u)), "s_y": y}

    def start(self, x0: Stack, grads: Gradients, lr: float) -> Matrices:
        g = grads(x0, 0)
        return self._publish({"x": x0, "y": g, "g": g,
                              "v": [torch.zeros_like(x) for x in x0]}, lr)

    def round(self, state: Matrices, mixing: torch.Tensor, grads: Gradients, lr: float,
              step: int) -> Matrices:
        x = _product(mixing, state["s_x"])
        g = grads(x, step)
        y = _combine((1.0, _product(mixing, state["s_y"])), (1.0, g), (-1.0, state["g"]))
        return self._publish({**state, "x": x, "y": y, "g": g}, lr)


class DoubleStep:
    def start(self, x0: Stack, grads: Gradients, lr: float) -> Matrices:
        a = _combine((lr, grads(x0, 0)))
        return {"x": x0, "a": a, "s": _combine((1.0, x0), (-1.0, a))}

    def round(self, state: Matrices, mixing: torch.Tensor, grads: Gradients, lr: float,
              step: int) -> Matrices:
        x = _product(mixing, state["s"])
        a = _combine((lr, grads(x, step)))
        return {"x": x, "a": a, "s": _combine((2.0, x), (-1.0, state["x"]), (-1.0, a),
                                              (1.0, state["a"]))}


class QuasiGlobal:
    def __init__(self, rule: QuasiGlobalMomentum) -> None:
        self.beta, self.mu, self.nesterov = rule.momentum, rule.buffer_momentum, rule.nesterov

    def _publish(self, x: Stack, buffer: Stack, g: Stack, lr: float) -> Matrices:
        m = _combine((self.beta, buffer), (1.0, g))
        u = _combine((1.0, g), (self.beta, m)) if self.nesterov else m
        return {"x": x, "buffer": buffer, "s": _combine((1.0, x), (-lr, u)),
                "lr": [torch.full((len(x[0]),), lr, dtype=torch.float64, device=x[0].device)]}

    def start(self, x0: Stack, grads: Gradients, lr: float) -> Matrices:
        return self._publish(x0, [torch.zeros_like(x) for x in x0], grads(x0, 0), lr)

    def round(self, state: Matrices, mixing: torch.Tensor, grads: Gradients, lr: float,
              step: int) -> Matrices:
        x = _product(mixing, state["s"])
        inverse = (1.0 / state["lr"][0]).to(x[0].dtype)
        displacement = _combine((inverse, _combine((1.0, state["x"]), (-1.0, x))))
        buffer = _combine((self.mu, state["buffer"]), (1.0 - self.mu, displacement))
        return self._publish(x, buffer, grads(x, step), lr)


class AdaptThenCombine:
    def __init__(self, rule: DSGDAdaptThenCombine) -> None:
        self.mu, self.nesterov = rule.momentum, rule.nesterov

    def _publish(self, x: Stack, velocity: Stack, g: Stack, lr: float) -> Matrices:
        v = _combine((self.mu, velocity), (1.0, g))
        u = _combine((1.0, g), (self.mu, v)) if self.nesterov else v
        return {"x": x, "v": v, "s": _combine((1.0, x), (-lr, u))}

    def start(self, x0: Stack, grads: Gradients, lr: float) -> Matrices:
        return self._publish(x0, [torch.zeros_like(x) for x in x0], grads(x0, 0), lr)

    def round(self, state: Matrices, mixing: torch.Tensor, grads: Gradients, lr: float,
              step: int) -> Matrices:
        x = _product(mixing, state["s"])
        return self._publish(x, state["v"], grads(x, step), lr)


def recursion_of(plan: MethodPlan) -> Recursion:
    """The matrix form of the plan's adapt-then-combine rule."""
    rule = plan.update_rule
    if isinstance(rule, GradientTracking):
        return Tracking(rule)
    if isinstance(rule, D2):
        return DoubleStep()
    if isinstance(rule, QuasiGlobalMomentum):
        return QuasiGlobal(rule)
    if isinstance(rule, DSGDAdaptThenCombine):
        return AdaptThenCombine(rule)
    raise ValueError(f"no matrix form of the adapt-then-combine rule {rule.name}")


def reference_ahead(plan: MethodPlan, on_round: Callable[[float], None] | None = None,
                    ) -> dict[int, list[np.ndarray]]:
    """Every agent's model after `plan.rounds` rounds, in matrix form, from x_0."""
    setups = [AgentSetup.build(plan, agent) for agent in range(plan.agents)]
    device = setups[0].device
    recursion = recursion_of(plan)

    def grads(points: Stack, step: int) -> Stack:
        return stacked_gradients(setups, plan, points, step)

    start = [torch.stack([layer] * plan.agents)
             for layer in from_numpy(plan.initial_parameters, device)]
    state = recursion.start(start, grads, plan.lr_at(1))
    schedule = plan.failure_schedule
    for server_round in range(1, plan.rounds + 1):
        began = time.perf_counter()
        network = schedule.network(server_round)
        mixing = torch.as_tensor(network.mixing_matrix, dtype=plan.dtype, device=device)
        updated = recursion.round(state, mixing, grads, plan.lr_at(server_round), server_round)
        down = torch.tensor([agent not in network.alive for agent in range(plan.agents)],
                            device=device)
        state = {part: keep_rows(down, updated[part], state[part]) for part in updated}
        if on_round is not None:
            on_round(time.perf_counter() - began)
    return {agent: to_numpy([layer[agent] for layer in state["x"]])
            for agent in range(plan.agents)}
