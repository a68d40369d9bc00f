"""Attacks and robust aggregation compute the same on both engines: a Flower simulation (each
attacker's ClientApp computing its attack from the messages the router brought it) and the
vectorized engine (every attacker's view gathered from the published stack) end with the
same parameters and the same per-round metrics of the honest agents."""

from __future__ import annotations

import pytest
from conftest import observed_run, tiny_scenario
from test_vectorized import assert_same_metrics, assert_same_parameters

from decentral_bench.engines.flower.simulation import FlowerEngine
from decentral_bench.engines.vectorized import VectorizedEngine
from decentral_bench.experiment.plan import MethodPlan

pytestmark = pytest.mark.slow

CASES = {
    "clipped-gossip-nesterov-dissensus": {
        "topology": {"kind": "ring", "agents": 5},
        "adversaries": {"agents": [2], "attack": "dissensus", "from_round": 2},
        "methods": [{"name": "M", "algorithm": "cdmsgd", "aggregation": "clipped_gossip"}]},
    "trimmed-mean-sign-flip": {
        "topology": {"kind": "complete", "agents": 5},
        "adversaries": {"agents": [1], "attack": {"kind": "sign_flip", "scale": 2.0}},
        "methods": [{"name": "M", "algorithm": "cdsgd", "aggregation": "trimmed_mean"}]},
    "median-alie": {
        "topology": {"kind": "complete", "agents": 5},
        "adversaries": {"count": 1, "attack": {"kind": "alie", "z": 1.0}},
        "methods": [{"name": "M", "algorithm": "cdsgd", "aggregation": "median"}]},
    "krum-gaussian-local-steps": {
        "topology": {"kind": "complete", "agents": 5},
        "adversaries": {"count": 1, "attack": {"kind": "gaussian", "std": 0.5}},
        "training": {"rounds": 4, "batch_size": 16, "lr": 0.1, "seed": 3, "local_steps": 2},
        "methods": [{"name": "M", "algorithm": "cdsgd",
                     "aggregation": {"kind": "krum", "b": 1}}]},
    "clipped-gossip-radius-polyak-ipm": {
        "topology": {"kind": "ring", "agents": 5},
        "adversaries": {"count": 2, "attack": "ipm"},
        "methods": [{"name": "M", "algorithm": "cdmsgd", "variant": "polyak",
                     "aggregation": {"kind": "clipped_gossip", "tau": 0.05}}]},
    "median-dsgd-atc-nesterov-sign-flip": {
        "topology": {"kind": "ring", "agents": 5},
        "adversaries": {"agents": [3], "attack": "sign_flip"},
        "methods": [{"name": "M", "algorithm": "dsgd_atc", "momentum": 0.9,
                     "variant": "nesterov", "aggregation": "median"}]},
    "mean-label-flip": {
        "topology": {"kind": "ring", "agents": 5},
        "adversaries": {"agents": [0], "attack": "label_flip", "from_round": 2}},
    "mean-dissensus-attacker-crash-and-link-drops": {
        "topology": {"kind": "ring", "agents": 5},
        "adversaries": {"agents": [2], "attack": "dissensus"},
        "failures": {"agents": [{"agent": 2, "round": 2, "recover": 4}],
                     "links": {"drop_probability": 0.3, "seed": 4}}},
    "fedavg-sign-flip": {
        "adversaries": {"count": 1, "attack": "sign_flip"},
        "methods": [{"name": "M", "algorithm": "fedavg"}]},
    "fedavg-gaussian-from-round-2": {
        "adversaries": {"agents": [1], "attack": {"kind": "gaussian", "std": 0.2},
                        "from_round": 2},
        "methods": [{"name": "M", "algorithm": "fedavg"}]},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_both_engines_agree_under_attack(case: str) -> None:
    settings = {"methods": [{"name": "M", "algorithm": "cdsgd"}],
                "training": {"rounds": 4, "batch_size": 16, "lr": 0.1, "seed": 3},
                **CASES[case]}
    plan = MethodPlan.of(tiny_scenario(**settings), "M")
    assert plan.attackers
    flower_final, flower_rounds, flower_events = observed_run(plan, FlowerEngine())
    final, rounds, events = observed_run(plan, VectorizedEngine())
    assert_same_parameters(final, flower_final)
    assert_same_metrics(rounds, flower_rounds)
    assert events == flower_events
    assert rounds[plan.rounds]["attackers"] == float(len(plan.attackers))
