"""Gradient tracking, D² and QG-DSGDm equal their papers' equations written out in NumPy,
run both ways the engines run a rule: on a stack of every agent (the vectorized engine)
and agent by agent from what each keeps and the messages it is sent (the ClientApp)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from strategies.d2 import D2
from strategies.gossip import GossipRule, State, gossip_round, gradient_steps
from strategies.gradient_tracking import GradientTracking
from strategies.qg_dsgdm import QuasiGlobalMomentum

AGENTS, ROUNDS = 4, 6
SHAPES = [(3, 2), (2,)]
RNG = np.random.default_rng(5)
# g_j(x) at step s = a_j ⊙ x + b_{j,s}: a different linear gradient per agent and minibatch.
SLOPES = [RNG.uniform(0.5, 2.0, size=(AGENTS, *shape)) for shape in SHAPES]
OFFSETS = [RNG.normal(size=(ROUNDS + 1, AGENTS, *shape)) for shape in SHAPES]
X0 = [np.repeat(RNG.normal(size=(1, *shape)), AGENTS, axis=0) for shape in SHAPES]
# A step schedule (α_1 .. α_ROUNDS) and a different doubly stochastic Π_k every round.
STEPS = [0.1, 0.1, 0.05, 0.05, 0.02, 0.02]


def _mixing(round_number: int) -> np.ndarray:
    """A symmetric doubly stochastic matrix: a lazy average over a random perfect matching."""
    order = np.random.default_rng(round_number).permutation(AGENTS)
    matrix = np.eye(AGENTS) * 0.5
    for first, second in zip(order[::2], order[1::2], strict=True):
        matrix[first, second] = matrix[second, first] = 0.5
    return 0.25 * np.eye(AGENTS) + 0.75 * (0.5 * matrix + 0.5 * np.full((AGENTS, AGENTS),
                                                                        1 / AGENTS))


MIXING = [_mixing(k) for k in range(1, ROUNDS + 1)]


def numpy_gradient(points: list[np.ndarray], step: int) -> list[np.ndarray]:
    return [a * x + b[step] for a, x, b in zip(SLOPES, points, OFFSETS, strict=True)]


def mix(matrix: np.ndarray, stack: list[np.ndarray]) -> list[np.ndarray]:
    return [np.tensordot(matrix, layer, axes=1) for layer in stack]


def lincomb(*terms: tuple[float, list[np.ndarray]]) -> list[np.ndarray]:
    return [sum(c * stack[i] for c, stack in terms) for i in range(len(SHAPES))]


# ---------------------------------------------------------------- the papers' equations


def gradient_tracking_numpy(momentum: float, nesterov: bool) -> list[list[np.ndarray]]:
    """Koloskova et al. (2021) Algorithm 1, x_{k+1} = W (x_k − α y_k),
    y_{k+1} = W y_k + ∇f(x_{k+1}) − ∇f(x_k), y_0 = ∇f(x_0), with the code's momentum
    buffer v = β v + y over the tracker. Returns x after each round."""
    x, g = X0, numpy_gradient(X0, 0)
    y, v = g, [np.zeros_like(layer) for layer in X0]
    models, step = [], STEPS[0]
    for k in range(1, ROUNDS + 1):
        v = lincomb((momentum, v), (1.0, y))
        u = (lincomb((1.0, y), (momentum, v)) if nesterov else v) if momentum else y
        x_next = mix(MIXING[k - 1], lincomb((1.0, x), (-step, u)))
        g_next = numpy_gradient(x_next, k)
        y = lincomb((1.0, mix(MIXING[k - 1], y)), (1.0, g_next), (-1.0, g))
        x, g, step = x_next, g_next, STEPS[k - 1]
        models.append(x)
    return models


def d2_numpy() -> list[list[np.ndarray]]:
    """Tang et al. (2018) Algorithm 1: x_1 = W (x_0 − α g_0),
    x_{k+1} = W (2 x_k − x_{k−1} − α_k g_k + α_{k−1} g_{k−1})."""
    previous, previous_step = X0, lincomb((STEPS[0], numpy_gradient(X0, 0)))
    x = mix(MIXING[0], lincomb((1.0, X0), (-1.0, previous_step)))
    models = [x]
    for k in range(2, ROUNDS + 1):
        step = lincomb((STEPS[k - 2], numpy_gradient(x, k - 1)))
        x_next = mix(MIXING[k - 1], lincomb((2.0, x), (-1.0, previous), (-1.0, step),
                                            (1.0, previous_step)))
        previous, previous_step, x = x, step, x_next
        models.append(x)
    return models


def qg_numpy(beta: float, mu: float, nesterov: bool) -> list[list[np.ndarray]]:
    """Lin et al. (2021) Algorithm 1: m = β m̂ + g, x_{k+1/2} = x_k − η u (u = m, or
    g + β m for Nesterov), x_{k+1} = W x_{k+1/2}, d = (x_k − x_{k+1}) / η,
    m̂ = μ m̂ + (1 − μ) d."""
    x, buffer = X0, [np.zeros_like(layer) for layer in X0]
    models = []
    for k in range(1, ROUNDS + 1):
        step = STEPS[max(k - 2, 0)]  # round k mixes the half-step of round k − 1 (start: α_1)
        g = numpy_gradient(x, k - 1)
        m = lincomb((beta, buffer), (1.0, g))
        u = lincomb((1.0, g), (beta, m)) if nesterov else m
        x_next = mix(MIXING[k - 1], lincomb((1.0, x), (-step, u)))
        buffer = lincomb((mu, buffer), ((1 - mu) / step, x), (-(1 - mu) / step, x_next))
        x = x_next
        models.append(x)
    return models


# ---------------------------------------------------------------- the rules, both ways


def torch_gradient(points: list[torch.Tensor], step: int, agent: int | None = None,
                   ) -> tuple[list[torch.Tensor], Any]:
    """The oracle for a stack (agent None: the loss is one value per agent) or one agent."""
    rows = slice(None) if agent is None else agent
    grads = [torch.as_tensor(a[rows]) * x + torch.as_tensor(b[step][rows])
             for a, x, b in zip(SLOPES, points, OFFSETS, strict=True)]
    loss = torch.zeros(AGENTS, dtype=torch.float64) if agent is None else 0.0
    return grads, loss


def stacked_run(rule: GossipRule) -> list[list[np.ndarray]]:
    state = rule.start([torch.as_tensor(x) for x in X0], torch_gradient, STEPS[0])
    models = []
    for k in range(1, ROUNDS + 1):
        matrix = torch.as_tensor(MIXING[k - 1])
        mixed = [torch.tensordot(matrix, m, dims=1) for m in rule.message(state)]
        state, _ = gossip_round(rule, state, mixed, torch.diagonal(matrix), torch_gradient,
                                STEPS[k - 1], gradient_steps(rule, k, 1))
        models.append([t.numpy() for t in rule.model(state)])
    return models


def agent_by_agent_run(rule: GossipRule) -> list[list[np.ndarray]]:
    """Each agent holds only `kept` between rounds and is sent every agent's last message,
    as the router sends Nb(j)'s (Π_k's zero weights change nothing)."""
    kept: list[State] = []
    messages = []
    for agent in range(AGENTS):
        def oracle(points: list[torch.Tensor], step: int, j: int = agent) -> Any:
            return torch_gradient(points, step, j)
        state = rule.start([torch.as_tensor(x[agent]) for x in X0], oracle, STEPS[0])
        kept.append(rule.kept(state))
        messages.append(rule.message(state))
    models = []
    for k in range(1, ROUNDS + 1):
        published, row_models = [], []
        for agent in range(AGENTS):
            def oracle(points: list[torch.Tensor], step: int, j: int = agent) -> Any:
                return torch_gradient(points, step, j)
            weights = MIXING[k - 1][agent]
            mixed = [sum(float(w) * m[i] for w, m in zip(weights, messages, strict=True))
                     for i in range(len(messages[agent]))]
            state = rule.restore(messages[agent], kept[agent])
            state, _ = gossip_round(rule, state, mixed, float(weights[agent]), oracle,
                                    STEPS[k - 1], gradient_steps(rule, k, 1))
            kept[agent] = rule.kept(state)
            published.append(rule.message(state))
            row_models.append(rule.model(state))
        messages = published
        models.append([np.stack([m[i].numpy() for m in row_models])
                       for i in range(len(SHAPES))])
    return models


CASES: dict[str, tuple[GossipRule, Callable[[], list[list[np.ndarray]]]]] = {
    "gradient-tracking": (GradientTracking(), lambda: gradient_tracking_numpy(0.0, False)),
    "gradient-tracking-polyak": (GradientTracking(momentum=0.8),
                                 lambda: gradient_tracking_numpy(0.8, False)),
    "gradient-tracking-nesterov": (GradientTracking(momentum=0.8, nesterov=True),
                                   lambda: gradient_tracking_numpy(0.8, True)),
    "d2": (D2(), d2_numpy),
    "qg-heavy-ball": (QuasiGlobalMomentum(0.9, 0.7, nesterov=False),
                      lambda: qg_numpy(0.9, 0.7, False)),
    "qg-nesterov": (QuasiGlobalMomentum(0.9, 0.7, nesterov=True),
                    lambda: qg_numpy(0.9, 0.7, True)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_rule_equals_its_papers_equations(case: str) -> None:
    rule, equations = CASES[case]
    want = equations()
    for run in (stacked_run, agent_by_agent_run):
        got = run(rule)
        for k in range(ROUNDS):
            for layer, expected in zip(got[k], want[k], strict=True):
                np.testing.assert_allclose(layer, expected, rtol=1e-12, atol=1e-12,
                                           err_msg=f"{run.__name__}, round {k + 1}")
    # the agents moved, and apart: the data differ
    assert not np.allclose(want[-1][0], X0[0])
    assert not np.allclose(want[-1][0][0], want[-1][0][1])


def test_a_gradient_tracking_message_is_the_half_step_and_the_tracker() -> None:
    """Twice the model: the router and the traffic count carry both."""
    rule = GradientTracking()
    state = rule.start([torch.as_tensor(x) for x in X0], torch_gradient, 0.1)
    message = rule.message(state)
    assert len(message) == 2 * len(SHAPES)
    gradient, _ = torch_gradient([torch.as_tensor(x) for x in X0], 0)
    for half, tracker, x, g in zip(message[:2], message[2:], X0, gradient, strict=True):
        np.testing.assert_allclose(tracker.numpy(), g.numpy())
        np.testing.assert_allclose(half.numpy(), x - 0.1 * g.numpy())


def test_the_tracker_average_follows_the_average_gradient() -> None:
    """ȳ_k = ḡ(x_k) every round (Π doubly stochastic): the invariant that removes the
    heterogeneity bias."""
    rule = GradientTracking()
    state = rule.start([torch.as_tensor(x) for x in X0], torch_gradient, STEPS[0])
    for k in range(1, ROUNDS + 1):
        matrix = torch.as_tensor(MIXING[k - 1])
        mixed = [torch.tensordot(matrix, m, dims=1) for m in rule.message(state)]
        state, _ = rule.advance(state, mixed, torch.diagonal(matrix), torch_gradient,
                                STEPS[k - 1], k)
        gradient, _ = torch_gradient(state["x"], k)
        for y, g in zip(state["tracker"], gradient, strict=True):
            np.testing.assert_allclose(y.mean(dim=0).numpy(), g.mean(dim=0).numpy(),
                                       atol=1e-12)
