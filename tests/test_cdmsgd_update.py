"""The CDMSGD update rules and the gossip round equal their equations written out in NumPy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from strategies.cdmsgd import Nesterov, Polyak, nesterov_lookahead, polyak_update
from strategies.cdsgd import CDSGD, mix
from strategies.gossip import GossipState, gossip_round

RNG = np.random.default_rng(11)
SHAPES = [(6, 4), (4,)]


def _params() -> list[np.ndarray]:
    return [RNG.normal(size=shape).astype(np.float32) for shape in SHAPES]


def _torch(params: list[np.ndarray]) -> list[torch.Tensor]:
    return [torch.as_tensor(p) for p in params]


def _close(got: list[torch.Tensor], want: list[np.ndarray]) -> None:
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g.numpy(), w, rtol=0, atol=1e-6)


def _mixed(weights: list[float], points: list[list[np.ndarray]]) -> list[np.ndarray]:
    return [sum(w * x[i] for w, x in zip(weights, points, strict=True)) for i in range(2)]


@pytest.mark.parametrize("first_step", [True, False])
def test_polyak(first_step: bool) -> None:
    neighbours, weights = [_params() for _ in range(3)], [0.2, 0.5, 0.3]
    grad, current = _params(), _params()
    previous = current if first_step else _params()  # x_{-1} = x_0 on the first step
    lr, mu = 0.05, 0.9
    want = [_mixed(weights, neighbours)[i] - lr * grad[i] + mu * (current[i] - previous[i])
            for i in range(2)]
    torch_neighbours = [_torch(x) for x in neighbours]
    _close(polyak_update(torch_neighbours, weights, _torch(grad), lr, mu, _torch(current),
                         _torch(previous)), want)
    rule = Polyak(mu)
    state = rule.restore(_torch(current), None if first_step else _torch(previous))
    advanced = rule.advance(state, mix(torch_neighbours, weights), _torch(grad), lr)
    _close(advanced.current, want)
    _close(advanced.memory, current)  # x_k becomes the memory x_{k−1} of the next step
    _close(rule.kept(advanced), current)  # and is what the agent keeps between rounds
    if first_step:  # no momentum term yet: the first step is a CDSGD step
        _close(advanced.current, [_mixed(weights, neighbours)[i] - lr * grad[i]
                                  for i in range(2)])


@pytest.mark.parametrize("first_step", [True, False])
def test_nesterov(first_step: bool) -> None:
    current = _params()
    previous = current if first_step else _params()
    mu, lr = 0.9, 0.03
    y = [current[i] + mu * (current[i] - previous[i]) for i in range(2)]
    rule = Nesterov(mu)
    _close(nesterov_lookahead(_torch(current), _torch(previous), mu), y)
    _close(rule.published_point(GossipState(_torch(current), _torch(previous))), y)
    neighbour_points, weights = [_params() for _ in range(2)] + [y], [0.25, 0.25, 0.5]
    grad = _params()  # g_j(y_k^j)
    want = [_mixed(weights, neighbour_points)[i] - lr * grad[i] for i in range(2)]
    state = rule.restore(_torch(y), None if first_step else _torch(current))
    advanced = rule.advance(state, mix([_torch(p) for p in neighbour_points], weights),
                            _torch(grad), lr)
    _close(advanced.current, want)
    _close(rule.kept(advanced), want)  # Nesterov keeps x_{k+1}; the message brings y back


def test_cdsgd_and_polyak_publish_x() -> None:
    state = GossipState(_torch(_params()), _torch(_params()))
    for rule in (CDSGD(), Polyak(0.9)):
        _close(rule.published_point(state), [t.numpy() for t in state.current])
    assert CDSGD().kept(state) is None


def test_zero_momentum_reduces_to_cdsgd() -> None:
    mixed, grad, current = _torch(_params()), _torch(_params()), _torch(_params())
    cdsgd = CDSGD().advance(GossipState(current, current), mixed, grad, 0.1).current
    for rule in (Polyak(0.0), Nesterov(0.0)):
        got = rule.advance(GossipState(current, _torch(_params())), mixed, grad, 0.1).current
        _close(got, [t.numpy() for t in cdsgd])


def test_a_round_mixes_once_then_takes_plain_local_steps() -> None:
    """τ = 3 local steps of Polyak: step 1 from Σ π p^l, steps 2 and 3 from the agent's own
    point (Π = I), the momentum term carried through."""
    mu, lr = 0.5, 0.1
    x0, x_minus, mixed = _params(), _params(), _params()
    gradients = {step: _params() for step in (6, 7, 8)}
    seen: list[int] = []

    def gradient_at(point: list[torch.Tensor], step: int) -> tuple[list[torch.Tensor], float]:
        seen.append(step)
        return _torch(gradients[step]), float(step)

    rule = Polyak(mu)
    state, losses = gossip_round(rule, rule.restore(_torch(x0), _torch(x_minus)), _torch(x0),
                                 _torch(mixed), gradient_at, lr, first_step=6, local_steps=3)
    x1 = [mixed[i] - lr * gradients[6][i] + mu * (x0[i] - x_minus[i]) for i in range(2)]
    x2 = [x1[i] - lr * gradients[7][i] + mu * (x1[i] - x0[i]) for i in range(2)]
    x3 = [x2[i] - lr * gradients[8][i] + mu * (x2[i] - x1[i]) for i in range(2)]
    assert seen == [6, 7, 8] and losses == [6.0, 7.0, 8.0]
    _close(state.current, x3)
    _close(state.memory, x2)
