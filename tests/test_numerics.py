"""Reruns that compute the same bits (`training.deterministic`), and the float64 check
mode (`resources.dtype`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, observed_run, tiny_scenario

from decentral_bench.engines.reference import reference_gossip
from decentral_bench.engines.vectorized import VectorizedEngine, memory
from decentral_bench.experiment.plan import MethodPlan
from decentral_bench.experiment.sweep import configuration_hash, scenario_hash

# One run of a scenario on the vectorized engine, in a process of its own; "squeezed" runs
# it as a busier machine would: one CPU, and (almost) no free memory.
RERUN = """
import json, os, sys
import numpy as np
from decentral_bench.engines.vectorized import VectorizedEngine, memory
from decentral_bench.experiment.plan import MethodPlan
from decentral_bench.scenario import parse
scenario, how, out = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
if how == "squeezed":
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    memory.free_memory_bytes = lambda device: 1
plan = MethodPlan.of(parse(scenario, "<rerun>"), "M")
rounds = []
final = VectorizedEngine().run(plan, lambda report: rounds.append(report.agent_metrics),
                               lambda *_: None)
np.savez(out, *[layer for agent in sorted(final) for layer in final[agent]])
with open(out + ".json", "w") as file:
    json.dump(rounds, file)
"""


def _scenario(deterministic: bool) -> dict:
    """The paper's CNN on digits, its gradients batched: its convolutions under vmap sum in
    another order when the batched call holds one agent instead of four."""
    return {"name": "rerun", "dataset": {"name": "digits", "partition": "iid"},
            "model": {"name": "cnn_paper"}, "topology": {"kind": "ring", "agents": 4},
            "resources": {"batched": True},
            "training": {"rounds": 4, "batch_size": 16, "lr": 0.05, "seed": 1,
                         "eval_every": 2, "deterministic": deterministic},
            "methods": [{"name": "M", "algorithm": "cdmsgd"}]}


def _rerun(tmp_path: Path, scenario: dict, how: str) -> tuple[list[np.ndarray], list]:
    out = tmp_path / f"{how}-{scenario['training']['deterministic']}"
    subprocess.run([sys.executable, "-c", RERUN, json.dumps(scenario), how, str(out)],
                   cwd=REPO, check=True)
    with np.load(f"{out}.npz") as arrays:
        layers = [arrays[name] for name in arrays.files]
    return layers, json.loads(Path(f"{out}.json").read_text())


def test_deterministic_reruns_are_bit_identical_on_a_busier_machine(tmp_path: Path) -> None:
    """Two runs in separate processes, the second on one CPU with no free memory: with
    training.deterministic every parameter and every per-round figure has the same bits."""
    first, first_rounds = _rerun(tmp_path, _scenario(True), "plain")
    second, second_rounds = _rerun(tmp_path, _scenario(True), "squeezed")
    assert len(first) == 4 * 12  # 4 agents × the CNN's 12 parameter tensors
    for a, b in zip(first, second, strict=True):
        assert a.dtype == b.dtype == np.float32
        np.testing.assert_array_equal(a, b)
    assert first_rounds == second_rounds
    assert first_rounds[1]["0"]["test_accuracy"] > 0  # evaluated after round 2


@pytest.mark.slow
def test_without_it_the_free_memory_changes_the_bits(tmp_path: Path) -> None:
    """The non-deterministic reduction: agents per batched call followed the free memory,
    and a convolution batched over one agent sums in another order than over four."""
    first, first_rounds = _rerun(tmp_path, _scenario(False), "plain")
    second, second_rounds = _rerun(tmp_path, _scenario(False), "squeezed")
    difference = max(float(np.abs(a - b).max()) for a, b in zip(first, second, strict=True))
    assert 0 < difference < 1e-4
    assert first_rounds != second_rounds


def test_deterministic_chunks_follow_the_total_memory_not_the_free(
        monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setattr(memory, "free_memory_bytes", lambda device: 1)
    assert memory.chunk_memory_bytes(cpu, deterministic=False) == 1
    assert memory.chunk_memory_bytes(cpu, deterministic=True) == \
        int(memory.DETERMINISTIC_MEMORY * memory.total_memory_bytes(cpu))
    assert memory.total_memory_bytes(cpu) > 2**28


def test_a_deterministic_run_restores_torchs_settings() -> None:
    threads = torch.get_num_threads()
    plan = MethodPlan.of(tiny_scenario(training={"rounds": 2, "batch_size": 16, "seed": 0,
                                                 "deterministic": True}), "CDSGD")
    seen: list[tuple[int, bool]] = []
    VectorizedEngine().run(plan, lambda report: seen.append(
        (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled())),
        lambda *_: None)
    assert seen == [(1, True), (1, True)]
    assert torch.get_num_threads() == threads
    assert not torch.are_deterministic_algorithms_enabled()


def test_new_keys_at_their_defaults_keep_the_hashes_of_earlier_runs() -> None:
    """A store's finished runs are recognised after an upgrade: training.deterministic
    and resources.dtype change a run's hash only when set."""
    plain = tiny_scenario()
    assert configuration_hash(plain, "CDSGD") == "dfe6392712ccf79d"  # as before the keys
    assert scenario_hash(plain) == "6d42261b2eb410d4"
    assert scenario_hash(tiny_scenario(resources={"dtype": "float64"})) != scenario_hash(plain)
    assert configuration_hash(tiny_scenario(resources={"dtype": "float32"}), "CDSGD") == \
        configuration_hash(plain, "CDSGD")
    changed = {configuration_hash(tiny_scenario(resources={"dtype": "float64"}), "CDSGD"),
               configuration_hash(tiny_scenario(training={
                   "rounds": 5, "local_steps": 1, "batch_size": 16, "lr": 0.1, "seed": 3,
                   "deterministic": True}), "CDSGD")}
    assert configuration_hash(plain, "CDSGD") not in changed and len(changed) == 2


def test_the_float64_check_mode_runs_in_float64_from_the_float32_start() -> None:
    """x_0 is drawn in float32 and held in float64; the run stays in float64 and equals
    its matrix form to 1e-12, while float32 rounding alone moves it by more than 1e-8."""
    settings = {"methods": [{"name": "M", "algorithm": "cdmsgd"}],
                "topology": {"kind": "ring", "agents": 5},
                "training": {"rounds": 6, "batch_size": 16, "lr": 0.1, "seed": 3}}
    wide = MethodPlan.of(tiny_scenario(**settings, resources={"dtype": "float64"}), "M")
    narrow = MethodPlan.of(tiny_scenario(**settings), "M")
    assert wide.dtype == torch.float64
    for start, start32 in zip(wide.initial_parameters, narrow.initial_parameters, strict=True):
        assert start.dtype == np.float64
        np.testing.assert_array_equal(start, start32.astype(np.float64))
    final, rounds, _ = observed_run(wide, VectorizedEngine())
    expected = reference_gossip(wide)
    final32, _, _ = observed_run(narrow, VectorizedEngine())
    rounding = 0.0
    for agent in final:
        for got, want, single in zip(final[agent], expected[agent], final32[agent],
                                     strict=True):
            assert got.dtype == want.dtype == np.float64
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
            rounding = max(rounding, float(np.abs(got - single).max()))
    assert 1e-8 < rounding < 1e-4
    assert rounds[6]["test_accuracy_mean"] > 0
