"""The vectorized engine computes what the Flower engine computes: same parameters, same
per-round metrics; its sparse and dense mixing, chunked and whole calls agree."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import observed_run, tiny_scenario
from mlflow.tracking import MlflowClient

from decentral_bench.engines.base import FinalParameters
from decentral_bench.engines.flower.simulation import FlowerEngine
from decentral_bench.engines.reference import reference_gossip
from decentral_bench.engines.vectorized import VectorizedEngine
from decentral_bench.engines.vectorized.mixing import Mixer
from decentral_bench.experiment.plan import MethodPlan

TIMES = ("round_time_s", "client_time_s")  # wall-clock figures, engine-specific
# A network with drawn latencies and stragglers: the simulated clock (sim_time_s and its
# parts) is compared like every other metric.
NETWORK = {"latency": {"kind": "lognormal", "median": "20 ms", "sigma": 0.5},
           "agent_uplink": "100 Mbit/s", "agent_downlink": "50 Mbit/s",
           "server_uplink": "1 Gbit/s", "server_downlink": "200 Mbit/s",
           "compute": {"samples_per_second": 400, "jitter": 0.2,
                       "stragglers": {"fraction": 0.4, "slowdown": 5, "resample": True}}}

CASES = {
    "cdsgd-ring": {"topology": {"kind": "ring", "agents": 5}, "network": NETWORK},
    "polyak-local-steps-weight-decay": {
        "methods": [{"name": "M", "algorithm": "cdmsgd", "variant": "polyak"}],
        "training": {"rounds": 4, "batch_size": 16, "lr": 0.1, "seed": 3, "local_steps": 2,
                     "weight_decay": 1e-3}},
    "nesterov-diminishing": {
        "methods": [{"name": "M", "algorithm": "cdmsgd", "momentum": 0.8,
                     "momentum_buffer": "iterates"}],
        "training": {"rounds": 4, "batch_size": 16, "lr": 0.1, "seed": 3,
                     "lr_schedule": "diminishing", "epsilon": 0.75}},
    "centralized-sgd": {"methods": [{"name": "M", "algorithm": "centralized_sgd"}]},
    "local-velocity-nesterov": {
        "methods": [{"name": "M", "algorithm": "cdmsgd", "momentum_buffer": "local"}],
        "training": {"rounds": 4, "batch_size": 16, "lr": 0.1, "seed": 3, "local_steps": 2}},
    # float64: what is left of a difference between the engines is not float32 rounding.
    "float64-nesterov-ring": {
        "methods": [{"name": "M", "algorithm": "cdmsgd"}],
        "topology": {"kind": "ring", "agents": 5},
        "training": {"rounds": 6, "batch_size": 16, "lr": 0.1, "seed": 3, "eval_every": 3},
        "resources": {"dtype": "float64"}},
    "fedavg-uneven-data": {
        "methods": [{"name": "M", "algorithm": "fedavg", "local_epochs": 2}],
        "dataset": {"name": "digits", "partition": {"kind": "dirichlet", "alpha": 0.5}},
        "training": {"rounds": 3, "batch_size": 16, "lr": 0.05, "seed": 1},
        "network": NETWORK},
    "nesterov-crash-and-link-drops": {
        "methods": [{"name": "M", "algorithm": "cdmsgd", "momentum_buffer": "iterates"}],
        "topology": {"kind": "ring", "agents": 5},
        "training": {"rounds": 5, "batch_size": 16, "lr": 0.1, "seed": 2, "local_steps": 2},
        "failures": {"agents": [{"agent": 2, "round": 2, "recover": 4}],
                     "links": {"drop_probability": 0.3, "seed": 4}},
        "network": NETWORK},
    "fedavg-server-lost-local-and-crash": {
        "methods": [{"name": "M", "algorithm": "fedavg"}],
        "training": {"rounds": 5, "batch_size": 32, "lr": 0.1, "seed": 0},
        "failures": {"server": {"round": 3, "mode": "local"},
                     "agents": [{"agent": 1, "round": 2, "recover": 5}]},
        "network": {**NETWORK, "latency": "10 ms"}},
    "one-peer-exponential-schedule": {
        "topology": {"kind": "exponential", "agents": 8, "schedule": "one_peer_exponential"},
        "network": NETWORK},
    "random-matching-schedule": {
        "methods": [{"name": "M", "algorithm": "cdmsgd"}],
        "topology": {"kind": "complete", "agents": 6, "schedule": "random_matching"}},
    "sgp-directed": {
        "methods": [{"name": "M", "algorithm": "sgp"}],
        "topology": {"kind": "directed_edges", "agents": 5,
                     "edges": [[0, 1], [1, 2], [2, 3], [3, 4], [4, 0], [0, 2], [0, 3]]},
        "network": NETWORK},
    "gradient-tracking-momentum-crash-and-link-drops": {
        "methods": [{"name": "M", "algorithm": "gradient_tracking", "momentum": 0.5}],
        "topology": {"kind": "ring", "agents": 5},
        "training": {"rounds": 5, "batch_size": 16, "lr": 0.1, "seed": 2},
        "failures": {"agents": [{"agent": 2, "round": 2, "recover": 4}],
                     "links": {"drop_probability": 0.3, "seed": 4}}},
    "d2-step-schedule": {
        "methods": [{"name": "M", "algorithm": "d2"}],
        "topology": {"kind": "ring", "agents": 5},
        "training": {"rounds": 4, "batch_size": 16, "lr": 0.1, "seed": 3,
                     "lr_schedule": "step", "milestones": [0.5]}},
    "qg-dsgdm": {"methods": [{"name": "M", "algorithm": "qg_dsgdm"}],
                 "topology": {"kind": "ring", "agents": 5}},
    "fedadam": {"methods": [{"name": "M", "algorithm": "fedadam"}],
                "training": {"rounds": 3, "batch_size": 32, "lr": 0.1, "seed": 0}},
    "fedprox-uneven-data": {
        "methods": [{"name": "M", "algorithm": "fedprox", "proximal_mu": 0.5}],
        "dataset": {"name": "digits", "partition": {"kind": "dirichlet", "alpha": 0.5}},
        "training": {"rounds": 3, "batch_size": 16, "lr": 0.05, "seed": 1}},
    "fedmedian": {"methods": [{"name": "M", "algorithm": "fedmedian"}],
                  "training": {"rounds": 3, "batch_size": 32, "lr": 0.1, "seed": 0}},
    "fedavg-server-lost-halt": {
        "methods": [{"name": "M", "algorithm": "fedavg"}],
        "training": {"rounds": 4, "batch_size": 32, "lr": 0.1, "seed": 0},
        "failures": {"server": {"round": 2, "mode": "halt"}}},
}


def _plan(case: str) -> MethodPlan:
    settings = {"methods": [{"name": "M", "algorithm": "cdsgd"}],
                "training": {"rounds": 4, "batch_size": 16, "lr": 0.1, "seed": 3},
                **CASES[case]}
    return MethodPlan.of(tiny_scenario(**settings), "M")


def tolerance(plan: MethodPlan) -> float:
    """How far two paths may differ: 1e-5 in float32, 1e-10 in the float64 check mode."""
    return 1e-10 if plan.dtype == torch.float64 else 1e-5


def assert_same_parameters(got: FinalParameters, want: FinalParameters,
                           atol: float = 1e-5) -> None:
    assert sorted(got) == sorted(want)
    for agent in want:
        for a, b in zip(got[agent], want[agent], strict=True):
            assert a.dtype == b.dtype
            np.testing.assert_allclose(a, b, rtol=0, atol=atol)


def assert_same_metrics(got: dict[int, dict[str, float]],
                        want: dict[int, dict[str, float]], rel: float = 1e-5) -> None:
    assert sorted(got) == sorted(want)
    for server_round in want:
        expected = {key: value for key, value in want[server_round].items()
                    if not key.startswith(TIMES)}
        measured = {key: value for key, value in got[server_round].items()
                    if not key.startswith(TIMES)}
        assert sorted(measured) == sorted(expected), server_round
        for key, value in expected.items():
            assert measured[key] == pytest.approx(value, rel=rel, abs=2 * rel), \
                (server_round, key)


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_both_engines_end_with_the_same_parameters_and_metrics(case: str) -> None:
    plan = _plan(case)
    flower_final, flower_rounds, flower_events = observed_run(plan, FlowerEngine())
    final, rounds, events = observed_run(plan, VectorizedEngine())
    assert_same_parameters(final, flower_final, tolerance(plan))
    assert_same_metrics(rounds, flower_rounds, 1e-9 if plan.dtype == torch.float64 else 1e-5)
    assert events == flower_events
    assert rounds[1]["router_bytes_moved"] > 0
    if "network" in CASES[case]:
        assert rounds[plan.rounds]["sim_time_s"] == pytest.approx(
            sum(rounds[k]["compute_time_s"] + rounds[k]["communication_time_s"]
                for k in rounds), rel=1e-9)


@pytest.mark.parametrize("case", ["cdsgd-ring", "polyak-local-steps-weight-decay",
                                  "nesterov-diminishing", "centralized-sgd",
                                  "local-velocity-nesterov", "nesterov-crash-and-link-drops",
                                  "float64-nesterov-ring"])
def test_gossip_methods_equal_the_matrix_form(case: str) -> None:
    plan = _plan(case)
    final, _, _ = observed_run(plan, VectorizedEngine())
    expected = reference_gossip(plan)
    assert_same_parameters(final, expected, tolerance(plan))
    start = plan.initial_parameters
    assert not np.allclose(final[0][0], start[0])  # it trained


@pytest.mark.parametrize("agents", [8, 13])
def test_sparse_and_dense_mixing_agree(agents: int) -> None:
    plan = MethodPlan.of(tiny_scenario(topology={"kind": "ring", "agents": agents}), "CDSGD")
    points = [torch.randn(agents, 7, 3), torch.randn(agents, 5)]
    sparse = Mixer(plan.topology.mixing_matrix, torch.device("cpu"), dense=False)(points)
    dense = Mixer(plan.topology.mixing_matrix, torch.device("cpu"), dense=True)(points)
    matrix = torch.as_tensor(plan.topology.mixing_matrix, dtype=torch.float32)
    for s, d, p in zip(sparse, dense, points, strict=True):
        torch.testing.assert_close(s, d, rtol=0, atol=1e-6)
        torch.testing.assert_close(d, torch.einsum("jl,l...->j...", matrix, p), rtol=0,
                                   atol=1e-6)
    # The default picks dense above a quarter of non-zero entries (a ring has 3 per row).
    assert Mixer(plan.topology.mixing_matrix, torch.device("cpu")).dense == (3 / agents > 0.25)


@pytest.mark.parametrize("chunk", [1, 3])
def test_chunked_calls_equal_one_call(chunk: int) -> None:
    """7 agents in calls of 1 or 3 (3 does not divide 7), against all agents at once."""
    scenario = tiny_scenario(topology={"kind": "ring", "agents": 7},
                             methods=[{"name": "M", "algorithm": "cdmsgd"}],
                             training={"rounds": 3, "batch_size": 16, "lr": 0.1, "seed": 5,
                                       "eval_every": 1})
    plan = MethodPlan.of(scenario, "M")
    whole, whole_rounds, _ = observed_run(plan, VectorizedEngine(chunk=100))
    chunked, chunked_rounds, _ = observed_run(plan, VectorizedEngine(chunk=chunk))
    assert_same_parameters(chunked, whole)
    assert_same_metrics(chunked_rounds, whole_rounds)


def test_fedavg_trains_the_agents_the_plan_samples() -> None:
    """⌊0.5 × 6⌋ = 3 agents a round, the plan's draw (the one the Flower engine shows its
    strategy: tests/test_equality_matrix.py compares the two engines' sampled runs)."""
    scenario = tiny_scenario(topology={"kind": "complete", "agents": 6},
                             methods=[{"name": "M", "algorithm": "fedavg", "fraction": 0.5}],
                             training={"rounds": 4, "batch_size": 32, "lr": 0.1, "seed": 0})
    plan = MethodPlan.of(scenario, "M")
    trained: list[list[int]] = []
    _, rounds, _ = observed_run(plan, VectorizedEngine())
    VectorizedEngine().run(plan, lambda report: trained.append(report.agents), lambda *_: None)
    assert [rounds[k]["agents_reporting"] for k in range(1, 5)] == [3, 3, 3, 3]
    assert trained == [plan.sampled_agents(k, range(6)) for k in range(1, 5)]


