"""Consensus control (Kong et al. 2021): its scenario keys, the step-size phases, the
controller, and what the engines compute with it, against the matrix form."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import observed_run, tiny_scenario

from decentral_bench.engines.flower.simulation import FlowerEngine
from decentral_bench.engines.reference import reference_gossip
from decentral_bench.engines.vectorized import VectorizedEngine
from decentral_bench.engines.vectorized.mixing import Mixer
from decentral_bench.experiment.agent import AgentSetup
from decentral_bench.experiment.metrics import average_parameters, consensus_distance
from decentral_bench.experiment.plan import MethodPlan
from decentral_bench.scenario import ScenarioError, parse
from strategies.cdmsgd import LocalVelocity, Nesterov, Polyak
from strategies.cdsgd import CDSGD
from strategies.consensus_control import ConsensusControl, control_round

STEP = {"rounds": 8, "batch_size": 16, "lr": 0.1, "seed": 3, "lr_schedule": "step",
        "milestones": [0.5, 0.75], "gamma": 0.1, "eval_every": 4}


def _plan(control: dict | None, method: dict | None = None, **overrides: object) -> MethodPlan:
    settings: dict = {"topology": {"kind": "ring", "agents": 6}, "training": STEP}
    settings.update(overrides)
    entry = {"name": "M", "algorithm": "cdsgd", **(method or {})}
    if control is not None:
        entry["consensus_control"] = control
    return MethodPlan.of(tiny_scenario(methods=[entry], **settings), "M")


# ---------------------------------------------------------------- scenario keys

INVALID = [
    ({"mode": "adaptive", "target_ratio": 0.25, "gossip_steps": 3}, "cdsgd", {},
     "methods[0].consensus_control", "'gossip_steps' applies to mode 'fixed' only"),
    ({"mode": "adaptive", "target_ratio": 0.25, "target": 1e-3}, "cdsgd", {},
     "methods[0].consensus_control", "give target_ratio or target, not both"),
    ({"mode": "adaptive"}, "cdsgd", {}, "methods[0].consensus_control",
     "needs target_ratio (e.g. 0.25) or target"),
    ({"mode": "fixed"}, "cdsgd", {}, "methods[0].consensus_control", "needs gossip_steps"),
    ({"mode": "exact", "max_gossip_steps": 5}, "cdsgd", {}, "methods[0].consensus_control",
     "'max_gossip_steps' applies to mode 'adaptive' only"),
    ({"mode": "exact", "phases": [4]}, "cdsgd", {"lr_schedule": "step", "milestones": [0.5]},
     "methods[0].consensus_control.phases", "phase 4 does not exist"),
    ({"mode": "exact", "phases": [2]}, "cdsgd", {}, "methods[0].consensus_control.phases",
     "a schedule without milestones gives 1 phase"),
    ({"mode": "exact"}, "fedavg", {}, "methods[0]",
     "'consensus_control' applies to algorithm 'cdsgd' or 'cdmsgd' only, not 'fedavg'"),
    ({"mode": "exact"}, "centralized_sgd", {}, "methods[0]",
     "not 'centralized_sgd'"),
    ({"mode": "fixed", "gossip_steps": 0}, "cdsgd", {},
     "methods[0].consensus_control.gossip_steps", "greater than or equal to 1"),
    ({"mode": "adaptive", "target_ratio": 1.5}, "cdsgd", {},
     "methods[0].consensus_control.target_ratio", "less than 1"),
]


@pytest.mark.parametrize(("control", "algorithm", "training", "key", "words"), INVALID)
def test_every_inconsistency_is_named(control: dict, algorithm: str, training: dict, key: str,
                                      words: str) -> None:
    data = {"name": "x", "training": training,
            "methods": [{"name": "a", "algorithm": algorithm, "consensus_control": control}]}
    with pytest.raises(ScenarioError) as caught:
        parse(data, "c.yaml")
    assert any(found == key and words in message for found, message in caught.value.problems), \
        caught.value.problems


@pytest.mark.parametrize(("training", "words"), [
    ({"lr_schedule": "step"}, "needs milestones"),
    ({"milestones": [0.5]}, "milestones and gamma go with lr_schedule: step"),
    ({"lr_schedule": "step", "milestones": [0.75, 0.5]}, "they must increase"),
    ({"lr_schedule": "step", "milestones": [1.5]}, "neither a fraction"),
    ({"rounds": 10, "epochs": 2}, "give rounds or epochs, not both"),
])
def test_schedule_errors(training: dict, words: str) -> None:
    with pytest.raises(ScenarioError, match=words):
        parse({"name": "x", "training": training,
               "methods": [{"name": "a", "algorithm": "cdsgd"}]}, "s.yaml")


def test_step_schedule_phases_split_the_method_rounds() -> None:
    """8 rounds, milestones 0.5 and 0.75: rounds 1–4 are phase 1 at α, 5–6 phase 2 at αγ,
    7–8 phase 3 at αγ²; integer milestones are round numbers."""
    plan = _plan(None)
    assert plan.milestone_rounds == (4, 6)
    assert [plan.phase(k) for k in range(1, 9)] == [1, 1, 1, 1, 2, 2, 3, 3]
    assert [plan.lr_at(k) for k in (1, 4, 5, 7)] == pytest.approx([0.1, 0.1, 0.01, 0.001])
    rounds = _plan(None, training={**STEP, "milestones": [3, 5]})
    assert [rounds.phase(k) for k in range(1, 9)] == [1, 1, 1, 2, 2, 3, 3, 3]


# ---------------------------------------------------------------- the controller

def _stacked(agents: int = 6, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(agents, 4, 3, generator=generator),
            torch.randn(agents, 5, generator=generator)]


class _Ring:
    """Real gossip on a stack of points over a 6-ring, with the engine's Mixer."""

    def __init__(self) -> None:
        plan = _plan(None)
        self.mixer = Mixer(plan.topology.mixing_matrix, torch.device("cpu"))
        self.points = _stacked()
        self.exchanges = 0

    def exchange(self, exact: bool) -> float:
        self.points = [p.mean(dim=0, keepdim=True).expand_as(p).clone() for p in self.points] \
            if exact else self.mixer(self.points)
        self.exchanges += 1
        return consensus_distance(self.points)


