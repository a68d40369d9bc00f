"""D-SGD in adapt-then-combine form: each agent steps its own point, then aggregates its
neighbours' stepped points. The vectorized engine is checked against a loop written from the
equations (a robust rule choosing among stepped points), and against QG-DSGDm, which it
equals without momentum."""

from __future__ import annotations

import numpy as np
import torch
from conftest import tiny_scenario

from decentral_bench.engines.reference_ahead import stacked_gradients
from decentral_bench.engines.vectorized import VectorizedEngine
from decentral_bench.experiment.agent import AgentSetup
from decentral_bench.experiment.plan import MethodPlan
from decentral_bench.experiment.training import from_numpy, to_numpy

ROUNDS = 4


def _plan(method: dict[str, object], agents: int = 5) -> MethodPlan:
    scenario = tiny_scenario(topology={"kind": "ring", "agents": agents},
                             training={"rounds": ROUNDS, "batch_size": 16, "lr": 0.1,
                                       "seed": 3},
                             methods=[{"name": "M", **method}])
    return MethodPlan.of(scenario, "M")


def _median_atc_by_hand(plan: MethodPlan, momentum: float) -> dict[int, list[np.ndarray]]:
    """x_{k+1}^j = median_{l ∈ {j−1, j, j+1}} (x_k^l − α u_k^l), u the heavy-ball velocity
    v_k = μ v_{k−1} + g(x_k): a loop over the ring, one coordinate-wise median of three."""
    setups = [AgentSetup.build(plan, agent) for agent in range(plan.agents)]
    device = setups[0].device
    x = [torch.stack([layer] * plan.agents)
         for layer in from_numpy(plan.initial_parameters, device)]
    velocity = [torch.zeros_like(layer) for layer in x]

    def stepped(step: int) -> list[torch.Tensor]:
        nonlocal velocity
        gradients = stacked_gradients(setups, plan, x, step)
        velocity = [momentum * v + g for v, g in zip(velocity, gradients, strict=True)]
        return [p - plan.lr_at(max(step, 1)) * v for p, v in zip(x, velocity, strict=True)]

    published = stepped(0)
    for step in range(1, ROUNDS + 1):  # round `step` aggregates what was published before
        x = [torch.stack([layer[[(j - 1) % plan.agents, j, (j + 1) % plan.agents]]
                          .median(dim=0).values for j in range(plan.agents)])
             for layer in published]
        published = stepped(step)
    return {agent: to_numpy([layer[agent] for layer in x]) for agent in range(plan.agents)}


def test_the_median_chooses_among_the_stepped_points() -> None:
    plan = _plan({"algorithm": "dsgd_atc", "momentum": 0.5, "aggregation": "median"})
    final = VectorizedEngine().run(plan, lambda report: None, lambda r, text: None)
    want = _median_atc_by_hand(plan, 0.5)
    for agent, layers in want.items():
        for got, expected in zip(final[agent], layers, strict=True):
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_without_momentum_it_is_qg_dsgdm_without_momentum() -> None:
    ours = _plan({"algorithm": "dsgd_atc"})
    theirs = _plan({"algorithm": "qg_dsgdm", "momentum": 0.0, "variant": "polyak"})
    engine = VectorizedEngine()
    got = engine.run(ours, lambda report: None, lambda r, text: None)
    want = engine.run(theirs, lambda report: None, lambda r, text: None)
    for agent in want:
        for a, b in zip(got[agent], want[agent], strict=True):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
