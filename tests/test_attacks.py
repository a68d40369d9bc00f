"""Each attack (strategies.attacks) against its paper's formula on small hand-made cases, and
what an attacker sees of its neighbourhood."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from decentral_bench.engines.vectorized.neighbourhoods import Gathering
from strategies.attacks import (
    Attack,
    alie_z,
    flip_labels,
    gaussian_noise,
    gossip_attack,
    server_attack,
    view_of_one,
)
from strategies.robust import Neighbourhoods

SHAPES = ((2, 3), (3,))


def _model(rng: np.random.Generator) -> list[np.ndarray]:
    return [rng.normal(size=shape).astype(np.float32) for shape in SHAPES]


def _view(members: list[list[np.ndarray]], honest: list[bool], weights: list[float],
          own: int) -> Neighbourhoods:
    """One attacker's view: its neighbourhood's messages, the honest ones marked."""
    view = Neighbourhoods.of_one([[torch.as_tensor(p) for p in m] for m in members],
                                 weights, own)
    return Neighbourhoods(view.points, torch.tensor([honest]), view.weights, view.own)


def _run(attack: Attack, honest: list[np.ndarray], view: Neighbourhoods,
         attackers_weight: float = 0.0, noise: list[torch.Tensor] | None = None,
         ) -> list[np.ndarray]:
    result = gossip_attack(attack, [torch.as_tensor(p).unsqueeze(0) for p in honest], view,
                           torch.tensor([attackers_weight]), noise)
    return [t[0].numpy() for t in result]


def _close(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


@pytest.fixture
def case() -> tuple[list[np.ndarray], list[list[np.ndarray]], list[bool], list[float]]:
    """Attacker 2 of a neighbourhood {0, 1, 2, 3, 4}: members 0, 1 and 4 honest, member 3
    a fellow attacker; its row of Π."""
    rng = np.random.default_rng(0)
    members = [_model(rng) for _ in range(5)]
    honest = [True, True, False, False, True]
    weights = [0.2, 0.15, 0.3, 0.1, 0.25]
    return _model(rng), members, honest, weights


def test_sign_flip_is_the_scaled_negation(case) -> None:
    own, members, honest, weights = case
    got = _run(Attack("sign_flip", scale=3.0), own, _view(members, honest, weights, 2))
    _close(got, [-3.0 * p for p in own])


def test_alie_is_the_mean_less_z_standard_deviations(case) -> None:
    """Baruch et al. (2019): μ − z σ over the honest points, σ with Bessel's correction as
    the authors' torch.std."""
    own, members, honest, weights = case
    points = [members[j] for j in (0, 1, 4)]
    want = [np.mean([p[i] for p in points], axis=0) - 1.5 * np.std([p[i] for p in points],
                                                                    axis=0, ddof=1)
            for i in range(len(SHAPES))]
    _close(_run(Attack("alie", z=1.5), own, _view(members, honest, weights, 2)), want)


def test_alie_z_is_the_authors_formula() -> None:
    """s = ⌊n/2 + 1⌋ − f, z = Φ⁻¹((n − f − s)/(n − f)): scipy's norm.ppf of 7/15, 1/2 and 7/13
    for (n, f) = (16, 1), (16, 2), (15, 2)."""
    assert alie_z(16, 1) == pytest.approx(-0.08365173390712909, abs=1e-12)
    assert alie_z(16, 2) == pytest.approx(0.0, abs=1e-12)
    assert alie_z(15, 2) == pytest.approx(0.09655861528963908, abs=1e-12)
    for agents, attackers in ((16, 9), (2, 1), (8, 0)):
        with pytest.raises(ValueError, match="needs n ≥ 3 and 1 ≤ f ≤ n/2"):
            alie_z(agents, attackers)


def test_ipm_is_minus_epsilon_times_the_honest_mean(case) -> None:
    """Xie et al. (2020): −ε × the mean of the honest points."""
    own, members, honest, weights = case
    want = [-0.1 * np.mean([members[j][i] for j in (0, 1, 4)], axis=0)
            for i in range(len(SHAPES))]
    _close(_run(Attack("ipm", epsilon=0.1), own, _view(members, honest, weights, 2)), want)


def test_dissensus_pushes_against_the_honest_pull(case) -> None:
    """He et al. (2022) with the attacker's own place as the target:
    x_b − ε Σ_h π_bh (x_h − x_b) / Σ_{a∈Nb(b)∩A} π_ba."""
    own, members, honest, weights = case
    byzantine = weights[2] + weights[3]
    want = [own[i] - 1.5 * sum(weights[j] * (members[j][i] - own[i]) for j in (0, 1, 4))
            / byzantine for i in range(len(SHAPES))]
    got = _run(Attack("dissensus", epsilon=1.5), own, _view(members, honest, weights, 2),
               attackers_weight=byzantine)
    _close(got, want)


