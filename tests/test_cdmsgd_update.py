"""The CDMSGD update rules equal their equations written out in NumPy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from strategies.cdmsgd import consensus_step, nesterov_lookahead, published_point

RNG = np.random.default_rng(11)
SHAPES = [(6, 4), (4,)]


def _params() -> list[np.ndarray]:
    return [RNG.normal(size=shape).astype(np.float32) for shape in SHAPES]


def _torch(params: list[np.ndarray]) -> list[torch.Tensor]:
    return [torch.as_tensor(p) for p in params]


def _close(got: list[torch.Tensor], want: list[np.ndarray]) -> None:
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g.numpy(), w, rtol=0, atol=1e-6)


@pytest.mark.parametrize("first_step", [True, False])
def test_polyak(first_step: bool) -> None:
    neighbours, weights = [_params() for _ in range(3)], [0.2, 0.5, 0.3]
    grad, current = _params(), _params()
    previous = current if first_step else _params()  # x_{-1} = x_0 on the first step
    lr, mu = 0.05, 0.9
    want = [sum(w * x[i] for w, x in zip(weights, neighbours, strict=True)) - lr * grad[i]
            + mu * (current[i] - previous[i]) for i in range(2)]
    got = consensus_step("polyak", [_torch(x) for x in neighbours], weights, _torch(grad), lr, mu,
                         _torch(current), _torch(previous))
    _close(got, want)
    if first_step:  # no momentum term yet: the first step is a CDSGD step
        _close(got, [sum(w * x[i] for w, x in zip(weights, neighbours, strict=True))
                     - lr * grad[i] for i in range(2)])


@pytest.mark.parametrize("first_step", [True, False])
def test_nesterov(first_step: bool) -> None:
    current = _params()
    previous = current if first_step else _params()
    mu, lr = 0.9, 0.03
    y = [current[i] + mu * (current[i] - previous[i]) for i in range(2)]
    _close(nesterov_lookahead(_torch(current), _torch(previous), mu), y)
    _close(published_point("nesterov", _torch(current), _torch(previous), mu), y)
    neighbour_points, weights = [_params() for _ in range(2)] + [y], [0.25, 0.25, 0.5]
    grad = _params()  # g_j(y_k^j)
    want = [sum(w * p[i] for w, p in zip(weights, neighbour_points, strict=True)) - lr * grad[i]
            for i in range(2)]
    got = consensus_step("nesterov", [_torch(p) for p in neighbour_points], weights, _torch(grad),
                         lr, mu, _torch(current), _torch(previous))
    _close(got, want)


def test_cdsgd_and_polyak_publish_x() -> None:
    current, previous = _params(), _params()
    for rule in ("cdsgd", "polyak"):
        _close(published_point(rule, _torch(current), _torch(previous), 0.9), current)


def test_zero_momentum_reduces_to_cdsgd() -> None:
    neighbours, weights, grad = [_params() for _ in range(2)], [0.5, 0.5], _params()
    current, previous = _params(), _params()
    args = ([_torch(x) for x in neighbours], weights, _torch(grad), 0.1)
    cdsgd = consensus_step("cdsgd", *args, 0.0, _torch(current), _torch(previous))
    for rule in ("polyak", "nesterov"):
        got = consensus_step(rule, *args, 0.0, _torch(current), _torch(previous))
        _close(got, [t.numpy() for t in cdsgd])
