"""Compressed gossip on the engines: CHOCO-SGD and naive compressed CDSGD/CDMSGD end where
the matrix form ends (vectorized, fast; Flower, slow), CHOCO with no compression and γ = 1
ends where CDSGD ends, the Flower wire carries the encoding (the router's bytes measured
on it equal the encoded size), bytes per round are the encoding's, and γ's search is
settled before the agents start."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import observed_run, tiny_scenario
from test_vectorized import assert_same_metrics, assert_same_parameters

from decentral_bench.engines.flower.simulation import FlowerEngine
from decentral_bench.engines.reference import reference_gossip
from decentral_bench.engines.vectorized import VectorizedEngine
from decentral_bench.experiment.plan import MethodPlan
from decentral_bench.tracking.params import method_params
from strategies.choco import TUNING_GRID

TRAINING = {"rounds": 5, "batch_size": 16, "lr": 0.1, "seed": 3}
CASES = {
    "choco-top_k": ({"algorithm": "choco", "compression": {"kind": "top_k", "fraction": 0.1},
                     "consensus_step_size": 0.4}, {}),
    "choco-qsgd-nesterov": ({"algorithm": "choco", "compression": {"kind": "qsgd", "bits": 4},
                             "consensus_step_size": 0.5, "momentum": 0.9}, {}),
    "choco-random_k-flat-polyak": (
        {"algorithm": "choco", "consensus_step_size": 0.3, "momentum": 0.5,
         "variant": "polyak", "compression": {"kind": "random_k", "fraction": 0.2,
                                              "per_tensor": False}}, {}),
    "cdsgd-top_k": ({"algorithm": "cdsgd", "compression": {"kind": "top_k", "fraction": 0.3}},
                    {}),
    "cdmsgd-sign-local-steps": ({"algorithm": "cdmsgd", "variant": "polyak",
                                 "compression": "sign"},
                                {"training": {**TRAINING, "local_steps": 2}}),
    "cdmsgd-random_k-unbiased-failures": (
        {"algorithm": "cdmsgd", "compression": {"kind": "random_k", "fraction": 0.3,
                                                "unbiased": True}},
        {"topology": {"kind": "ring", "agents": 5},
         "failures": {"agents": [{"agent": 2, "round": 2, "recover": 4}],
                      "links": {"drop_probability": 0.3, "seed": 4}}}),
    "cdmsgd-qsgd-local-velocity": ({"algorithm": "cdmsgd", "momentum_buffer": "local",
                                    "compression": {"kind": "qsgd", "bits": 2}}, {}),
}


def _plan(case: str) -> MethodPlan:
    method, settings = CASES[case]
    return MethodPlan.of(tiny_scenario(**{"training": TRAINING, **settings,
                                          "methods": [{"name": "M", **method}]}), "M")


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_vectorized_engine_equals_the_matrix_form(case: str) -> None:
    plan = _plan(case)
    final, _, _ = observed_run(plan, VectorizedEngine())
    assert_same_parameters(final, reference_gossip(plan))
    assert not np.allclose(final[0][0], plan.initial_parameters[0])


def test_choco_without_compression_and_step_one_ends_where_cdsgd_ends() -> None:
    choco = MethodPlan.of(tiny_scenario(training=TRAINING, methods=[
        {"name": "M", "algorithm": "choco", "compression": "none",
         "consensus_step_size": 1.0}]), "M")
    cdsgd = MethodPlan.of(tiny_scenario(training=TRAINING), "CDSGD")
    ours, our_rounds, _ = observed_run(choco, VectorizedEngine())
    theirs, their_rounds, _ = observed_run(cdsgd, VectorizedEngine())
    for agent in theirs:
        for a, b in zip(ours[agent], theirs[agent], strict=True):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    for k in their_rounds:
        assert our_rounds[k]["consensus_distance"] == \
            pytest.approx(their_rounds[k]["consensus_distance"], rel=1e-4)
        assert our_rounds[k]["minibatch_loss_mean"] == \
            pytest.approx(their_rounds[k]["minibatch_loss_mean"], rel=1e-5)


def test_bytes_per_round_are_the_encodings() -> None:
    """The digits MLP (16 hidden) has blocks of 1024, 16, 160 and 10 entries: top-10 %
    keeps 102 + 1 + 16 + 1 = 120 values and 120 int32 positions, 960 bytes a message,
    where the uncompressed point is 4 × 1210. A ring of 4 has 8 directed edges; the router
    sends each agent its 3 neighbours' messages and takes one back, with the agent's model x
    beside it (CHOCO's message q is not its model)."""
    plan = _plan("choco-top_k")
    _, rounds, _ = observed_run(plan, VectorizedEngine())
    assert plan.compressor is not None
    shapes = [tuple(array.shape) for array in plan.initial_parameters]
    assert plan.compressor.wire_bytes(shapes) == 120 * (4 + 4) == 960
    for k in rounds:
        assert rounds[k]["bytes_moved"] == 8 * 960
        assert rounds[k]["router_bytes_moved"] == (4 * 3 + 4) * 960 + 4 * 4 * 1210
    assert rounds[5]["bytes_moved_total"] == 5 * 8 * 960
    uncompressed = MethodPlan.of(tiny_scenario(training=TRAINING), "CDSGD")
    _, plain, _ = observed_run(uncompressed, VectorizedEngine())
    assert plain[1]["bytes_moved"] == 8 * 4 * 1210


def test_auto_searches_gamma_once_and_the_agents_are_sent_the_result() -> None:
    plan = MethodPlan.of(tiny_scenario(training=TRAINING, methods=[
        {"name": "M", "algorithm": "choco", "compression": {"kind": "top_k",
                                                            "fraction": 0.05}}]), "M")
    gamma = plan.consensus_step_size
    assert gamma in TUNING_GRID and gamma < 1.0
    settled = plan.settled()
    assert settled.method.consensus_step_size == gamma
    assert settled.scenario.method("M").consensus_step_size == gamma
    assert settled.update_rule == plan.update_rule
    assert method_params(plan, "vectorized")["method.consensus_step_size"] == \
        f"{gamma:.6g} (auto)"


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_both_engines_agree_and_the_wire_carries_the_encoding(case: str) -> None:
    """Every compressor and every form of CHOCO and of naive compressed gossip: same
    parameters and metrics, bytes_moved and router_bytes_moved among them: the Flower
    engine measures the router's bytes on the wire, the vectorized engine computes them
    from the encoded size, so the wire carried exactly the encoding (and the model beside
    it, for the observer)."""
    plan = _plan(case)
    flower_final, flower_rounds, flower_events = observed_run(plan, FlowerEngine())
    final, rounds, events = observed_run(plan, VectorizedEngine())
    assert_same_parameters(final, flower_final)
    assert_same_metrics(rounds, flower_rounds)
    assert events == flower_events
    assert plan.compressor is not None
    point = 4 * sum(array.size for array in plan.initial_parameters)
    encoded = plan.compressor.wire_bytes([tuple(a.shape) for a in plan.initial_parameters])
    assert encoded < point
    # each agent's reply carries its model beside the encoded message (which is not it)
    assert flower_rounds[1]["router_bytes_moved"] == (4 * 3 + 4) * encoded + 4 * point or \
        plan.scenario.failures.links is not None
