"""Both engines against an independent NumPy reference (`tests/numpy_reference.py`) on the
linear model: CDSGD, CDMSGD in every form and FedAvg end where the papers' equations,
written out in float64 NumPy with their own data slicing, say."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import tiny_scenario
from numpy_reference import Digits, Setting, fedavg, gossip, gradient, iid_parts, ring_metropolis

from decentral_bench.engines.base import FinalParameters
from decentral_bench.engines.flower.simulation import FlowerEngine
from decentral_bench.engines.vectorized import VectorizedEngine
from decentral_bench.experiment.plan import MethodPlan

TOLERANCE = 1e-10  # float64 on both sides: only the order of the sums differs

SETTING = Setting(agents=4, rounds=4, batch_size=16, lr=0.2, seed=3)
LOCAL_STEPS = Setting(agents=5, rounds=3, batch_size=16, lr=0.1, seed=1, local_steps=2,
                      weight_decay=1e-3, diminishing=0.75)

GOSSIP = {
    "cdsgd": ({"algorithm": "cdsgd"}, "cdsgd", 0.0),
    "polyak": ({"algorithm": "cdmsgd", "variant": "polyak", "momentum": 0.8,
                "momentum_buffer": "iterates"}, "polyak", 0.8),
    "nesterov": ({"algorithm": "cdmsgd", "variant": "nesterov", "momentum": 0.8,
                  "momentum_buffer": "iterates"}, "nesterov", 0.8),
    "polyak-local": ({"algorithm": "cdmsgd", "variant": "polyak", "momentum": 0.8,
                      "momentum_buffer": "local"}, "polyak-local", 0.8),
    "nesterov-local": ({"algorithm": "cdmsgd", "variant": "nesterov", "momentum": 0.8,
                        "momentum_buffer": "local"}, "nesterov-local", 0.8),
}


def plan_for(setting: Setting, method: dict) -> MethodPlan:
    """The scenario the engines run for `setting`: digits, IID, the linear model, a ring."""
    training: dict = {"rounds": setting.rounds, "batch_size": setting.batch_size,
                      "lr": setting.lr, "seed": setting.seed,
                      "local_steps": setting.local_steps, "weight_decay": setting.weight_decay}
    if setting.diminishing is not None:
        training.update(lr_schedule="diminishing", epsilon=setting.diminishing)
    if method["algorithm"] == "fedavg":
        training.pop("local_steps")
    scenario = tiny_scenario(
        dataset={"name": "digits", "partition": "iid", "test_fraction": setting.test_fraction},
        model={"name": "mlp", "hidden": []},
        topology={"kind": "ring", "agents": setting.agents},
        training=training, resources={"dtype": "float64"},
        methods=[{"name": "M", **method}])
    return MethodPlan.of(scenario, "M")


def assert_agents_equal(final: FinalParameters, expected: list[tuple[np.ndarray, ...]]) -> None:
    assert sorted(final) == list(range(len(expected)))
    for agent, (weight, bias) in enumerate(expected):
        got_weight, got_bias = final[agent]
        assert got_weight.dtype == np.float64
        np.testing.assert_allclose(got_weight, weight, rtol=0, atol=TOLERANCE)
        np.testing.assert_allclose(got_bias, bias, rtol=0, atol=TOLERANCE)


# ---------------------------------------------------------------- the reference's own parts


def test_the_gradient_is_the_derivative_of_the_loss() -> None:
    """Central differences of the mean softmax cross-entropy (plus λ/2 ||x||²)."""
    rng = np.random.default_rng(0)
    features, labels = rng.normal(size=(7, 5)), rng.integers(0, 3, 7)
    point = (rng.normal(size=(3, 5)), rng.normal(size=3))

    def loss(weight: np.ndarray, bias: np.ndarray) -> float:
        logits = features @ weight.T + bias
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        return float(-log_p[np.arange(7), labels].mean()
                     + 0.05 * ((weight ** 2).sum() + (bias ** 2).sum()))

    analytic = gradient(point, features, labels, weight_decay=0.1)
    for part in range(2):
        numeric = np.zeros_like(point[part])
        for index in np.ndindex(point[part].shape):
            moved = [p.copy() for p in point], [p.copy() for p in point]
            moved[0][part][index] += 1e-6
            moved[1][part][index] -= 1e-6
            numeric[index] = (loss(*moved[0]) - loss(*moved[1])) / 2e-6
        np.testing.assert_allclose(analytic[part], numeric, rtol=0, atol=1e-8)


def test_the_reference_slices_the_data_as_the_project_does() -> None:
    """Same partition, same training features, same x_0 as the plan, from the seeds alone."""
    plan = plan_for(SETTING, {"algorithm": "cdsgd"})
    data = Digits.load(SETTING.seed, SETTING.test_fraction)
    parts = iid_parts(len(data.labels), SETTING.agents, SETTING.seed)
    assert [part.tolist() for part in parts] == [part.tolist() for part in plan.partitions]
    np.testing.assert_array_equal(data.features.reshape(-1, 1, 8, 8),
                                  plan.dataset.train_x.numpy())
    np.testing.assert_allclose(plan.topology.mixing_matrix, ring_metropolis(4), rtol=0,
                               atol=1e-15)


# ---------------------------------------------------------------- the engines against it


@pytest.mark.parametrize("form", sorted(GOSSIP))
def test_the_vectorized_engine_equals_the_numpy_reference(form: str) -> None:
    method, rule, momentum = GOSSIP[form]
    setting = LOCAL_STEPS if form in ("polyak", "nesterov-local") else SETTING
    final = VectorizedEngine().run(plan_for(setting, method), lambda _: None, lambda *_: None)
    assert_agents_equal(final, gossip(setting, rule, momentum))


def test_fedavg_on_the_vectorized_engine_equals_the_numpy_reference() -> None:
    setting = Setting(agents=3, rounds=3, batch_size=32, lr=0.05, seed=2)
    plan = plan_for(setting, {"algorithm": "fedavg", "local_epochs": 2})
    final = VectorizedEngine().run(plan, lambda _: None, lambda *_: None)
    assert_agents_equal(final, [fedavg(setting, local_epochs=2)])


def test_sampled_fedavg_equals_the_numpy_reference_over_the_same_agents() -> None:
    """fraction 0.5 of 4 agents: the reference trains the agents the plan samples."""
    setting = Setting(agents=4, rounds=3, batch_size=32, lr=0.05, seed=2)
    plan = plan_for(setting, {"algorithm": "fedavg", "fraction": 0.5})
    everyone = frozenset(range(4))
    sampled = [plan.sampled_agents(k, everyone) for k in range(1, 4)]
    assert all(len(agents) == 2 for agents in sampled) and len(set(map(tuple, sampled))) > 1
    final = VectorizedEngine().run(plan, lambda _: None, lambda *_: None)
    assert_agents_equal(final, [fedavg(setting, local_epochs=1, sampled=sampled)])


@pytest.mark.slow
@pytest.mark.parametrize("form", ["cdsgd", "nesterov", "polyak-local"])
def test_the_flower_engine_equals_the_numpy_reference(form: str) -> None:
    method, rule, momentum = GOSSIP[form]
    setting = LOCAL_STEPS if form == "nesterov" else SETTING
    final = FlowerEngine().run(plan_for(setting, method), lambda _: None, lambda *_: None)
    assert_agents_equal(final, gossip(setting, rule, momentum))


@pytest.mark.slow
def test_sampled_fedavg_on_the_flower_engine_equals_the_numpy_reference() -> None:
    setting = Setting(agents=4, rounds=3, batch_size=32, lr=0.05, seed=2)
    plan = plan_for(setting, {"algorithm": "fedavg", "fraction": 0.5, "local_epochs": 2})
    sampled = [plan.sampled_agents(k, frozenset(range(4))) for k in range(1, 4)]
    final = FlowerEngine().run(plan, lambda _: None, lambda *_: None)
    assert_agents_equal(final, [fedavg(setting, local_epochs=2, sampled=sampled)])
