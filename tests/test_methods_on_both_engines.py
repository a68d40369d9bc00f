"""Every heterogeneity method and every stock strategy computes the same on both engines:
the Flower engine's ServerApp side (router or Flower's own strategy class) and ClientApp,
delivered in process (`inprocess.InProcessGrid`), against the vectorized engine, to 1e-5
in the final parameters and every per-round metric; the gossip methods also against the
matrix form. The slow suite runs the same on Flower's simulation engine
(`test_vectorized.py`, `test_equivalence.py`)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import tiny_scenario
from inprocess import InProcessGrid, run_in_process
from test_vectorized import assert_same_metrics, assert_same_parameters

from decentral_bench.engines.flower.arrays import from_record
from decentral_bench.engines.flower.server_app import run_method
from decentral_bench.engines.observer import RoundObserver
from decentral_bench.engines.reference import reference_gossip
from decentral_bench.engines.vectorized import VectorizedEngine
from decentral_bench.experiment.plan import MethodPlan

STEP_SCHEDULE = {"lr_schedule": "step", "milestones": [0.5], "gamma": 0.5}
FAILURES = {"agents": [{"agent": 2, "round": 2, "recover": 4}],
            "links": {"drop_probability": 0.3, "seed": 4}}

CASES: dict[str, dict] = {
    "gradient-tracking": {"method": {"algorithm": "gradient_tracking"}},
    "gradient-tracking-momentum-failures": {
        "method": {"algorithm": "gradient_tracking", "momentum": 0.5, "variant": "nesterov"},
        "failures": FAILURES},
    "d2-step-schedule": {"method": {"algorithm": "d2"}, "training": STEP_SCHEDULE},
    "d2-failures": {"method": {"algorithm": "d2"}, "failures": FAILURES},
    "qg-dsgdm-step-schedule-failures": {"method": {"algorithm": "qg_dsgdm"},
                                        "training": STEP_SCHEDULE, "failures": FAILURES},
    "qg-dsgdm-heavy-ball-weight-decay": {
        "method": {"algorithm": "qg_dsgdm", "variant": "polyak", "buffer_momentum": 0.5},
        "training": {"weight_decay": 1e-3}},
    "fedavg": {"method": {"algorithm": "fedavg"}},
    "fedprox": {"method": {"algorithm": "fedprox", "proximal_mu": 0.5}},
    "fedavgm": {"method": {"algorithm": "fedavgm", "server_momentum": 0.9}},
    "fedavgm-server-lr": {"method": {"algorithm": "fedavgm", "server_lr": 0.5}},
    "fedadam": {"method": {"algorithm": "fedadam"}},
    "fedyogi": {"method": {"algorithm": "fedyogi", "server_lr": 0.05}},
    "fedadagrad-two-local-epochs": {"method": {"algorithm": "fedadagrad", "local_epochs": 2}},
    "fedmedian-uneven-data": {
        "method": {"algorithm": "fedmedian"},
        "dataset": {"name": "digits", "partition": {"kind": "dirichlet", "alpha": 0.5}}},
    "fedtrimmedavg": {"method": {"algorithm": "fedtrimmedavg", "trim_fraction": 0.3}},
    "krum": {"method": {"algorithm": "krum", "num_malicious_nodes": 1}},
    "multikrum": {"method": {"algorithm": "multikrum", "num_malicious_nodes": 1,
                             "num_nodes_to_select": 3}},
    # Flower's Bulyan reads every reply with a full garbage collection: 2 rounds only.
    "bulyan": {"method": {"algorithm": "bulyan"}, "rounds": 2},
    "fedprox-server-lost-local": {"method": {"algorithm": "fedprox", "proximal_mu": 0.5},
                                  "failures": {"server": {"round": 2, "mode": "local"}}},
}


def _plan(case: str) -> MethodPlan:
    setting = CASES[case]
    training = {"rounds": setting.get("rounds", 4), "batch_size": 16, "lr": 0.1, "seed": 3,
                **setting.get("training", {})}
    scenario = tiny_scenario(topology={"kind": "ring", "agents": 5},
                             methods=[{"name": "M", **setting["method"]}], training=training,
                             failures=setting.get("failures", {}),
                             **({"dataset": setting["dataset"]} if "dataset" in setting
                                else {}))
    return MethodPlan.of(scenario, "M")


def _flower_in_process(plan: MethodPlan) -> tuple[dict, dict]:
    rounds: dict[int, dict[str, float]] = {}
    observer = RoundObserver(plan, rounds.__setitem__)
    return run_in_process(plan, observer.observe), rounds


@pytest.mark.parametrize("case", sorted(CASES))
def test_both_engines_end_equal(case: str, task_identity: None) -> None:
    plan = _plan(case)
    flower_final, flower_rounds = _flower_in_process(plan)
    rounds: dict[int, dict[str, float]] = {}
    final = VectorizedEngine().run(plan, RoundObserver(plan, rounds.__setitem__).observe,
                                   lambda *_: None)
    assert_same_parameters(final, flower_final)
    assert_same_metrics(rounds, flower_rounds)
    start = plan.initial_parameters
    trained = final[0]
    assert not np.allclose(trained[0], start[0])  # it trained
    if plan.is_gossip:
        assert_same_parameters(final, reference_gossip(plan))


def test_a_gradient_tracking_round_moves_twice_the_model() -> None:
    """The modelled network carries x − αy and y over every edge; the router also brings
    back each agent's model."""
    plan = _plan("gradient-tracking")
    cdsgd = MethodPlan.of(tiny_scenario(topology={"kind": "ring", "agents": 5}, training={
        "rounds": 4, "batch_size": 16, "lr": 0.1, "seed": 3}), "CDSGD")
    rounds: dict[int, dict[str, float]] = {}
    plain: dict[int, dict[str, float]] = {}
    VectorizedEngine().run(plan, RoundObserver(plan, rounds.__setitem__).observe,
                           lambda *_: None)
    VectorizedEngine().run(cdsgd, RoundObserver(cdsgd, plain.__setitem__).observe,
                           lambda *_: None)
    assert rounds[1]["bytes_moved"] == 2 * plain[1]["bytes_moved"]
    # router: 3 neighbours' messages in and one message plus one model out, per agent
    assert rounds[1]["router_bytes_moved"] == plain[1]["router_bytes_moved"] / 4 * (6 + 3)


@pytest.mark.parametrize(("case", "kept"), [
    ("gradient-tracking", ["kept.gradient", "kept.x"]),
    ("gradient-tracking-momentum-failures", ["kept.gradient", "kept.velocity", "kept.x"]),
    ("d2-step-schedule", ["kept.step", "kept.x"]),
    ("qg-dsgdm-step-schedule-failures", ["kept.buffer", "kept.lr", "kept.x"]),
])
def test_each_agent_keeps_only_what_its_next_message_cannot_supply(
        case: str, kept: list[str], task_identity: None) -> None:
    """The message brings back the half-step (and the tracker): the context holds the
    iterate and the rule's memory, and QG-DSGDm the step its half-step was taken with."""
    plan = _plan(case)
    grid = InProcessGrid(plan.agents)
    run_method(grid, plan, lambda _: None)
    for context in grid.contexts.values():
        assert sorted(context.state.array_records) == kept
    if "kept.lr" in kept:  # the last half-step used round 4's step: 0.1 halved at round 3
        for context in grid.contexts.values():
            [step] = from_record(context.state.array_records["kept.lr"])
            assert step.shape == () and float(step) == pytest.approx(0.05)