def test_adaptive_stops_at_the_first_exchange_that_meets_the_target() -> None:
    ring = _Ring()
    before = consensus_distance(ring.points)
    history = [before]
    probe = _Ring()
    while history[-1] > 0.02 * before:  # how many exchanges the target needs
        history.append(probe.exchange(False))
    control = ConsensusControl(mode="adaptive", target_ratio=0.02)
    outcome = control_round(control, 1, before, ring.exchange)
    assert outcome.steps == ring.exchanges == len(history) - 1 >= 2
    assert outcome.after <= 0.02 * before < history[-2]
    assert outcome.target == pytest.approx(0.02 * before) and not outcome.capped


def test_adaptive_stops_at_the_cap_and_says_so() -> None:
    ring = _Ring()
    control = ConsensusControl(mode="adaptive", target=1e-30, max_gossip_steps=3)
    outcome = control_round(control, 1, consensus_distance(ring.points), ring.exchange)
    assert (outcome.steps, ring.exchanges, outcome.capped) == (3, 3, True)


def test_fixed_exact_and_phases() -> None:
    ring = _Ring()
    fixed = control_round(ConsensusControl(mode="fixed", gossip_steps=4), 1, 1.0, ring.exchange)
    assert (fixed.steps, ring.exchanges) == (4, 4)
    exact = control_round(ConsensusControl(mode="exact"), 2, 1.0, ring.exchange)
    assert exact.after == 0.0 and exact.exact and exact.steps == 1
    only_first = ConsensusControl(mode="fixed", gossip_steps=2, phases=frozenset({1}))
    idle = control_round(only_first, 2, 0.5, ring.exchange)
    assert (idle.steps, idle.after, ring.exchanges) == (0, 0.5, 5)


@pytest.mark.parametrize("rule", [CDSGD(), Polyak(0.9), Nesterov(0.9),
                                  LocalVelocity(0.9, nesterov=True)], ids=lambda r: r.name)
