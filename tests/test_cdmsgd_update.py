"""The CDMSGD update rules and the gossip round equal their equations written out in NumPy."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from strategies.cdmsgd import LocalVelocity, Nesterov, Polyak, heavy_ball, nesterov_lookahead
from strategies.cdsgd import CDSGD, mix
from strategies.gossip import gossip_round

RNG = np.random.default_rng(11)
SHAPES = [(6, 4), (4,)]


def _params() -> list[np.ndarray]:
    return [RNG.normal(size=shape).astype(np.float32) for shape in SHAPES]


def _torch(params: list[np.ndarray]) -> list[torch.Tensor]:
    return [torch.as_tensor(p) for p in params]


def _close(got: list[torch.Tensor] | list[np.ndarray], want: list[np.ndarray]) -> None:
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(np.asarray(g), w, rtol=0, atol=1e-6)


def _mixed(weights: list[float], points: list[list[np.ndarray]]) -> list[np.ndarray]:
    return [sum(w * x[i] for w, x in zip(weights, points, strict=True)) for i in range(2)]


def _oracle(gradient: list[np.ndarray], at: list[list[np.ndarray]] | None = None) -> Any:
    """A gradient oracle that returns `gradient` and notes where it was asked."""
    def gradient_at(point: list[torch.Tensor], step: int) -> tuple[list[torch.Tensor], float]:
        if at is not None:
            at.append([p.numpy().copy() for p in point])
        return _torch(gradient), 0.0
    return gradient_at


@pytest.mark.parametrize("first_step", [True, False])
def test_polyak(first_step: bool) -> None:
    neighbours, weights = [_params() for _ in range(3)], [0.2, 0.5, 0.3]
    grad, current = _params(), _params()
    previous = current if first_step else _params()  # x_{-1} = x_0 on the first step
    lr, mu = 0.05, 0.9
    want = [_mixed(weights, neighbours)[i] - lr * grad[i] + mu * (current[i] - previous[i])
            for i in range(2)]
    torch_neighbours = [_torch(x) for x in neighbours]
    _close(heavy_ball(mix(torch_neighbours, weights), _torch(grad), lr, mu, _torch(current),
                      _torch(previous)), want)
    rule = Polyak(mu)
    state = rule.restore(_torch(current), {} if first_step else {"previous": _torch(previous)})
    at: list[list[np.ndarray]] = []
    advanced, _ = rule.advance(state, mix(torch_neighbours, weights), 0.3, _oracle(grad, at),
                               lr, 0)
    _close(advanced["x"], want)
    _close(at[0], current)  # the gradient is taken at x_k
    _close(rule.kept(advanced)["previous"], current)  # x_k is kept as the next x_{k−1}
    if first_step:  # no momentum term yet: the first step is a CDSGD step
        _close(advanced["x"], [_mixed(weights, neighbours)[i] - lr * grad[i]
                               for i in range(2)])


@pytest.mark.parametrize("first_step", [True, False])
def test_nesterov(first_step: bool) -> None:
    current = _params()
    previous = current if first_step else _params()
    mu, lr = 0.9, 0.03
    y = [current[i] + mu * (current[i] - previous[i]) for i in range(2)]
    rule = Nesterov(mu)
    _close(nesterov_lookahead(_torch(current), _torch(previous), mu), y)
    neighbour_points, weights = [_params() for _ in range(2)] + [y], [0.25, 0.25, 0.5]
    grad = _params()  # g_j(y_k^j)
    want = [_mixed(weights, neighbour_points)[i] - lr * grad[i] for i in range(2)]
    state = rule.restore(_torch(y), {} if first_step else {"x": _torch(current)})
    _close(rule.message(state), y)  # the look-ahead is what j publishes
    at: list[list[np.ndarray]] = []
    advanced, _ = rule.advance(state, mix([_torch(p) for p in neighbour_points], weights),
                               0.5, _oracle(grad, at), lr, 0)
    _close(at[0], y)  # the gradient is taken at the look-ahead
    _close(advanced["x"], want)
    _close(rule.kept(advanced)["x"], want)  # Nesterov keeps x_{k+1}; the message brings y back
    x_k = y if first_step else current
    _close(rule.message(advanced), [want[i] + mu * (want[i] - x_k[i]) for i in range(2)])


def test_local_velocity_is_the_authors_form() -> None:
    """v_{k+1} = μ v_k − α g; Polyak x_{k+1} = mixed + v_{k+1}; Nesterov mixed + μ v_{k+1} − α g."""
    mixed, grad, x, velocity = _params(), _params(), _params(), _params()
    mu, lr = 0.8, 0.1
    v_next = [mu * velocity[i] - lr * grad[i] for i in range(2)]
    for nesterov, step in ((False, v_next), (True, [mu * v_next[i] - lr * grad[i]
                                                    for i in range(2)])):
        rule = LocalVelocity(mu, nesterov=nesterov)
        state = rule.restore(_torch(x), {"velocity": _torch(velocity)})
        advanced, _ = rule.advance(state, _torch(mixed), 0.5, _oracle(grad), lr, 0)
        _close(advanced["x"], [mixed[i] + step[i] for i in range(2)])
        _close(rule.kept(advanced)["velocity"], v_next)
    fresh = LocalVelocity(mu, nesterov=False).restore(_torch(x), {})
    _close(fresh["velocity"], [np.zeros(shape, dtype=np.float32) for shape in SHAPES])


def test_cdsgd_and_polyak_publish_x() -> None:
    x = _torch(_params())
    for rule in (CDSGD(), Polyak(0.9)):
        _close(rule.message(rule.start(x, _oracle(_params()), 0.1)), [t.numpy() for t in x])
    assert CDSGD().kept({"x": x}) == {}


def test_zero_momentum_reduces_to_cdsgd() -> None:
    mixed, grad, current = _torch(_params()), _params(), _torch(_params())
    cdsgd, _ = CDSGD().advance({"x": current}, mixed, 0.5, _oracle(grad), 0.1, 0)
    for rule, state in ((Polyak(0.0), {"x": current, "previous": _torch(_params())}),
                        (Nesterov(0.0), {"x": _torch(_params()), "lookahead": current})):
        got, _ = rule.advance(state, mixed, 0.5, _oracle(grad), 0.1, 0)
        _close(got["x"], [t.numpy() for t in cdsgd["x"]])


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
    state, losses = gossip_round(rule, rule.restore(_torch(x0), {"previous": _torch(x_minus)}),
                                 _torch(mixed), 0.5, gradient_at, lr, range(6, 9))
    x1 = [mixed[i] - lr * gradients[6][i] + mu * (x0[i] - x_minus[i]) for i in range(2)]
    x2 = [x1[i] - lr * gradients[7][i] + mu * (x1[i] - x0[i]) for i in range(2)]
    x3 = [x2[i] - lr * gradients[8][i] + mu * (x2[i] - x1[i]) for i in range(2)]
    assert seen == [6, 7, 8] and losses == [6.0, 7.0, 8.0]
    _close(state["x"], x3)
    _close(state["previous"], x2)
