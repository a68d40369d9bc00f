"""CHOCO-SGD's rule equals the paper's Algorithm 2 written out in NumPy (each worker keeping
its neighbours' public copies x̂_j, as the paper states it), with the authors' momentum;
with Q = none and γ = 1 it is CDSGD round by round; CHOCO-Gossip reaches the average
linearly on a ring under top-k where naive compressed gossip stalls; γ's search."""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise

import numpy as np
import pytest
import torch

from strategies.cdsgd import CDSGD
from strategies.choco import (
    Choco,
    choco_gossip,
    mixing_product,
    no_gradient,
    tune_consensus_step_size,
)
from strategies.compressed_gossip import CompressedGossip
from strategies.compression import NONE, AgentCompressor, Compressor
from strategies.gossip import GossipRule, State, gossip_round

AGENTS, SIZE = 6, 40


def ring(agents: int) -> np.ndarray:
    """The Metropolis ring: 1/3 on each agent and its two neighbours."""
    matrix = np.zeros((agents, agents))
    for agent in range(agents):
        for other in (agent - 1, agent, agent + 1):
            matrix[agent, other % agents] = 1 / 3
    return matrix


def top_k(v: np.ndarray, fraction: float) -> np.ndarray:
    k = max(1, int(fraction * v.size))
    kept = np.argsort(-np.abs(v))[:k]
    q = np.zeros_like(v)
    q[kept] = v[kept]
    return q


def scaled_sign(v: np.ndarray) -> np.ndarray:
    return np.abs(v).sum() / v.size * np.where(v < 0, -1.0, 1.0)


NUMPY_Q: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "top_k": lambda v: top_k(v, 0.2), "sign": scaled_sign, "none": lambda v: v}
TORCH_Q = {"top_k": Compressor("top_k", fraction=0.2), "sign": Compressor("sign"),
           "none": NONE}


class Quadratics:
    """f_i(x) = ½‖x − b_i‖², its minibatch gradient at step t x − b_i + ξ_{i,t}."""

    def __init__(self, seed: int = 0, rounds: int = 40) -> None:
        rng = np.random.default_rng(seed)
        self.targets = rng.normal(size=(AGENTS, SIZE))
        self.noise = 0.3 * rng.normal(size=(rounds, AGENTS, SIZE))

    def numpy(self, agent: int, x: np.ndarray, step: int) -> np.ndarray:
        return x - self.targets[agent] + self.noise[step, agent]

    def stack(self, point: list[torch.Tensor], step: int) -> tuple[list[torch.Tensor], object]:
        gradient = point[0] - torch.from_numpy(self.targets - self.noise[step])
        return [gradient], torch.zeros(AGENTS)


def algorithm_2(x0: np.ndarray, matrix: np.ndarray, gradient: Callable, lr: float,
                gamma: float, rounds: int, q: Callable[[np.ndarray], np.ndarray],
                momentum: float = 0.0, nesterov: bool = False) -> list[np.ndarray]:
    """CHOCO-SGD, Algorithm 2 of Koloskova et al. (2019), every worker i holding x̂_j of
    each j in its neighbourhood (here all start at the common x_0), with the authors'
    momentum (their `apply_gradient`). Returns X after each round."""
    agents = len(matrix)
    x = np.stack([x0] * agents)
    copies = [{j: x0.copy() for j in np.flatnonzero(matrix[i])} for i in range(agents)]
    buffers = np.zeros_like(x)
    history = []
    for t in range(rounds):
        updated, sent = np.empty_like(x), np.empty_like(x)
        for i in range(agents):
            g = gradient(i, x[i], t)
            if momentum:
                buffers[i] = momentum * buffers[i] + g
                g = g + momentum * buffers[i] if nesterov else buffers[i]
            half = x[i] - lr * g                                         # line 4
            updated[i] = half + gamma * sum(matrix[i, j] * (copies[i][j] - copies[i][i])
                                            for j in copies[i])          # line 5
            sent[i] = q(updated[i] - copies[i][i])                       # line 6
        for i in range(agents):                                          # lines 7-9
            for j in copies[i]:
                copies[i][j] = copies[i][j] + sent[j]
        x = updated
        history.append(x.copy())
    return history


def drive(rule: GossipRule, x0: list[torch.Tensor], matrix: np.ndarray,
          gradient: Callable, lr: float, rounds: int) -> list[State]:
    """`rule` on a stack, round after round, the mixing sum Π applied to the messages."""
    own = torch.as_tensor(np.diag(matrix).copy(), dtype=x0[0].dtype)
    state = rule.start(x0, gradient, lr)
    states = []
    for server_round in range(1, rounds + 1):
        state, _ = gossip_round(rule, state, mixing_product(matrix, rule.message(state)), own,
                                gradient, lr, range(server_round - 1, server_round))
        states.append(state)
    return states


def _bound(compressor: Compressor) -> AgentCompressor:
    return AgentCompressor(compressor).bind(0, tuple(range(AGENTS)))


@pytest.mark.parametrize(("kind", "momentum", "nesterov"), [
    ("top_k", 0.0, False), ("sign", 0.0, False), ("top_k", 0.9, True), ("sign", 0.5, False)])
