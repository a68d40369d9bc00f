"""A Flower-simulated CDSGD run equals the matrix-form recursion X_{k+1} = Π X_k − α G(X_k)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import tiny_scenario

from decentral_bench.plan import MethodPlan
from decentral_bench.reference import reference_gossip
from decentral_bench.server_app import initial_arrays
from decentral_bench.simulation import simulate

pytestmark = pytest.mark.slow


def test_flower_cdsgd_equals_matrix_form_on_a_4_ring() -> None:
    plan = MethodPlan.of(tiny_scenario(), "CDSGD")
    rounds: list[int] = []
    final = simulate(plan, sink=lambda server_round, _: rounds.append(server_round))
    expected = reference_gossip(plan, initial_arrays(plan).to_numpy_ndarrays())
    assert rounds == [1, 2, 3, 4, 5]
    assert sorted(final) == [0, 1, 2, 3]
    start = initial_arrays(plan).to_numpy_ndarrays()
    for agent in range(4):
        for got, want, first in zip(final[agent], expected[agent], start, strict=True):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
            assert not np.allclose(got, first)  # training moved every layer
    # Agents hold different data, so after 5 rounds on a ring they disagree.
    assert not np.allclose(final[0][0], final[2][0])
