"""Child runs in parallel: each child's share of the machine (CPUs, memory, GPUs), `--jobs`
and its bad input, and real sweeps of child processes that end as the same runs as one
after another, whatever stops them (a failing child, --fail-fast, Ctrl-C, kill -9)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from decentral_bench.cli import entry as cli
from decentral_bench.engines.vectorized import memory
from decentral_bench.engines.vectorized.memory import agents_per_call, run_device_bytes
from decentral_bench.experiment import training
from decentral_bench.run import share
from decentral_bench.run.checks import check_scenario
from decentral_bench.run.errors import EXIT_ENVIRONMENT
from decentral_bench.run.share import DeviceShares, Share, auto_jobs, gpus_per_run
from decentral_bench.scenario import ScenarioError, load

TINY = """\
name: {name}
model: {{name: mlp, hidden: [8]}}
topology: {{kind: ring, agents: 3}}
training: {{rounds: {rounds}, batch_size: 16, eval_every: {every}}}
methods: [{{name: CDSGD, algorithm: cdsgd}}, {{name: FedAvg, algorithm: fedavg}}]
sweep: {{training.lr: {rates}}}
tracking: {{experiment: {name}}}
resources: {{engine: vectorized}}
"""


def _scenario(folder: Path, name: str = "par", rounds: int = 30, rates: str = "[0.05, 0.1]",
              extra: str = "") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(TINY.format(name=name, rounds=rounds, every=max(rounds // 3, 1),
                                rates=rates) + extra)
    return path


# ---------------------------------------------------------------- shares of the machine


def test_a_childs_cpu_share_caps_the_cpus_it_uses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.delenv(training.CPU_SHARE_VARIABLE, raising=False)
    assert training.available_cpus() == 4
    monkeypatch.setenv(training.CPU_SHARE_VARIABLE, "3")
    assert training.available_cpus() == 3
    monkeypatch.setenv(training.CPU_SHARE_VARIABLE, "16")  # a share beyond what it may use
    assert training.available_cpus() == 4
    assert Share(cpus=2, memory=0.5).environment() == {
        training.CPU_SHARE_VARIABLE: "2", memory.MEMORY_SHARE_VARIABLE: "0.5"}
    assert Share(2, 0.5, (1, 3)).environment()["CUDA_VISIBLE_DEVICES"] == "1,3"


def test_a_childs_memory_share_shrinks_its_batched_calls(monkeypatch: pytest.MonkeyPatch,
                                                         ) -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32),
                                torch.nn.Linear(32, 10))
    sample = torch.zeros(1, 8, 8)
    monkeypatch.setattr(memory, "free_memory_bytes", lambda device: 2**30)
    monkeypatch.delenv(memory.MEMORY_SHARE_VARIABLE, raising=False)
    # 3 copies of 32 samples' activations (flatten 64, 32, 10, the whole model's 10) and
    # 4 of the 2410 parameters, in float32
    per_agent = 4 * (3 * 32 * (64 + 32 + 10 + 10) + 4 * (64 * 32 + 32 + 32 * 10 + 10))
    whole = agents_per_call(model, sample, 32, 10**6, torch.device("cpu"))
    assert whole == int(0.4 * 2**30 / per_agent)
    monkeypatch.setenv(memory.MEMORY_SHARE_VARIABLE, "0.25")
    assert agents_per_call(model, sample, 32, 10**6, torch.device("cpu")) == \
        int(0.1 * 2**30 / per_agent)


def test_devices_are_lent_whole_or_in_shares_and_given_back() -> None:
    shares = DeviceShares.of(2)
    assert shares.take(1.0) == (0,)
    assert shares.take(2.0) is None  # one device is left
    assert shares.take(0.5) == (1,)
    assert shares.take(0.5) == (1,)
    assert shares.take(0.5) is None
    shares.give_back((0,), 1.0)
    assert shares.take(2.0) is None
    shares.give_back((1,), 0.5)
    shares.give_back((1,), 0.5)
    assert shares.take(2.0) == (0, 1)
    assert shares.left == [0.0, 0.0]


@pytest.mark.parametrize(("devices", "jobs", "each"), [(1, 1, 1.0), (1, 2, 0.5), (2, 2, 1.0),
                                                       (2, 3, 0.5), (4, 12, 1 / 3)])
def test_runs_get_whole_devices_while_there_are_enough(tmp_path: Path, devices: int, jobs: int,
                                                       each: float) -> None:
    scenario = load(_scenario(tmp_path))
    assert gpus_per_run(scenario, devices, jobs) == pytest.approx(each)


def test_auto_takes_the_fewest_runs_that_cores_memory_and_count_allow(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    specs = check_scenario(_scenario(tmp_path, rates="[0.01, 0.02, 0.03, 0.04, 0.05]"))[1]
    assert len(specs) == 10
    monkeypatch.setattr(share, "cuda_devices", lambda: 0)
    monkeypatch.setattr(share, "available_cpus", lambda: 16)
    need = share.needs_of(specs[0], 0)
    parameters = 64 * 8 + 8 + 8 * 10 + 10  # the MLP [8] on digits' 1797 images of 8 × 8
    assert need.host_bytes == share.PROCESS_BYTES + run_device_bytes(
        parameters, 3, 1797 * (4 * 64 + 8))
    monkeypatch.setattr(share, "free_memory_bytes", lambda device: 100 * need.host_bytes)
    assert auto_jobs(specs) == 10  # the runs there are
    monkeypatch.setattr(share, "free_memory_bytes", lambda device: 7 * need.host_bytes + 1)
    assert auto_jobs(specs) == 7  # memory
    monkeypatch.setattr(share, "available_cpus", lambda: 2)
    assert auto_jobs(specs) == 2  # cores


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("jobs", ["0", "-1", "2.5", "many"])
def test_a_jobs_count_that_is_no_count_is_refused_in_one_line(tmp_path: Path, jobs: str) -> None:
    done = CliRunner().invoke(cli.cli, ["run", str(_scenario(tmp_path)), f"--jobs={jobs}",
                                        "--tracking-uri", f"sqlite:///{tmp_path / 's.db'}"])
    assert done.exit_code == 2
    assert done.stderr.strip() == (f"error: --jobs {jobs}: expected a whole number of runs at "
                                   "once (1 or more), or auto")
    assert not (tmp_path / "s.db").exists()


@pytest.mark.parametrize(("resources", "key", "words"), [
    ("{parallel_runs: 0}", "resources.parallel_runs",
     "expected a whole number of runs at once (1 or more) or auto, got 0"),
    ("{parallel_runs: some}", "resources.parallel_runs",
     "expected a whole number of runs at once (1 or more) or auto, got 'some'"),
    ("{gpus_per_run: 1.5}", "resources.gpus_per_run",
     "expected a share of one GPU in (0, 1] or a whole number of GPUs, got 1.5"),
    ("{gpus_per_run: 0}", "resources.gpus_per_run", "greater than 0"),
])
def test_bad_parallel_keys_name_the_key(tmp_path: Path, resources: str, key: str,
                                        words: str) -> None:
    path = _scenario(tmp_path).read_text().replace("{engine: vectorized}", resources)
    (tmp_path / "bad.yaml").write_text(path)
    with pytest.raises(ScenarioError) as caught:
        check_scenario(tmp_path / "bad.yaml")
    [problem] = [found for found_key, found in caught.value.problems if found_key == key]
    assert words in problem, caught.value.problems


def test_more_gpus_per_run_than_the_machine_has_is_refused(tmp_path: Path) -> None:
    devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
    text = _scenario(tmp_path).read_text().replace(
        "{engine: vectorized}", f"{{engine: vectorized, gpus_per_run: {devices + 1}}}")
    (tmp_path / "gpus.yaml").write_text(text)
    done = CliRunner().invoke(cli.cli, ["validate", str(tmp_path / "gpus.yaml")])
    assert done.exit_code == 2
    have = "no CUDA device" if devices == 0 else f"{devices} CUDA device"
    asked = "1 GPU" if devices == 0 else f"{devices + 1} GPUs"
    assert f"error: {tmp_path / 'gpus.yaml'}: sweep (training.lr=0.05): resources.gpus_per_run: " \
           f"asks for {asked} per run but this machine has {have}" in done.stderr


def test_a_ray_address_that_does_not_answer_is_one_line_within_seconds(
        tmp_path: Path, main_exit: Callable[..., tuple[object, str]]) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    started = time.monotonic()
    code, message = main_exit("run", str(_scenario(tmp_path)), "--ray-address", address,
                              "--jobs", "2", "--tracking-uri", f"sqlite:///{tmp_path / 's.db'}")
    assert time.monotonic() - started < 15
    assert code == EXIT_ENVIRONMENT
    [line] = message.strip().splitlines()
    assert line.startswith(f"error: no Ray cluster answers at {address} ")
    assert not (tmp_path / "s.db").exists()  # refused before any run was started
