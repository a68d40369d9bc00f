"""`decentral-bench bench` times every path of a workload and checks they agree."""

from __future__ import annotations

import json
import multiprocessing
import threading
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from decentral_bench.cli.entry import cli
from decentral_bench.engines.benchmark.machine import MachineRates, round_work
from decentral_bench.engines.benchmark.processes import Turns
from decentral_bench.engines.benchmark.workloads import build_plan


def _bench(tmp_path: Path, *arguments: str) -> dict:
    output = tmp_path / "bench.json"
    done = CliRunner().invoke(cli, ["bench", *arguments, "--output", str(output)])
    assert done.exit_code == 0, done.output
    return json.loads(output.read_text())


def test_the_batched_paths_and_the_plain_loop_end_with_the_same_parameters(
        tmp_path: Path) -> None:
    figures = _bench(tmp_path, "digits-mlp-5", "--rounds", "4", "--paths",
                     "plain,funcloop,vectorized,deterministic")
    assert [result["workload"] for result in figures["results"]] == ["digits-mlp-5"]
    for result in figures["results"]:
        assert result["reference_path"] == "plain"
        assert set(result["max_parameter_difference"]) == {"funcloop", "vectorized",
                                                           "deterministic"}
        assert result["parameters_match"]
        assert result["interleaved"]
        paths = result["paths"]
        for path in ("plain", "funcloop", "vectorized", "deterministic"):
            path_figures = paths[path]
            times = path_figures["round_times"]
            assert len(times) == 4
            # the steady state: the median round without the first (warm-up) and the last
            assert path_figures["round_s"] == pytest.approx(np.median(times[1:-1]), abs=1e-5)
            assert path_figures["peak_memory_mb"] > 0
            assert path_figures["bandwidth_gb_s"] > 0 and path_figures["gflop_s"] > 0
            assert path_figures["limit_s"] == pytest.approx(max(
                result["work"]["gflop"] / path_figures["gflop_s"],
                result["work"]["traffic_gb"] / path_figures["bandwidth_gb_s"]))
        assert result["vectorized_over_funcloop"] == pytest.approx(
            paths["vectorized"]["round_s"] / paths["funcloop"]["round_s"], rel=1e-9)
        assert result["vectorized_peak_over_funcloop"] > 0
        assert result["deterministic_over_vectorized"] == pytest.approx(
            paths["deterministic"]["round_s"] / paths["vectorized"]["round_s"], rel=1e-9)
    assert figures["environment"]["flwr"] == "1.41.0"


def test_a_rounds_work_is_its_gradients_mixing_and_least_traffic() -> None:
    """The MLP [64] on digits (64 inputs, 10 classes), written out: per sample a forward
    pass of 2·(64·64 + 64·10) FLOPs, the weights' gradients as many again and the hidden
    layer's gradient 2·64·10; a ring's Π has 3 entries per row."""
    plan = build_plan("digits-mlp-32")
    parameters = 64 * 64 + 64 + 64 * 10 + 10
    samples = sum(min(len(part), plan.batch_size) for part in plan.partitions)
    per_sample = 2 * 2 * (64 * 64 + 64 * 10) + 2 * 64 * 10
    work = round_work(plan)
    assert work.gflop * 1e9 == pytest.approx(per_sample * samples + 2 * 3 * 32 * parameters)
    assert work.traffic_gb * 1e9 == pytest.approx(2 * 4 * parameters * 32 + 4 * 64 * samples)
    rates = MachineRates(bandwidth_gb_s=10.0, gflop_s=100.0)
    assert work.floor_s(rates) == max(work.gflop / 100.0, work.traffic_gb / 10.0)


@pytest.mark.slow
def test_the_flower_path_is_timed_beside_the_vectorized_engine(tmp_path: Path) -> None:
    figures = _bench(tmp_path, "digits-mlp-5", "--rounds", "4", "--paths", "flower,vectorized")
    [result] = figures["results"]
    assert result["reference_path"] == "vectorized"
    assert result["parameters_match"]
    paths = result["paths"]
    assert len(paths["flower"]["round_times"]) == 4
    # The figure is measured, not asserted: how much faster depends on the machine.
    assert result["speedup_vectorized_over_flower"] == pytest.approx(
        paths["flower"]["round_s"] / paths["vectorized"]["round_s"], rel=1e-9)


def test_unknown_workloads_and_paths_are_refused(tmp_path: Path) -> None:
    done = CliRunner().invoke(cli, ["bench", "digits-mlp-5", "--paths", "warp"])
    assert done.exit_code == 2
    assert "unknown workload or path warp" in done.output


def test_interleaved_paths_take_turns_round_by_round() -> None:
    """Three paths of 3, 1 and 2 rounds: each runs a round when its turn comes, in order,
    and one that has finished leaves the rotation."""
    turns = Turns(multiprocessing.get_context("spawn"), 3)
    done: list[tuple[int, int]] = []

    def path(me: int, rounds: int) -> None:
        turns.wait(me)
        for server_round in range(1, rounds + 1):
            done.append((me, server_round))
            if server_round < rounds:
                turns.take_turn(me)
        turns.finish(me)

    threads = [threading.Thread(target=path, args=(me, rounds))
               for me, rounds in ((2, 2), (0, 3), (1, 1))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert done == [(0, 1), (1, 1), (2, 1), (0, 2), (2, 2), (0, 3)]
