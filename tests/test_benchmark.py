"""`decentral-bench bench` times every path of a workload and checks they agree."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from decentral_bench.cli.entry import cli


def _bench(tmp_path: Path, *arguments: str) -> dict:
    output = tmp_path / "bench.json"
    done = CliRunner().invoke(cli, ["bench", *arguments, "--output", str(output)])
    assert done.exit_code == 0, done.output
    return json.loads(output.read_text())


def test_the_batched_paths_and_the_plain_loop_end_with_the_same_parameters(
        tmp_path: Path) -> None:
    figures = _bench(tmp_path, "digits-mlp-5", "digits-mlp-32", "--rounds", "4", "--paths",
                     "plain,funcloop,vectorized,deterministic")
    assert [result["workload"] for result in figures["results"]] == ["digits-mlp-5",
                                                                      "digits-mlp-32"]
    for result in figures["results"]:
        assert result["reference_path"] == "plain"
        assert set(result["max_parameter_difference"]) == {"funcloop", "vectorized",
                                                           "deterministic"}
        assert result["parameters_match"]
        paths = result["paths"]
        for path in ("plain", "funcloop", "vectorized", "deterministic"):
            times = paths[path]["round_times"]
            assert len(times) == 4
            # the steady state: the median round without the first (warm-up) and the last
            assert paths[path]["round_s"] == pytest.approx(np.median(times[1:-1]), abs=1e-5)
        assert result["vectorized_over_funcloop"] == pytest.approx(
            paths["vectorized"]["round_s"] / paths["funcloop"]["round_s"], rel=1e-9)
        assert result["deterministic_over_vectorized"] == pytest.approx(
            paths["deterministic"]["round_s"] / paths["vectorized"]["round_s"], rel=1e-9)
    assert figures["environment"]["flwr"] == "1.41.0"


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