SCENARIO = """\
name: vectorized-cli
model: {name: mlp, hidden: [16]}
topology: {kind: ring, agents: 6}
training: {rounds: 30, batch_size: 16, lr: 0.1, eval_every: 10}
methods: [{name: CDSGD, algorithm: cdsgd}, {name: FedAvg, algorithm: fedavg}]
tracking: {experiment: vectorized-cli}
"""


def test_the_cli_runs_a_scenario_on_the_vectorized_engine(tmp_path: Path,
                                                         tracking_uri: str) -> None:
    path = tmp_path / "v.yaml"
    path.write_text(SCENARIO)
    done = subprocess.run(
        [sys.executable, "-m", "decentral_bench", "run", str(path), "--engine", "vectorized",
         "--tracking-uri", tracking_uri], capture_output=True, text=True, check=False,
        cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    # Output to a pipe (a log file): progress as lines, each tenth of the rounds once.
    for method in ("CDSGD", "FedAvg"):
        lines = [re.sub(r" [01]\.\d{3}| \(\d+ s\)$", "", line)
                 for line in done.stdout.splitlines() if line.startswith(f"{method} seed=0: ")]
        # The accuracy shown is the latest, measured every 10 rounds: the line says when.
        assert lines == [f"{method} seed=0: started, 30 rounds",
                         *(f"{method} seed=0: round {r}/30" + (
                             f", test acc at round {r // 10 * 10}" if r >= 10 else "")
                           for r in range(3, 30, 3)),
                         f"{method} seed=0: finished, test acc at round 30, "
                         f"{1 if method == 'CDSGD' else 2}/2 runs done"], done.stdout
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment_id = client.get_experiment_by_name("vectorized-cli").experiment_id
    assert f"then the runs: http://127.0.0.1:5000/#/experiments/{experiment_id}/runs?" \
           "workflowType=machine_learning" in done.stdout
    runs = client.search_runs([experiment_id],
                              filter_string="tags.method != ''")
    assert sorted(run.data.tags["method"] for run in runs) == ["CDSGD", "FedAvg"]
    for run in runs:
        assert run.info.status == "FINISHED"
        assert run.data.params["engine"] == "vectorized"
        history = client.get_metric_history(run.info.run_id, "test_accuracy_mean")
        assert [point.step for point in history] == [10, 20, 30]
        assert history[-1].value > history[0].value


def test_set_overrides_keep_swept_files_relative_to_the_scenario(tmp_path: Path,
                                                                 tracking_uri: str) -> None:
    """`run FILE --set ...` from another folder: swept matrix files are still read from
    the scenario's folder, as without `--set`."""
    folder = tmp_path / "scenarios"
    folder.mkdir()
    for name, weight in (("uniform.csv", 1 / 3), ("lazy.csv", 0.5)):
        off = (1 - weight) / 2
        rows = [[weight if i == j else off for j in range(3)] for i in range(3)]
        (folder / name).write_text("\n".join(",".join(f"{v:.12f}" for v in row)
                                             for row in rows))
    path = folder / "m.yaml"
    path.write_text("""\
name: swept-matrix
model: {name: mlp, hidden: [16]}
topology: {kind: complete, agents: 3, mixing: matrix, matrix_file: uniform.csv}
training: {rounds: 4, batch_size: 16, lr: 0.1}
methods: [{name: CDSGD, algorithm: cdsgd}]
sweep: {topology.matrix_file: [uniform.csv, lazy.csv]}
tracking: {experiment: swept-matrix}
""")
    done = subprocess.run(
        [sys.executable, "-m", "decentral_bench", "run", str(path), "--engine", "vectorized",
         "--set", "model={name: mlp, hidden: [8]}", "--tracking-uri", tracking_uri],
        capture_output=True, text=True, check=False, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    client = MlflowClient(tracking_uri=tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("swept-matrix").experiment_id],
                              filter_string="tags.method != ''")
    assert sorted(run.data.tags["label"] for run in runs) == \
        ["CDSGD matrix_file=lazy.csv", "CDSGD matrix_file=uniform.csv"]
    assert {run.data.params["model.hidden"] for run in runs} == {"[8]"}