def test_an_exchange_leaves_the_average_unchanged_and_keeps_the_momentum(rule: object) -> None:
    """Π doubly stochastic: x̄ of the published points (and of the iterates) is unchanged,
    to 1e-6 relative; the momentum x_k − x_{k−1} (or the velocity) is untouched."""
    memory = {"cdsgd": None, "polyak": "previous", "nesterov": "lookahead",
              "nesterov-local": "velocity"}[rule.name]
    state = {"x": _stacked(seed=1)}
    if memory is not None:
        state[memory] = _stacked(seed=2)
    published = rule.message(state)
    mixed = _Ring().mixer(published)
    moved = rule.translate(state, [m - p for m, p in zip(mixed, published, strict=True)])
    for before, after in ((published, rule.message(moved)), (state["x"], moved["x"])):
        for b, a in zip(average_parameters(before), average_parameters(after), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    for p, m in zip(rule.message(moved), mixed, strict=True):
        torch.testing.assert_close(p, m, rtol=0, atol=1e-6)
    if memory == "velocity":  # the velocity is the agent's own: never moved
        assert all(torch.equal(a, b) for a, b in zip(moved[memory], state[memory], strict=True))
    elif memory is not None:  # the momentum (x minus the other part) is unchanged
        for a, b, c, d in zip(moved["x"], moved[memory], state["x"], state[memory],
                              strict=True):
            torch.testing.assert_close(a - b, c - d, rtol=0, atol=1e-5)


# ---------------------------------------------------------------- through the engines

def test_fixed_control_is_pi_to_the_m_after_the_step() -> None:
    """One CDSGD round with m = 3 extra exchanges: X_1 = Π³ (Π X_0 − α G(X_0)), written out
    with NumPy from the agents' own gradients."""
    plan = _plan({"mode": "fixed", "gossip_steps": 3},
                 training={"rounds": 1, "batch_size": 16, "lr": 0.1, "seed": 3})
    final, rounds, _ = observed_run(plan, VectorizedEngine())
    pi = plan.topology.mixing_matrix
    start = [np.stack([a] * plan.agents).reshape(plan.agents, -1).astype(np.float64)
             for a in plan.initial_parameters]
    gradients = [AgentSetup.build(plan, j).gradient_at(
        [torch.from_numpy(a) for a in plan.initial_parameters], 0)[0] for j in range(plan.agents)]
    for index, x0 in enumerate(start):
        g = np.stack([grads[index].numpy().ravel() for grads in gradients]).astype(np.float64)
        expected = np.linalg.matrix_power(pi, 3) @ (pi @ x0 - 0.1 * g)
        got = np.stack([final[j][index].ravel() for j in range(plan.agents)])
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    assert rounds[1]["gossip_steps"] == 3
    assert rounds[1]["consensus_distance_controlled"] < rounds[1]["consensus_distance"]


@pytest.mark.parametrize(("control", "method"), [
    ({"mode": "fixed", "gossip_steps": 2, "phases": [1, 3]}, {"algorithm": "cdsgd"}),
    ({"mode": "adaptive", "target_ratio": 0.25, "phases": [1]},
     {"algorithm": "cdmsgd", "variant": "polyak"}),
    ({"mode": "exact", "phases": [2, 3]},
     {"algorithm": "cdmsgd", "variant": "nesterov", "momentum_buffer": "iterates"}),
    ({"mode": "adaptive", "target": 1e-4}, {"algorithm": "cdmsgd", "momentum_buffer": "local"}),
])
def test_the_vectorized_engine_equals_the_matrix_form_round_by_round(control: dict,
                                                                     method: dict) -> None:
    plan = _plan(control, method)
    final, rounds, _ = observed_run(plan, VectorizedEngine())
    expected = reference_gossip(plan)
    for agent in range(plan.agents):
        for got, want in zip(final[agent], expected[agent], strict=True):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    phases = set(control.get("phases", [1, 2, 3]))
    for k in range(1, 9):
        assert rounds[k]["phase"] == plan.phase(k)
        acts = plan.phase(k) in phases
        assert (rounds[k]["gossip_steps"] > 0) == (acts and (control["mode"] != "adaptive"
                                                             or rounds[k]["gossip_steps"] > 0))
        if not acts:
            assert rounds[k]["gossip_steps"] == 0
            assert rounds[k]["consensus_distance_controlled"] == \
                pytest.approx(rounds[k]["consensus_distance"], rel=1e-12)
        if acts and control["mode"] == "exact":
            assert rounds[k]["consensus_distance_controlled"] == 0.0
        if acts and control["mode"] == "adaptive" and "target_ratio" in control:
            assert rounds[k]["consensus_distance_controlled"] <= \
                0.25 * rounds[k]["consensus_distance"] * (1 + 1e-9)
    assert rounds[8]["gossip_steps_total"] == sum(rounds[k]["gossip_steps"] for k in rounds)
    assert rounds[8]["critical_distance_proxy"] == pytest.approx(
        2 * rounds[8]["lr"] ** 2 * rounds[8]["grad_norm_sq_mean"])


def test_exact_control_moves_an_all_reduce() -> None:
    """6 agents, model of P bytes: the round's training exchange moves each ring edge's two
    directions (12 P), the all-reduce 2 (N − 1) P = 10 P."""
    plan = _plan({"mode": "exact"}, training={"rounds": 2, "batch_size": 16, "lr": 0.1})
    _, rounds, _ = observed_run(plan, VectorizedEngine())
    point = sum(a.nbytes for a in plan.initial_parameters)
    assert rounds[1]["bytes_moved"] == (12 + 10) * point
    assert rounds[1]["router_bytes_moved"] == (6 * 3 + 6 + 6 * 6 + 6) * point


@pytest.mark.slow
@pytest.mark.parametrize(("control", "method"), [
    ({"mode": "adaptive", "target_ratio": 0.25, "phases": [1]},
     {"algorithm": "cdmsgd", "variant": "polyak"}),
    ({"mode": "exact", "phases": [2, 3]},
     {"algorithm": "cdmsgd", "variant": "nesterov", "momentum_buffer": "iterates"}),
])
def test_both_engines_agree_under_control(control: dict, method: dict) -> None:
    """Parameters and every metric, the simulated clock's included."""
    plan = _plan(control, method, failures={"agents": [{"agent": 2, "round": 3, "recover": 6}]},
                 network={"latency": "5 ms", "agent_uplink": "10 Mbit/s",
                          "compute": {"step_seconds": "20 ms"}})
    flower_final, flower_rounds, flower_events = observed_run(plan, FlowerEngine())
    final, rounds, events = observed_run(plan, VectorizedEngine())
    for agent in range(plan.agents):
        for got, want in zip(final[agent], flower_final[agent], strict=True):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    for k, metrics in flower_rounds.items():
        for key, value in metrics.items():
            if not key.startswith(("round_time_s", "client_time_s")):
                assert rounds[k][key] == pytest.approx(value, rel=1e-5, abs=2e-5), (k, key)
    assert events == flower_events
    assert "sim_time_s" in rounds[8] and "sim_time_s" in flower_rounds[8]
