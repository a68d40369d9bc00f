"""The papers' settings: budgets in epochs, the authors' CNN with dropout, training
accuracy on common data, and the momentum form of the authors' code."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import observed_run, tiny_scenario

from decentral_bench.engines.vectorized import VectorizedEngine
from decentral_bench.experiment.agent import AgentSetup
from decentral_bench.experiment.models import build_model, parameter_count
from decentral_bench.experiment.plan import MethodPlan
from decentral_bench.scenario import ModelConfig, ScenarioError, load, parse

METHODS = [{"name": "CDSGD", "algorithm": "cdsgd", "local_steps": 2},
           {"name": "FedAvg", "algorithm": "fedavg", "local_epochs": 2},
           {"name": "SGD", "algorithm": "centralized_sgd"}]


def test_an_epoch_budget_gives_every_method_the_same_passes_over_its_data() -> None:
    """Digits' 1437 training samples over 4 agents (359–360 each), batches of 16: a gossip
    round with 2 local steps is 32/359.25 of an epoch, so 3 epochs are ⌈33.7⌉ = 34 rounds;
    FedAvg's round is 2 epochs (2 rounds); centralized SGD's round is 16/1437 (270)."""
    scenario = tiny_scenario(methods=METHODS, training={"epochs": 3, "batch_size": 16})
    rounds = {name: MethodPlan.of(scenario, name).rounds for name in ("CDSGD", "FedAvg", "SGD")}
    mean = 1437 / 4
    assert rounds == {"CDSGD": math.ceil(3 / (32 / mean)), "FedAvg": 2,
                      "SGD": math.ceil(3 / (16 / 1437))}
    for name in rounds:
        plan = MethodPlan.of(scenario, name)
        assert 3 <= plan.epochs < 3 + plan.epochs_per_round


def test_a_method_may_override_the_budget_and_overrides_replace_the_other_form(
        tmp_path) -> None:
    scenario = tiny_scenario(training={"epochs": 2, "batch_size": 16},
                             methods=[{"name": "A", "algorithm": "cdsgd", "rounds": 7},
                                      {"name": "B", "algorithm": "cdsgd", "epochs": 0.5}])
    assert MethodPlan.of(scenario, "A").rounds == 7
    assert MethodPlan.of(scenario, "B").rounds == math.ceil(0.5 * (1437 / 4) / 16)  # 4 agents
    path = tmp_path / "s.yaml"
    path.write_text("name: s\ntraining: {rounds: 40}\nmethods: [{name: a, algorithm: cdsgd}]\n")
    switched = load(path, {"training.epochs": 2})
    assert (switched.training.rounds, switched.training.epochs) == (None, 2)
    with pytest.raises(ScenarioError, match="give rounds or epochs, not both"):
        parse({"name": "x", "methods": [{"name": "a", "algorithm": "cdsgd", "rounds": 3,
                                         "epochs": 1}]})


def test_the_authors_cnn_drops_a_quarter_after_each_pooling_layer() -> None:
    plain = build_model(ModelConfig(name="cnn_paper"), (1, 28, 28), 10, 0)
    dropped = build_model(ModelConfig(name="cnn_paper", dropout=0.25), (1, 28, 28), 10, 0)
    assert parameter_count(plain) == parameter_count(dropped)  # dropout has no parameters
    layers = [type(m).__name__ for m in dropped.modules()
              if isinstance(m, torch.nn.MaxPool2d | torch.nn.Dropout)]
    assert layers == ["MaxPool2d", "Dropout", "MaxPool2d", "Dropout"]
    assert all(m.p == 0.25 for m in dropped.modules() if isinstance(m, torch.nn.Dropout))
    with pytest.raises(ScenarioError, match="'dropout' applies to model 'cnn_paper' only"):
        parse({"name": "x", "model": {"name": "mlp", "dropout": 0.25},
               "methods": [{"name": "a", "algorithm": "cdsgd"}]})


def test_dropout_masks_repeat_under_the_seed_and_evaluation_sees_no_dropout() -> None:
    scenario = tiny_scenario(dataset={"name": "digits", "partition": "iid"},
                             model={"name": "cnn_paper", "dropout": 0.5},
                             training={"rounds": 1, "batch_size": 8})
    setup = AgentSetup.build(MethodPlan.of(scenario, "CDSGD"), 1)
    point = [torch.from_numpy(a) for a in setup.plan.initial_parameters]
    first, again = setup.gradient_at(point, 3), setup.gradient_at(point, 3)
    other = setup.gradient_at(point, 4)
    assert first[1] == again[1] and all(torch.equal(a, b)
                                        for a, b in zip(first[0], again[0], strict=True))
    assert setup.gradient_at(point, 3)[1] != other[1]  # another step, other masks and batch
    assert setup.evaluate(point) == setup.evaluate(point)  # no masks when evaluating


def test_training_accuracy_is_measured_on_common_data_unless_asked_otherwise() -> None:
    common = MethodPlan.of(tiny_scenario(training={"rounds": 1, "eval_samples": 300}), "CDSGD")
    own = MethodPlan.of(tiny_scenario(training={"rounds": 1, "eval_samples": 300,
                                                "train_evaluation": "own"}), "CDSGD")
    shared = [AgentSetup.build(common, j).train_evaluation[1] for j in range(4)]
    assert all(torch.equal(labels, shared[0]) for labels in shared) and len(shared[0]) == 300
    dataset = common.dataset
    parts = own.partitions
    for j in range(2):
        features, _ = AgentSetup.build(own, j).train_evaluation
        assert len(features) == 300
        # Every sample it is measured on is one of its own.
        own_features = dataset.train_x[torch.as_tensor(parts[j])].reshape(len(parts[j]), -1)
        assert all(bool((own_features == row).all(dim=1).any())
                   for row in features.reshape(300, -1)[:20])


def test_the_two_momentum_forms_differ_and_each_repeats() -> None:
    """momentum_buffer: local (the authors' code) against the paper's equations: different
    iterates from the same start, both deterministic."""
    def run(buffer: str) -> list[np.ndarray]:
        scenario = tiny_scenario(methods=[{"name": "M", "algorithm": "cdmsgd", "variant": "polyak",
                                           "momentum_buffer": buffer}],
                                 training={"rounds": 6, "batch_size": 16, "lr": 0.1})
        final, _, _ = observed_run(MethodPlan.of(scenario, "M"), VectorizedEngine())
        return final[0]

    local, iterates = run("local"), run("iterates")
    assert not np.allclose(local[0], iterates[0])
    for a, b in zip(run("local"), local, strict=True):
        np.testing.assert_array_equal(a, b)


def test_evaluation_every_so_many_epochs_lines_methods_up() -> None:
    """eval_every_epochs: 1 measures FedAvg (E = 2) every round, and a gossip method each
    time its agents pass another epoch, whatever its round length."""
    scenario = tiny_scenario(methods=METHODS, training={"epochs": 4, "batch_size": 16,
                                                        "eval_every_epochs": 1})
    fedavg, gossip = MethodPlan.of(scenario, "FedAvg"), MethodPlan.of(scenario, "CDSGD")
    assert [k for k in range(1, fedavg.rounds + 1) if fedavg.evaluates(k)] == [1, 2]
    measured = [k for k in range(1, gossip.rounds + 1) if gossip.evaluates(k)]
    epochs_at = [k * gossip.epochs_per_round for k in measured]
    assert len(measured) == 4 and measured[-1] == gossip.rounds
    assert all(e >= n + 1 and e - gossip.epochs_per_round < n + 1
               for n, e in enumerate(epochs_at[:3]))
