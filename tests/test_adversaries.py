"""Adversaries in a run: who attacks, that a defence holds where it should and plain mixing
does not, that every figure is over the honest agents, that label flipping poisons only the
attacker's minibatches, and how MLflow names who attacked how."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import observed_run, tiny_scenario

from decentral_bench.engines.base import RoundReport
from decentral_bench.engines.observer import RoundObserver
from decentral_bench.engines.vectorized import VectorizedEngine
from decentral_bench.engines.vectorized.batches import AgentBatches
from decentral_bench.experiment.agent import AgentSetup
from decentral_bench.experiment.metrics import consensus_distance
from decentral_bench.experiment.plan import MethodPlan
from decentral_bench.experiment.sweep import RunSpec, expand
from decentral_bench.tracking.notes import child_note
from decentral_bench.tracking.params import method_params

ROUNDS = 40


def _plan(rounds: int = ROUNDS, **settings: object) -> MethodPlan:
    base: dict[str, object] = {
        "topology": {"kind": "complete", "agents": 8},
        "training": {"rounds": rounds, "batch_size": 16, "lr": 0.1, "seed": 3,
                     "eval_every": rounds},
        "methods": [{"name": "M", "algorithm": "cdsgd"}]}
    return MethodPlan.of(tiny_scenario(**{**base, **settings}), "M")


def _final(plan: MethodPlan) -> dict[str, float]:
    _, rounds, _ = observed_run(plan, VectorizedEngine())
    return rounds[plan.rounds]


def test_trimmed_mean_tolerates_a_sign_flipper_that_breaks_plain_mixing() -> None:
    """Complete graph of 8, one sign-flipping attacker: the trimmed mean with b = 1 ends near
    the clean run (accuracy and Ξ² of the honest agents); plain averaging is dragged to the
    flipped point and ends at chance."""
    attacker = {"agents": [5], "attack": "sign_flip"}
    clean = _final(_plan())
    plain = _final(_plan(adversaries=attacker))
    trimmed = _final(_plan(adversaries=attacker, methods=[
        {"name": "M", "algorithm": "cdsgd", "aggregation": {"kind": "trimmed_mean", "b": 1}}]))
    assert clean["test_accuracy_mean"] > 0.7
    assert trimmed["test_accuracy_mean"] > clean["test_accuracy_mean"] - 0.08
    assert trimmed["average_model_test_accuracy"] > clean["average_model_test_accuracy"] - 0.08
    assert 0.3 < trimmed["consensus_distance"] / clean["consensus_distance"] < 3.0
    assert plain["test_accuracy_mean"] < 0.2
    assert trimmed["attackers"] == plain["attackers"] == 1.0
    assert trimmed["agents_reporting"] == 7.0 and "attackers" not in clean


def test_attackers_are_drawn_from_the_seed() -> None:
    draw = _plan(adversaries={"count": 3, "attack": "ipm"}).attackers
    assert len(draw) == 3 and draw <= set(range(8))
    assert _plan(adversaries={"count": 3, "attack": "ipm"}).attackers == draw
    seeds = {_plan(adversaries={"count": 3, "seed": seed, "attack": "ipm"}).attackers
             for seed in range(6)}
    assert len(seeds) > 1
    assert len(_plan(adversaries={"fraction": 0.3, "attack": "ipm"}).attackers) == 2  # ⌊2.4⌋
    assert _plan(adversaries={"count": 0, "attack": "ipm"}).adversaries is None
    single = _plan(adversaries={"agents": [0], "attack": "ipm"},
                   methods=[{"name": "M", "algorithm": "centralized_sgd"}])
    assert single.adversaries is None  # the one worker of centralized SGD is never attacked


def test_the_observer_measures_the_honest_agents_only() -> None:
    plan = _plan(rounds=2, adversaries={"agents": [1], "attack": "sign_flip"})  # no evaluation
    points = [torch.tensor([[0.0, 0.0], [50.0, -50.0], [1.0, 0.0], [0.0, 1.0]])]
    honest = [points[0][[0, 2, 3]]]
    figures = {0: 0.9, 1: 0.1, 2: 0.8, 3: 0.7}
    rounds: dict[int, dict[str, float]] = {}
    RoundObserver(plan, rounds.__setitem__).observe(RoundReport(
        server_round=1, agents=[0, 1, 2, 3], points=points,
        agent_metrics={a: {"test_accuracy": v, "train_accuracy": v} for a, v in
                       figures.items()}))
    measured = rounds[1]
    assert measured["consensus_distance"] == pytest.approx(consensus_distance(honest))
    assert measured["test_accuracy_mean"] == pytest.approx(0.8)
    assert measured["test_accuracy_min"] == pytest.approx(0.7)
    assert measured["agents_reporting"] == 3.0 and measured["attackers"] == 1.0


def test_label_flipping_poisons_the_attackers_minibatches_from_its_round() -> None:
    """Agent 2 flips from round 3 (CDSGD: minibatch step 2 on); the ClientApp's data layer
    and the vectorized engine's agree, and no other agent's labels change."""
    plan = _plan(adversaries={"agents": [2], "attack": "label_flip", "from_round": 3})
    batches = AgentBatches(plan, torch.device("cpu"))
    for agent in (1, 2):
        setup = AgentSetup.build(plan, agent)
        for step in range(4):
            _, labels = setup.minibatch(step)
            stacked = batches.minibatches([agent], [step]).labels
            true = setup.labels[setup.minibatch_index(step)]
            flipped = agent == 2 and step >= 2
            assert torch.equal(labels, 9 - true if flipped else true), (agent, step)
            assert torch.equal(stacked[0], labels)


def test_mlflow_says_who_attacked_how() -> None:
    plan = _plan(adversaries={"agents": [3, 6], "attack": {"kind": "dissensus", "epsilon": 2.0},
                              "from_round": 5})
    params = method_params(plan, "vectorized")
    assert params["adversaries.attackers"] == "[3, 6]"
    assert params["adversaries.attack.kind"] == "dissensus"
    assert params["adversaries.attack.epsilon"] == "2"
    assert params["adversaries.from_round"] == "5"
    assert params["method.aggregation.kind"] == "mean"
    note = child_note(plan, RunSpec(plan.scenario, "M", (), 3))
    assert "agents 3 and 6: dissensus (ε 2) from round 5" in note
    assert "over the 6 honest agents" in note
    alie = _plan(adversaries={"count": 1, "attack": "alie"})
    assert float(method_params(alie, "vectorized")["adversaries.attack.z"]) == \
        pytest.approx(-0.1800, abs=1e-4)  # Φ⁻¹(3/7): n = 8, f = 1


def test_validate_names_the_agent_whose_degree_is_too_small(tmp_path: Path) -> None:
    path = tmp_path / "ring.yaml"
    path.write_text("name: x\ntopology: {kind: ring, agents: 6}\ntraining: {rounds: 2}\n"
                    "methods: [{name: a, algorithm: cdsgd, aggregation: trimmed_mean}]\n")
    done = subprocess.run([sys.executable, "-m", "decentral_bench", "validate", str(path)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert (f"{path}: methods[0].aggregation: trimmed_mean with b = 1 needs every agent's "
            "degree ≥ 2b + 1 = 3, but agent 0 has degree 2") in done.stderr.replace("\n", " ")
    assert "Traceback" not in done.stderr


def test_an_attacker_mixes_its_honest_message_not_what_it_publishes() -> None:
    """Two agents, π = 1/2 everywhere, a vanishing step: agent 0 publishes −4 × its point.
    Round 1 mixes x_0 everywhere; round 2 agent 1 mixes (−4 x_0 + x_0)/2 = −1.5 x_0, while
    agent 0 mixes its honest x_0 with x_0 and publishes −4 x_0 again (were it to mix what it
    published, it would publish −4 × (−1.5 x_0) = 6 x_0)."""
    plan = _plan(rounds=2, topology={"kind": "complete", "agents": 2},
                 training={"rounds": 2, "batch_size": 16, "lr": 1e-7, "seed": 3},
                 adversaries={"agents": [0], "attack": {"kind": "sign_flip", "scale": 4.0}})
    final, _, _ = observed_run(plan, VectorizedEngine())
    for x0, attacker, honest in zip(plan.initial_parameters, final[0], final[1], strict=True):
        np.testing.assert_allclose(attacker, -4.0 * x0, rtol=0, atol=1e-5)
        np.testing.assert_allclose(honest, -1.5 * x0, rtol=0, atol=1e-5)


def test_a_sweep_over_the_attackers_runs_the_clean_case_once_per_method() -> None:
    """count 0 reads no attack: of 3 counts × 2 attacks × 2 methods, the runs without
    attackers are one per method (labelled by their count alone), the others one each."""
    scenario = tiny_scenario(
        topology={"kind": "complete", "agents": 5}, adversaries={"count": 1, "attack": "ipm"},
        methods=[{"name": "A", "algorithm": "cdsgd"},
                 {"name": "B", "algorithm": "cdsgd", "aggregation": "median"}],
        sweep={"adversaries.count": [0, 1, 2], "adversaries.attack": ["ipm", "sign_flip"]})
    labels = [spec.label for spec in expand(scenario)]
    assert labels == ["A count=0", "B count=0",
                      "A count=1 attack=ipm", "B count=1 attack=ipm",
                      "A count=1 attack=sign_flip", "B count=1 attack=sign_flip",
                      "A count=2 attack=ipm", "B count=2 attack=ipm",
                      "A count=2 attack=sign_flip", "B count=2 attack=sign_flip"]
