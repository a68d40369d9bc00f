"""The CDSGD update rule equals eq. 5 written out in NumPy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from strategies.cdsgd import cdsgd_update, mix, sgd_step


def _random_parameters(rng: np.random.Generator) -> list[np.ndarray]:
    return [rng.normal(size=(7, 5)).astype(np.float32), rng.normal(size=5).astype(np.float32)]


def test_cdsgd_update_equals_equation_5() -> None:
    rng = np.random.default_rng(0)
    neighbours = [_random_parameters(rng) for _ in range(3)]
    weights = [0.5, 0.3, 0.2]
    grad = _random_parameters(rng)
    lr = 0.07
    expected = [sum(w * x[i] for w, x in zip(weights, neighbours, strict=True)) - lr * grad[i]
                for i in range(2)]
    result = cdsgd_update([[torch.as_tensor(a) for a in x] for x in neighbours], weights,
                          [torch.as_tensor(g) for g in grad], lr)
    for got, want in zip(result, expected, strict=True):
        np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-6)


def test_update_is_pure() -> None:
    rng = np.random.default_rng(1)
    neighbours = [[torch.as_tensor(a) for a in _random_parameters(rng)] for _ in range(2)]
    before = [[t.clone() for t in x] for x in neighbours]
    mix(neighbours, [0.5, 0.5])
    cdsgd_update(neighbours, [0.5, 0.5], neighbours[0], 0.1)
    for x, y in zip(neighbours, before, strict=True):
        for a, b in zip(x, y, strict=True):
            assert torch.equal(a, b)


def test_single_agent_is_plain_sgd() -> None:
    rng = np.random.default_rng(2)
    x = [torch.as_tensor(a) for a in _random_parameters(rng)]
    g = [torch.as_tensor(a) for a in _random_parameters(rng)]
    for got, want in zip(cdsgd_update([x], [1.0], g, 0.3), sgd_step(x, g, 0.3), strict=True):
        assert torch.equal(got, want)


def test_mix_needs_one_weight_per_neighbour() -> None:
    x = [torch.zeros(2)]
    with pytest.raises(ValueError, match="one weight per neighbour"):
        mix([x, x], [1.0])