def test_the_rule_is_algorithm_2(kind: str, momentum: float, nesterov: bool) -> None:
    problem, matrix = Quadratics(), ring(AGENTS)
    x0 = np.random.default_rng(1).normal(size=SIZE)
    expected = algorithm_2(x0, matrix, problem.numpy, 0.05, 0.4, 30, NUMPY_Q[kind], momentum,
                           nesterov)
    rule = Choco(0.4, _bound(TORCH_Q[kind]), momentum=momentum, nesterov=nesterov)
    start = [torch.from_numpy(np.stack([x0] * AGENTS))]
    states = drive(rule, start, matrix, problem.stack, 0.05, 30)
    for state, want in zip(states, expected, strict=True):
        np.testing.assert_allclose(state["x"][0].numpy(), want, rtol=0, atol=1e-10)
        # s_i, kept as a running sum of the messages, is Σ_j w_ij x̂_j^t: the copies
        # before this round's q, which the neighbours add to it next round
        before = state["x_hat"][0].numpy() - state["q"][0].numpy()
        np.testing.assert_allclose(state["s"][0].numpy(), matrix @ before, rtol=0, atol=1e-10)


def test_choco_gossip_is_algorithm_1_from_zero_copies() -> None:
    """CHOCO-Gossip (Algorithm 1: x̂ = 0 at the start, no gradient) from distinct points."""
    matrix = ring(AGENTS)
    points = np.random.default_rng(2).normal(size=(AGENTS, SIZE))
    x, copies = points.copy(), np.zeros_like(points)
    rule = Choco(0.3, _bound(TORCH_Q["top_k"]))
    for state in choco_gossip(rule, matrix, [torch.from_numpy(points)], 25):
        x = x + 0.3 * (matrix @ copies - copies)
        copies = copies + np.stack([top_k(row, 0.2) for row in x - copies])
        np.testing.assert_allclose(state["x"][0].numpy(), x, rtol=0, atol=1e-10)
        np.testing.assert_allclose(state["x_hat"][0].numpy(), copies, rtol=0, atol=1e-10)


def test_with_no_compression_and_step_one_it_is_cdsgd_round_by_round() -> None:
    """x̂ = s = x_0, q = x^{t+1} − x̂, γ = 1: x^{t+1} = Σ_j w_ij x_j^t − α g(x_i^t), up to
    rounding (in float64: 10⁻¹²; the engines' float32 runs are compared in
    test_compressed_engines)."""
    problem, matrix = Quadratics(), ring(AGENTS)
    start = [torch.from_numpy(np.random.default_rng(3).normal(size=(1, SIZE)))
             .repeat(AGENTS, 1)]
    choco = drive(Choco(1.0, _bound(NONE)), start, matrix, problem.stack, 0.05, 30)
    cdsgd = drive(CDSGD(), start, matrix, problem.stack, 0.05, 30)
    for ours, theirs in zip(choco, cdsgd, strict=True):
        torch.testing.assert_close(ours["x"][0], theirs["x"][0], rtol=0, atol=1e-12)


def _distance_to_average(state: State, average: torch.Tensor) -> float:
    """(1/n) Σ_i ‖x_i − x̄_0‖²: how far the agents are from the average gossip must reach."""
    return float(((state["x"][0] - average) ** 2).sum(dim=1).mean())


def test_choco_gossip_reaches_the_average_linearly_where_naive_top_k_stalls() -> None:
    """Ring of 8, top-10 % of 100 entries, points around 1: CHOCO-Gossip's distance to the
    average falls by the same large factor every 100 rounds down to 10⁻¹⁰ of where it
    started; naive compressed gossip's agents agree quickly, on a sparse point far from
    the average, and stay there."""
    agents, matrix = 8, ring(8)
    points = [1.0 + torch.randn(agents, 100, generator=torch.Generator().manual_seed(0),
                                dtype=torch.float64)]
    average = points[0].mean(dim=0, keepdim=True)
    compression = AgentCompressor(Compressor("top_k", fraction=0.1)).bind(0, tuple(range(8)))
    start = _distance_to_average({"x": points}, average)
    distances = [_distance_to_average(state, average) for state in
                 choco_gossip(Choco(0.1, compression), matrix, points, 600)]
    checkpoints = [distances[r - 1] for r in range(100, 700, 100)]
    factors = [before / after for before, after in pairwise(checkpoints)]
    assert all(20 < factor < 200 for factor in factors), factors  # linear: a steady rate
    assert distances[-1] < 1e-10 * start

    naive = CompressedGossip(CDSGD(), compression)
    own = torch.full((agents,), 1 / 3, dtype=torch.float64)
    state = naive.start(points, no_gradient, 0.0)
    trace = []
    for step in range(600):
        state, _ = naive.advance(state, mixing_product(matrix, naive.message(state)), own,
                                 no_gradient, 0.0, step)
        trace.append((_distance_to_average(state, average),
                      float(((state["x"][0] - state["x"][0].mean(dim=0)) ** 2).sum(1).mean())))
    assert trace[-1][0] > 0.5 * start  # stalled far from the average ...
    assert trace[-1][0] == pytest.approx(trace[299][0], rel=1e-6)
    assert trace[-1][1] < 1e-12  # ... on which the agents agree


def test_the_search_picks_a_smaller_step_for_harder_compression_and_repeats() -> None:
    matrix, shapes = ring(8), [(50,), (10, 5)]
    found = {name: tune_consensus_step_size(matrix, shapes, AgentCompressor(compressor), 0)
             for name, compressor in (("none", NONE),
                                      ("top-10%", Compressor("top_k", fraction=0.1)),
                                      ("top-1%", Compressor("top_k", fraction=0.01)))}
    gamma = {name: chosen for name, (chosen, _) in found.items()}
    assert gamma["top-1%"] < gamma["top-10%"] < gamma["none"] == 1.0
    for chosen, errors in found.values():
        assert errors[chosen] == min(errors.values())
    assert tune_consensus_step_size(matrix, shapes, AgentCompressor(NONE), 0)[0] == 1.0
