"""Robust aggregation (strategies.robust) equals its papers' rules written out in NumPy, on one
agent's neighbourhood and on a padded stack of every agent's; with no attacker every rule
returns the point a complete graph of identical points agrees on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from decentral_bench.engines.vectorized.neighbourhoods import Gathering
from decentral_bench.network.topology import build_topology
from decentral_bench.scenario import TopologyConfig
from strategies.robust import (
    Aggregation,
    Neighbourhoods,
    aggregate,
    clipping_radius,
    krum_scores,
)

KINDS = ("mean", "clipped_gossip", "trimmed_mean", "median", "krum")
SHAPES = ((3, 2), (4,))  # a model of two parameter tensors


def _members(rng: np.random.Generator, count: int) -> list[list[np.ndarray]]:
    return [[rng.normal(size=shape).astype(np.float32) for shape in SHAPES]
            for _ in range(count)]


def _flat(member: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([p.ravel() for p in member]).astype(np.float64)


def _unflat(vector: np.ndarray) -> list[np.ndarray]:
    parts, start = [], 0
    for shape in SHAPES:
        size = int(np.prod(shape))
        parts.append(vector[start:start + size].reshape(shape))
        start += size
    return parts


def _one(kind: str, members: list[list[np.ndarray]], weights: list[float], own: int,
         **options: float) -> list[np.ndarray]:
    result = aggregate(Aggregation(kind, **options),  # type: ignore[arg-type]
                       Neighbourhoods.of_one([[torch.as_tensor(p) for p in m] for m in members],
                                             weights, own))
    return [t[0].numpy() for t in result]


def _assert_close(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


# ------------------------------------------------ the rules written out in NumPy


def numpy_clipped_gossip(members: list[np.ndarray], weights: list[float], own: int,
                         tau: float | None) -> np.ndarray:
    """He et al. (2022): x_i + Σ_j W_ij CLIP(x_j − x_i, τ_i); the authors' adaptive τ_i is the
    second largest ||x_j − x_i|| over i's neighbours (SelfCenteredClipping)."""
    x = members[own]
    if tau is None:
        distances = sorted(np.linalg.norm(m - x) for j, m in enumerate(members) if j != own)
        tau = distances[-2] if len(distances) >= 2 else distances[-1]
    total = x.copy()
    for w, m in zip(weights, members, strict=True):
        v = m - x
        norm = np.linalg.norm(v)
        total += w * v * (min(1.0, tau / norm) if norm > 0 else 1.0)
    return total


def numpy_trimmed_mean(members: list[np.ndarray], own: int, b: int) -> np.ndarray:
    """BRIDGE-T: per coordinate, the neighbours' values without the b largest and b smallest,
    averaged with the node's own value."""
    others = np.stack([m for j, m in enumerate(members) if j != own])
    ranked = np.sort(others, axis=0)
    kept = ranked[b:len(others) - b]
    return (members[own] + kept.sum(axis=0)) / (len(kept) + 1)


def numpy_median(members: list[np.ndarray]) -> np.ndarray:
    return np.median(np.stack(members), axis=0)


def numpy_krum(members: list[np.ndarray], b: int) -> np.ndarray:
    """Blanchard et al. (2017): score(i) = Σ of the n − b − 2 smallest ||x_i − x_j||², the
    vector of least score."""
    n = len(members)
    scores = []
    for i in range(n):
        distances = sorted(float(np.sum((members[i] - members[j]) ** 2))
                           for j in range(n) if j != i)
        scores.append(sum(distances[:n - b - 2]))
    return members[int(np.argmin(scores))]


# ------------------------------------------------ one neighbourhood


@pytest.mark.parametrize("tau", [None, 0.8])
def test_clipped_gossip_equals_he_et_al(tau: float | None) -> None:
    rng = np.random.default_rng(0)
    members = _members(rng, 5)
    members[3] = [10.0 * p for p in members[3]]  # one far neighbour, clipped hardest
    weights, own = [0.2, 0.1, 0.3, 0.15, 0.25], 2
    expected = numpy_clipped_gossip([_flat(m) for m in members], weights, own, tau)
    _assert_close(_one("clipped_gossip", members, weights, own, tau=tau), _unflat(expected))


def test_the_adaptive_radius_is_the_second_largest_distance() -> None:
    distances = torch.tensor([[0.0, 3.0, 1.0, 2.0], [0.0, 5.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]],
                             dtype=torch.float64)
    neighbours = torch.tensor([[False, True, True, True], [False, True, False, False],
                               [False, False, False, False]])
    assert clipping_radius(distances, neighbours).tolist() == [2.0, 5.0, 0.0]


@pytest.mark.parametrize("b", [1, 2])
def test_trimmed_mean_equals_bridge_t(b: int) -> None:
    rng = np.random.default_rng(1)
    members = _members(rng, 6)
    own = 4
    expected = numpy_trimmed_mean([_flat(m) for m in members], own, b)
    _assert_close(_one("trimmed_mean", members, [1 / 6] * 6, own, b=b), _unflat(expected))


