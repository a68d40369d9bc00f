"""Flower-simulated gossip runs equal their matrix-form recursions (engines.reference)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import tiny_scenario

from decentral_bench.engines.flower.simulation import simulate
from decentral_bench.engines.reference import reference_gossip
from decentral_bench.experiment.plan import MethodPlan

pytestmark = pytest.mark.slow

CASES = {
    "cdsgd": ({"name": "M", "algorithm": "cdsgd"}, {}),
    "cdmsgd-polyak": ({"name": "M", "algorithm": "cdmsgd", "variant": "polyak"}, {}),
    "cdmsgd-nesterov-diminishing-local-steps": (
        {"name": "M", "algorithm": "cdmsgd", "variant": "nesterov", "momentum": 0.8,
         "momentum_buffer": "iterates"},
        {"lr_schedule": "diminishing", "epsilon": 0.75, "local_steps": 2,
         "weight_decay": 1e-3}),
    "gradient-tracking-nesterov-momentum": (
        {"name": "M", "algorithm": "gradient_tracking", "momentum": 0.5,
         "variant": "nesterov"}, {}),
    "qg-dsgdm-diminishing-weight-decay": (
        {"name": "M", "algorithm": "qg_dsgdm"},
        {"lr_schedule": "diminishing", "epsilon": 0.75, "weight_decay": 1e-3}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_flower_run_equals_matrix_form_on_a_4_ring(case: str) -> None:
    method, training = CASES[case]
    scenario = tiny_scenario(methods=[method], training={
        "rounds": 5, "batch_size": 16, "lr": 0.1, "seed": 3, **training})
    plan = MethodPlan.of(scenario, "M")
    rounds: list[int] = []
    final = simulate(plan, report=lambda report: rounds.append(report.server_round))
    start = plan.initial_parameters
    expected = reference_gossip(plan)
    assert rounds == [1, 2, 3, 4, 5]
    assert sorted(final) == [0, 1, 2, 3]
    for agent in range(4):
        for got, want, first in zip(final[agent], expected[agent], start, strict=True):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
            assert not np.allclose(got, first)  # training moved every layer
    # Agents hold different data, so after 5 rounds on a ring they disagree.
    assert not np.allclose(final[0][0], final[2][0])


def test_agents_with_zero_self_weight_still_step_from_their_own_point(tmp_path) -> None:
    """A user's Π may set π_jj = 0 (here K4 with 1/3 on every edge): agent j then mixes
    only its neighbours, yet takes its gradient at its own point (eq. 5), which the router
    sends it with weight 0."""
    matrix = (np.ones((4, 4)) - np.eye(4)) / 3.0
    path = tmp_path / "k4.csv"
    np.savetxt(path, matrix, delimiter=",")
    scenario = tiny_scenario(
        topology={"kind": "complete", "agents": 4, "mixing": "matrix", "matrix_file": str(path)},
        methods=[{"name": "M", "algorithm": "cdmsgd", "variant": "polyak"}],
        training={"rounds": 3, "batch_size": 16, "lr": 0.1, "seed": 3})
    plan = MethodPlan.of(scenario, "M")
    np.testing.assert_array_equal(plan.topology.mixing_matrix, matrix)
    final = simulate(plan, report=lambda _: None)
    expected = reference_gossip(plan)
    for agent in range(4):
        for got, want in zip(final[agent], expected[agent], strict=True):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