def test_one_dissensus_round_cancels_the_honest_pull_at_epsilon_one() -> None:
    """ε = 1: an honest agent at the attacker's place that mixed the attacker's point with
    the attackers' weight would not move at all (the definition's intent)."""
    rng = np.random.default_rng(1)
    members = [_model(rng) for _ in range(3)]
    weights = [0.3, 0.3, 0.4]  # attacker 1 between honest 0 and 2
    own = members[1]
    sent = _run(Attack("dissensus", epsilon=1.0), own,
                _view(members, [True, False, True], weights, 1), attackers_weight=0.3)
    mixed = [sum(w * (sent[i] if j == 1 else members[j][i])
                 for j, w in enumerate(weights)) for i in range(len(SHAPES))]
    _close(mixed, own)


def test_attacks_that_read_neighbours_publish_honestly_without_one(case) -> None:
    own, members, _, weights = case
    nobody = [False] * 5
    for kind in ("alie", "ipm", "dissensus"):
        _close(_run(Attack(kind, z=1.0, epsilon=0.5), own,  # type: ignore[arg-type]
                    _view(members, nobody, weights, 2), attackers_weight=0.4), own)


def test_gaussian_adds_the_seeded_draws() -> None:
    like = [torch.zeros(2, *shape) for shape in SHAPES]
    first = gaussian_noise(like, seed=3, agents=[4, 7], server_round=2)
    again = gaussian_noise(like, seed=3, agents=[4, 7], server_round=2)
    alone = gaussian_noise([t[:1] for t in like], seed=3, agents=[7], server_round=2)
    later = gaussian_noise(like, seed=3, agents=[4, 7], server_round=3)
    for a, b, c, d in zip(first, again, alone, later, strict=True):
        assert torch.equal(a, b)
        assert torch.equal(a[1], c[0])  # an agent's draw does not depend on who else draws
        assert not torch.equal(a, d)
        assert not torch.equal(a[0], a[1])
    honest = [np.ones(shape, dtype=np.float32) for shape in SHAPES]
    got = _run(Attack("gaussian", std=0.5), honest,
               _view([honest, honest], [True, False], [0.5, 0.5], 1),
               noise=[n[:1] for n in first])
    _close(got, [h + 0.5 * n[0].numpy() for h, n in zip(honest, first, strict=True)])


def test_a_server_methods_attacker_flips_its_update() -> None:
    rng = np.random.default_rng(2)
    start, trained = _model(rng), _model(rng)
    got = server_attack(Attack("sign_flip", scale=2.0),
                        [torch.as_tensor(p).unsqueeze(0) for p in start],
                        [torch.as_tensor(p).unsqueeze(0) for p in trained])
    _close([t[0].numpy() for t in got], [w - 2.0 * (b - w) for w, b in
                                         zip(start, trained, strict=True)])


def test_label_flipping_maps_y_to_classes_less_one_less_y() -> None:
    assert flip_labels(torch.tensor([0, 3, 9]), 10).tolist() == [9, 6, 0]


def test_an_attacker_sees_its_honest_neighbours_and_the_attackers_weight() -> None:
    """Ring of 5 with attackers 1 and 2: agent 1 sees honest neighbour 0 only; the weight of
    the attackers in its neighbourhood is π_11 + π_12."""
    matrix = np.array([[1 / 3, 1 / 3, 0, 0, 1 / 3], [1 / 3, 1 / 3, 1 / 3, 0, 0],
                       [0, 1 / 3, 1 / 3, 1 / 3, 0], [0, 0, 1 / 3, 1 / 3, 1 / 3],
                       [1 / 3, 0, 0, 1 / 3, 1 / 3]])
    gathering = Gathering(matrix, {1, 2}, torch.device("cpu"))
    published = [torch.arange(5, dtype=torch.float32).view(5, 1)]
    view, weight = gathering.attackers_view([1, 2], published)
    assert view.points[0][:, :, 0].tolist() == [[0.0, 1.0, 2.0], [1.0, 2.0, 3.0]]
    assert view.mask.tolist() == [[True, False, False], [False, False, True]]
    np.testing.assert_allclose(weight.numpy(), [2 / 3, 2 / 3], rtol=1e-6)


def test_an_attackers_own_view_equals_its_row_of_the_gathered_views() -> None:
    """What the ClientApp builds from the arrays the router brought (`view_of_one`) is the
    attacker's row of the vectorized engine's gathered views."""
    matrix = np.array([[0.5, 0.25, 0.25, 0], [0.25, 0.5, 0, 0.25], [0.25, 0, 0.5, 0.25],
                       [0, 0.25, 0.25, 0.5]])
    published = [torch.randn(4, 2, 3), torch.randn(4, 3)]
    gathered, weight = Gathering(matrix, {0, 1}, torch.device("cpu")).attackers_view(
        [1], published)
    members = [0, 1, 3]
    view, own_weight = view_of_one([[p[l] for p in published] for l in members],
                                   [float(matrix[1, l]) for l in members], 1,
                                   [l in {0, 1} for l in members])
    assert torch.equal(view.mask, gathered.mask) and torch.equal(view.own, gathered.own)
    assert torch.equal(view.weights, gathered.weights) and torch.equal(own_weight, weight)
    for a, b in zip(view.points, gathered.points, strict=True):
        assert torch.equal(a, b)