@pytest.mark.parametrize("count", [4, 5])  # an even and an odd neighbourhood
def test_median_equals_the_coordinate_wise_median(count: int) -> None:
    rng = np.random.default_rng(2)
    members = _members(rng, count)
    expected = numpy_median([_flat(m) for m in members])
    _assert_close(_one("median", members, [1 / count] * count, 1), _unflat(expected))


def test_krum_equals_blanchard_et_al() -> None:
    rng = np.random.default_rng(3)
    members = _members(rng, 6)
    members[0] = [p + 4.0 for p in members[0]]
    expected = numpy_krum([_flat(m) for m in members], b=1)
    _assert_close(_one("krum", members, [1 / 6] * 6, 2, b=1), _unflat(expected))


def test_krum_scores_count_the_nearest_members() -> None:
    points = [torch.tensor([[[0.0], [1.0], [3.0], [10.0]]])]  # four members on a line
    neighbourhoods = Neighbourhoods(points, torch.ones(1, 4, dtype=torch.bool),
                                    torch.full((1, 4), 0.25), torch.tensor([0]))
    # n − b − 2 = 1 with b = 1: each member's squared distance to its nearest other member.
    assert krum_scores(neighbourhoods, 1).tolist() == [[1.0, 1.0, 4.0, 49.0]]


def test_mean_is_the_mixing_sum() -> None:
    rng = np.random.default_rng(4)
    members = _members(rng, 3)
    weights = [0.5, 0.3, 0.2]
    expected = sum(w * _flat(m) for w, m in zip(weights, members, strict=True))
    _assert_close(_one("mean", members, weights, 0), _unflat(expected))


# ------------------------------------------------ every agent at once


@pytest.mark.parametrize("kind", KINDS)
def test_the_padded_stack_equals_each_agents_own_call(kind: str) -> None:
    """A path of 6 agents (degrees 1 and 2, so rows are padded): every agent's row of the
    stacked call equals the call the ClientApp makes on its own neighbourhood."""
    topology = build_topology(TopologyConfig(kind="path", agents=6), seed=0)
    matrix = topology.mixing_matrix
    rng = np.random.default_rng(5)
    published = [torch.as_tensor(rng.normal(size=(6, *shape)).astype(np.float32))
                 for shape in SHAPES]
    honest = [p + 0.5 for p in published]  # each agent mixes its own honest message
    gathering = Gathering(matrix, (), torch.device("cpu"))
    aggregation = Aggregation(kind, b=1)  # type: ignore[arg-type]
    together = aggregate(aggregation, gathering.neighbourhoods(published, honest))
    for agent in range(6):
        members = [int(l) for l in sorted({agent, *np.flatnonzero(matrix[agent])})]
        own = members.index(agent)
        points = [[(h if l == agent else p)[l] for p, h in zip(published, honest, strict=True)]
                  for l in members]
        alone = aggregate(aggregation, Neighbourhoods.of_one(
            points, [float(matrix[agent, l]) for l in members], own))
        for row, single in zip(together, alone, strict=True):
            np.testing.assert_allclose(row[agent].numpy(), single[0].numpy(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_identical_points_on_a_complete_graph_are_returned_unchanged(kind: str) -> None:
    topology = build_topology(TopologyConfig(kind="complete", agents=5), seed=0)
    point = [torch.randn(shape) for shape in SHAPES]
    stack = [p.unsqueeze(0).repeat(5, *[1] * p.dim()) for p in point]
    gathering = Gathering(topology.mixing_matrix, (), torch.device("cpu"))
    for result, want in zip(aggregate(Aggregation(kind, b=2),  # type: ignore[arg-type]
                                      gathering.neighbourhoods(stack, stack)), point,
                            strict=True):
        for agent in range(5):
            torch.testing.assert_close(result[agent], want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_a_rule_changes_none_of_its_inputs(kind: str) -> None:
    rng = np.random.default_rng(6)
    members = [[torch.as_tensor(p) for p in m] for m in _members(rng, 5)]
    before = [[p.clone() for p in m] for m in members]
    neighbourhoods = Neighbourhoods.of_one(members, [0.2] * 5, 0)
    stacked = [p.clone() for p in neighbourhoods.points]
    aggregate(Aggregation(kind), neighbourhoods)  # type: ignore[arg-type]
    for m, b in zip(members, before, strict=True):
        for p, q in zip(m, b, strict=True):
            assert torch.equal(p, q)
    for p, q in zip(neighbourhoods.points, stacked, strict=True):
        assert torch.equal(p, q)


def test_screens_shrink_b_to_what_a_small_degree_allows() -> None:
    """A failed link can leave an agent fewer neighbours than 2b + 1: the trimmed mean then
    trims what it can (here one each side of three, leaving the middle value)."""
    values = [[torch.tensor([v])] for v in (0.0, 1.0, 2.0, 30.0)]  # own first, 3 neighbours
    result = aggregate(Aggregation("trimmed_mean", b=2), Neighbourhoods.of_one(
        values, [0.25] * 4, 0))
    assert result[0].tolist() == [[1.0]]  # (0 + 2) / 2
