"""The equality matrix: method × failure mode × engine pair, every pair ending with the same
parameters (and, Flower against vectorized, the same per-round metrics and events).

Engines: `flower` (Flower's simulation engine, the reference), `vectorized` (every agent as
one batched program) and `matrix` (the matrix form, `decentral_bench.engines.reference`,
which covers the gossip methods). One fast case per method runs in the default suite (the
matrix form against the vectorized engine, no Ray to start); every case with Flower is
slow. The independent NumPy reference (`tests/numpy_reference.py`) checks the engines
against the papers' equations where the matrix form would share their code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from conftest import observed_run, tiny_scenario

from decentral_bench.engines.base import FinalParameters
from decentral_bench.engines.flower.simulation import FlowerEngine
from decentral_bench.engines.reference import reference_gossip, reference_push_sum
from decentral_bench.engines.reference_async import reference_async
from decentral_bench.engines.vectorized import VectorizedEngine
from decentral_bench.experiment.plan import MethodPlan
from strategies.registry import ALGORITHMS
from strategies.registry import METHODS as REGISTRY

Engine = str  # flower, vectorized, matrix
TIMES = ("round_time_s", "client_time_s")  # wall-clock figures, engine-specific

METHODS: dict[str, dict[str, Any]] = {
    "cdsgd": {"algorithm": "cdsgd"},
    "polyak": {"algorithm": "cdmsgd", "variant": "polyak", "momentum_buffer": "iterates"},
    "nesterov": {"algorithm": "cdmsgd", "variant": "nesterov", "momentum_buffer": "iterates",
                 "momentum": 0.8},
    "polyak-local": {"algorithm": "cdmsgd", "variant": "polyak", "momentum_buffer": "local"},
    "nesterov-local": {"algorithm": "cdmsgd", "variant": "nesterov", "momentum_buffer": "local"},
    "centralized": {"algorithm": "centralized_sgd"},
    "sgp": {"algorithm": "sgp"},
    "sgp-momentum": {"algorithm": "sgp", "momentum": 0.9},
    "choco": {"algorithm": "choco", "compression": {"kind": "top_k", "fraction": 0.1},
              "consensus_step_size": 0.4},
    "cdsgd-qsgd": {"algorithm": "cdsgd", "compression": {"kind": "qsgd", "bits": 4}},
    "gradient-tracking": {"algorithm": "gradient_tracking", "momentum": 0.5},
    "d2": {"algorithm": "d2"},
    "qg-dsgdm": {"algorithm": "qg_dsgdm"},
    "dsgd-atc": {"algorithm": "dsgd_atc", "momentum": 0.9, "variant": "nesterov"},
    "ad-psgd": {"algorithm": "ad_psgd"},
    "fedavg": {"algorithm": "fedavg"},
}

FAILURES: dict[str, dict[str, Any]] = {
    "none": {},
    "crash": {"agents": [{"agent": 2, "round": 2, "recover": 4}]},
    "permanent-crash": {"agents": [{"agent": 1, "round": 3}]},
    "link-drops": {"links": {"drop_probability": 0.3, "seed": 4}},
    "crash-and-drops": {"agents": [{"agent": 2, "round": 2, "recover": 4}],
                        "links": {"drop_probability": 0.3, "seed": 4}},
    "server-lost": {"server": {"round": 3, "mode": "local"},
                    "agents": [{"agent": 1, "round": 2, "recover": 5}]},
}

BASE: dict[str, Any] = {
    "topology": {"kind": "ring", "agents": 5},
    "training": {"rounds": 5, "batch_size": 16, "lr": 0.1, "seed": 2},
}


@dataclass(frozen=True)
class Case:
    """One row of the matrix: a method under a failure mode, the engine pairs that must
    agree, and what the case changes of the base scenario."""

    method: str
    failures: str
    pairs: tuple[tuple[Engine, Engine], ...]
    variant: str = ""
    settings: Mapping[str, Any] = field(default_factory=dict)
    fast: bool = False

    @property
    def name(self) -> str:
        return "-".join(part for part in (self.method, self.failures, self.variant) if part)

    @property
    def engines(self) -> list[Engine]:
        return sorted({engine for pair in self.pairs for engine in pair})

    def plan(self) -> MethodPlan:
        method = {"name": "M", **METHODS[self.method], **self.settings.get("method", {})}
        training = {**BASE["training"], **self.settings.get("training", {})}
        overrides = {key: value for key, value in self.settings.items()
                     if key not in ("method", "training")}
        scenario = tiny_scenario(**{**BASE, **overrides, "training": training,
                                    "methods": [method], "failures": FAILURES[self.failures]})
        return MethodPlan.of(scenario, "M")


FV, FM, VM = ("flower", "vectorized"), ("flower", "matrix"), ("vectorized", "matrix")
LOCAL_STEPS = {"training": {"local_steps": 2, "weight_decay": 1e-3}}
CONTROL_ADAPTIVE = {"consensus_control": {"mode": "adaptive", "target_ratio": 0.25}}
CONTROL_EXACT = {"consensus_control": {"mode": "exact", "phases": [1, 3]}}
STEP_SCHEDULE = {"lr_schedule": "step", "milestones": [0.4, 0.8], "gamma": 0.5}
FEDAVG = {"training": {"batch_size": 32, "lr": 0.05}}

CASES: tuple[Case, ...] = (
    # CDSGD: every failure mode, Flower against both.
    Case("cdsgd", "none", (FV, FM), variant="lazy-max-degree",
         settings={"topology": {"kind": "erdos_renyi", "agents": 6, "p": 0.5,
                                "mixing": "max_degree", "lazy": True}}),
    Case("cdsgd", "crash-and-drops", (FV, FM, VM), fast=True),
    Case("cdsgd", "link-drops", (FV,)),
    Case("cdsgd", "permanent-crash", (FV, FM)),
    Case("cdsgd", "none", (FV, VM), variant="cnn-paper",  # batched: no timed choice to log
         settings={"model": {"name": "cnn_paper"}, "topology": {"kind": "ring", "agents": 4},
                   "training": {"rounds": 3}, "resources": {"batched": True}}),
    Case("cdsgd", "crash", (VM,), variant="resnet20",
         settings={"model": {"name": "resnet20"}, "topology": {"kind": "ring", "agents": 4},
                   "training": {"rounds": 3, "lr": 0.05}}),
    # CDMSGD, each form of its momentum.
    Case("polyak", "link-drops", (FV, VM), fast=True, settings=LOCAL_STEPS),
    Case("nesterov", "permanent-crash", (FM, VM), fast=True,
         settings={"training": {"lr_schedule": "diminishing", "epsilon": 0.75}}),
    Case("polyak-local", "none", (FV, FM, VM), fast=True, settings=LOCAL_STEPS),
    Case("polyak-local", "crash-and-drops", (FV,)),
    Case("nesterov-local", "crash", (FV, VM), fast=True,
         settings={"topology": {"kind": "torus", "agents": 6, "rows": 2, "cols": 3,
                                "mixing": "max_degree"}}),
    # Consensus control under failures.
    Case("polyak", "link-drops", (FV, FM, VM), variant="adaptive-control", fast=True,
         settings={"method": CONTROL_ADAPTIVE, "training": STEP_SCHEDULE}),
    Case("nesterov-local", "crash", (FM, VM), variant="exact-control", fast=True,
         settings={"method": CONTROL_EXACT, "training": STEP_SCHEDULE}),
    Case("cdsgd", "permanent-crash", (FV, FM), variant="fixed-control",
         settings={"method": {"consensus_control": {"mode": "fixed", "gossip_steps": 2}}}),
    # SGP: push-sum on a directed graph (a column-stochastic Π).
    Case("sgp", "none", (FV, FM, VM), fast=True,
         settings={"topology": {"kind": "directed_ring", "agents": 5}}),
    Case("sgp-momentum", "none", (FV, FM, VM), fast=True,  # the authors' local Nesterov
         settings={"topology": {"kind": "directed_exponential", "agents": 6},
                   "training": STEP_SCHEDULE}),
    # CHOCO (no failures: a lost message breaks its running sums) and naive compression.
    Case("choco", "none", (FV, FM, VM), fast=True),
    Case("cdsgd-qsgd", "crash", (FV, VM)),
    # The heterogeneity methods (adapt-then-combine: the matrix form in reference_ahead).
    Case("gradient-tracking", "crash-and-drops", (FV, FM, VM), fast=True),
    Case("d2", "crash", (FV, FM, VM), fast=True),
    Case("qg-dsgdm", "link-drops", (FV, FM, VM), fast=True),
    Case("dsgd-atc", "crash-and-drops", (FV, FM, VM), fast=True, settings={"training":
                                                                          STEP_SCHEDULE}),
    # AD-PSGD: the clock's events (stragglers, jitter, random latencies), a tick at a time
    # on both engines and one event at a time in the matrix form.
    Case("ad-psgd", "none", (FV, FM, VM), fast=True,
         settings={"network": {"latency": {"kind": "uniform", "low": "1 ms", "high": "10 ms"},
                               "compute": {"step_seconds": "10 ms", "jitter": 0.3,
                                           "stragglers": {"fraction": 0.2, "slowdown": 5}}},
                   "training": STEP_SCHEDULE}),
    # Centralized SGD: one agent with all the data.
    Case("centralized", "none", (FV, FM, VM), fast=True),
    # FedAvg: a sampled fraction, with and without crashes, and the server lost; its fast
    # case is the NumPy reference's (tests/test_numpy_reference.py).
    Case("fedavg", "none", (FV,), variant="fraction-half",
         settings={**FEDAVG, "method": {"fraction": 0.5, "local_epochs": 2}}),
    Case("fedavg", "crash", (FV,), variant="fraction-half",
         settings={**FEDAVG, "method": {"fraction": 0.5}}),
    Case("fedavg", "server-lost", (FV,), settings=FEDAVG),
)


# ---------------------------------------------------------------- running the engines


@dataclass
class Outcome:
    final: FinalParameters
    rounds: dict[int, dict[str, float]] | None = None
    events: list[tuple[int, str]] | None = None


def run_on(engine: Engine, plan: MethodPlan) -> Outcome:
    if engine == "matrix":  # push-sum and AD-PSGD have matrix forms of their own
        reference = {"sgp": reference_push_sum, "ad_psgd": reference_async}.get(
            plan.algorithm, reference_gossip)
        return Outcome(reference(plan))
    final, rounds, events = observed_run(
        plan, FlowerEngine() if engine == "flower" else VectorizedEngine())
    return Outcome(final, rounds, events)


def assert_same_parameters(got: FinalParameters, want: FinalParameters) -> None:
    assert sorted(got) == sorted(want)
    for agent in want:
        for a, b in zip(got[agent], want[agent], strict=True):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-5, err_msg=f"agent {agent}")


def assert_same_metrics(got: dict[int, dict[str, float]],
                        want: dict[int, dict[str, float]]) -> None:
    assert sorted(got) == sorted(want)
    for server_round, metrics in want.items():
        expected = {key: value for key, value in metrics.items() if not key.startswith(TIMES)}
        measured = {key: value for key, value in got[server_round].items()
                    if not key.startswith(TIMES)}
        assert sorted(measured) == sorted(expected), server_round
        for key, value in expected.items():
            assert measured[key] == pytest.approx(value, rel=1e-5, abs=2e-5), \
                (server_round, key)


def _params() -> list[Any]:
    """A fast case's vectorized = matrix pair runs in the default suite; its other pairs,
    and every pair of the other cases, in one slow test per case (one run per engine)."""
    params = []
    for case in CASES:
        slow = tuple(pair for pair in case.pairs if not (case.fast and pair == VM))
        if case.fast:
            params.append(pytest.param(case, (VM,), id=f"{case.name}:vectorized=matrix"))
        if slow:
            params.append(pytest.param(
                case, slow, marks=pytest.mark.slow,
                id=f"{case.name}:" + ",".join(f"{left}={right}" for left, right in slow)))
    return params


@pytest.mark.parametrize(("case", "pairs"), _params())
def test_engine_pairs_end_with_the_same_parameters(
        case: Case, pairs: tuple[tuple[Engine, Engine], ...]) -> None:
    plan = case.plan()
    engines = sorted({engine for pair in pairs for engine in pair})
    outcomes = {engine: run_on(engine, plan) for engine in engines}
    for left, right in pairs:
        assert_same_parameters(outcomes[left].final, outcomes[right].final)
        first, second = outcomes[left], outcomes[right]
        if first.rounds is not None and second.rounds is not None:
            assert_same_metrics(first.rounds, second.rounds)
            assert first.events == second.events
    start = plan.initial_parameters
    final = outcomes[engines[0]].final
    assert not np.allclose(final[0][0], start[0])  # it trained
    schedule = plan.failure_schedule
    rounds = range(1, plan.rounds + 1)
    if "crash" in case.failures:  # the crash happened, and (if permanent) lasted
        crashed = [sorted(schedule.crashed(k)) for k in rounds]
        assert any(crashed) and (case.failures != "permanent-crash" or crashed[-1] == [1])
    if "drops" in case.failures:
        assert any(schedule.dropped_edges(k) for k in rounds)


# ---------------------------------------------------------------- the table itself


def test_every_method_has_a_fast_case_and_every_case_a_pair() -> None:
    covered = {METHODS[case.method]["algorithm"] for case in CASES}
    fast = {METHODS[case.method]["algorithm"] for case in CASES if case.fast}
    # Flower's other stock strategies have no matrix form: each is run on both engines in
    # tests/test_methods_on_both_engines.py (FedAdam, FedProx, FedMedian in the default
    # suite) and tests/test_server_rules.py (their server updates against Flower's).
    gossip_and_fedavg = {name for name in ALGORITHMS
                         if name == "fedavg" or REGISTRY[name].is_gossip}
    assert covered == gossip_and_fedavg, "a method of the registry is missing from the matrix"
    assert fast | {"fedavg"} == gossip_and_fedavg  # FedAvg's fast case: the NumPy reference
    for case in CASES:
        assert case.pairs and all(left != right for left, right in case.pairs), case.name
        assert not case.fast or VM in case.pairs, f"{case.name}: fast cases run without Ray"
        if "matrix" in case.engines:
            assert case.plan().is_gossip, f"{case.name}: the matrix form covers gossip only"
    assert len({case.name for case in CASES}) == len(CASES)


def test_sampled_fedavg_trains_the_same_agents_on_both_engines() -> None:
    """The sample is the plan's (seed, 6, round) draw over the alive agents, ⌊0.5 n⌋ of
    them, and changes from round to round; the vectorized engine trains exactly those (the
    Flower engine shows its strategy only those: the slow cases above compare the two)."""
    plan = Case("fedavg", "crash", (FV,), settings={"method": {"fraction": 0.5}}).plan()
    schedule = plan.failure_schedule
    drawn = [plan.sampled_agents(k, schedule.alive(k)) for k in range(1, 6)]
    assert [len(agents) for agents in drawn] == [2, 2, 2, 2, 2]  # ⌊0.5 × 5⌋, ⌊0.5 × 4⌋
    assert all(2 not in drawn[k - 1] for k in (2, 3))  # agent 2 is down in rounds 2 and 3
    assert len({tuple(agents) for agents in drawn}) > 1
    trained: list[list[int]] = []
    VectorizedEngine().run(plan, lambda report: trained.append(report.agents), lambda *_: None)
    assert trained == drawn
    assert plan.sampled_agents(1, range(5)) == drawn[0]  # the same draw every time
