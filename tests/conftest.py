"""Shared fixtures: small scenarios and a throw-away MLflow store."""

from __future__ import annotations

import signal
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from flwr.supercore.task_identity import TaskIdentity
from hypothesis import HealthCheck, settings
from mlflow.tracking import MlflowClient

from decentral_bench.cli import entry as cli
from decentral_bench.engines import stopping
from decentral_bench.engines.base import Engine, FinalParameters, average_model
from decentral_bench.engines.flower.simulation import FlowerEngine
from decentral_bench.engines.observer import RoundObserver
from decentral_bench.engines.vectorized import VectorizedEngine
from decentral_bench.experiment.plan import MethodPlan
from decentral_bench.run.artifacts import FINAL_MODEL
from decentral_bench.scenario import Scenario, parse

# Hypothesis: the same examples on every run by default (CI, `make test`), so a failure is
# the code's and repeats; `make test-explore` draws new ones (`--hypothesis-profile
# explore`), many more, and prints how to replay a failure it finds.
_HYPOTHESIS = {"deadline": None, "database": None,
               "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}
settings.register_profile("repeatable", max_examples=30, derandomize=True, **_HYPOTHESIS)
settings.register_profile("explore", max_examples=1000, print_blob=True, **_HYPOTHESIS)
settings.load_profile("repeatable")


def tiny_scenario(**overrides: object) -> Scenario:
    """A digits scenario small enough to simulate in seconds."""
    data: dict = {
        "name": "tiny",
        "dataset": {"name": "digits", "partition": "iid", "test_fraction": 0.2},
        "model": {"name": "mlp", "hidden": [16]},
        "topology": {"kind": "ring", "agents": 4},
        "training": {"rounds": 5, "local_steps": 1, "batch_size": 16, "lr": 0.1, "seed": 3},
        "methods": [{"name": "CDSGD", "algorithm": "cdsgd"}],
    }
    for key, value in overrides.items():
        section, _, field = key.partition("__")
        if field:
            data[section][field] = value
        else:
            data[section] = value
    return parse(data, "<test>")


@pytest.fixture
def task_identity() -> Iterator[None]:
    """Messages built outside a running Flower app need an identity to stamp; the
    process's own identity is put back afterwards."""
    saved = TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 1
    yield
    TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = saved


REPO = Path(__file__).resolve().parents[1]
# What a run or a store leaves in its working folder.
RUN_OUTPUTS = ("mlruns", "mlartifacts", "mlflow.db", "mlflow.db.lock", "bench.json")


def _outputs_in_checkout() -> set[Path]:
    found = set()
    for name in RUN_OUTPUTS:
        path = REPO / name
        if path.exists():
            found |= {path, *path.rglob("*")}
    return found


@pytest.fixture(scope="session", autouse=True)
def no_litter_in_the_checkout() -> Iterator[None]:
    """Tests write only under pytest's temporary folders: after the session, no run
    folder, store or figure file is new in the checkout."""
    before = _outputs_in_checkout()
    yield
    new = sorted(str(path.relative_to(REPO)) for path in _outputs_in_checkout() - before)
    assert not new, f"the tests wrote into the checkout: {new[:10]}"


@pytest.fixture(autouse=True)
def no_stop_left_behind() -> Iterator[None]:
    """A stop that a test asked for (`engines.stopping`) ends with that test."""
    yield
    stopping.clear()


@pytest.fixture
def main_exit(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
              ) -> Callable[..., tuple[object, str]]:
    """Run the console script's `main()` with arguments; its exit status and stderr.
    Restores what main() replaces in the process (signal handlers, warnings' display)."""
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)

    def run(*arguments: str) -> tuple[object, str]:
        monkeypatch.setattr(sys, "argv", ["decentral-bench", *arguments])
        handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT,
                                                                    signal.SIGTERM)}
        try:
            with pytest.raises(SystemExit) as exited:
                cli.main()
        finally:
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
        return exited.value.code, capsys.readouterr().err

    return run


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    """A fresh sqlite MLflow store in a temporary folder."""
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


# Round metrics that are functions of the agents' points, equal on every engine.
EQUAL_METRICS = ("consensus_distance", "test_accuracy_mean", "test_loss_mean",
                 "train_loss_mean", "minibatch_loss_mean", "average_model_test_loss",
                 "bytes_moved")


def observed_run(plan: MethodPlan, engine: Engine | None = None,
                 ) -> tuple[FinalParameters, dict[int, dict[str, float]], list[tuple[int, str]]]:
    """Run `plan` on `engine` (default: the Flower engine) through the product's observer.
    Returns the final parameters, each round's metrics and the events."""
    rounds: dict[int, dict[str, float]] = {}
    events: list[tuple[int, str]] = []

    def on_event(server_round: int, text: str) -> None:
        events.append((server_round, text))

    observer = RoundObserver(plan, rounds.__setitem__, on_event)
    final = (engine or FlowerEngine()).run(plan, observer.observe, on_event)
    return final, rounds, events


def recorded_model(uri: str, run_id: str, folder: Path) -> list[np.ndarray]:
    """The average final model a run recorded (`model/average.npz`), in parameter order."""
    path = MlflowClient(tracking_uri=uri).download_artifacts(run_id, FINAL_MODEL, str(folder))
    with np.load(path) as arrays:
        return [arrays[name] for name in arrays.files]


def recorded_events(uri: str, run_id: str, folder: Path) -> str:
    """The events a run recorded (`events.txt`; empty when it recorded none)."""
    client = MlflowClient(tracking_uri=uri)
    if "events.txt" not in {item.path for item in client.list_artifacts(run_id)}:
        return ""
    return Path(client.download_artifacts(run_id, "events.txt", str(folder))).read_text()


def assert_run_equals_simulation(uri: str, run_id: str, plan: MethodPlan, folder: Path,
                                 keys: tuple[str, ...] = EQUAL_METRICS) -> None:
    """A recorded run (a deployment, `flwr run`) ends with the average model a simulation
    of `plan` on the vectorized engine ends with, and logged the same round metrics.

    First, its agents failed in the rounds the simulation's did (none, without modelled
    failures): an agent whose message got an error reply keeps its last point and the run
    goes on (`GossipRouter.exchange`, tests/test_failures.py), so a run whose ClientApp
    died (on a machine short of memory Ray's OOM killer ends actors: seen as a CDMSGD flwr
    run 0.03 away from the simulation) is another run; the message then says why."""
    final, rounds, _ = observed_run(plan, VectorizedEngine())
    client = MlflowClient(tracking_uri=uri)
    failed = {point.step: point.value
              for point in client.get_metric_history(run_id, "agents_failed")}
    simulated = {k: metrics["agents_failed"] for k, metrics in rounds.items()}
    assert failed == simulated, f"agents failed by round: {failed}, in the simulation: " \
        f"{simulated}; the run's events:\n{recorded_events(uri, run_id, folder)}"
    for got, want in zip(recorded_model(uri, run_id, folder), average_model(final),
                         strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    for key in keys:
        history = {point.step: point.value for point in client.get_metric_history(run_id, key)}
        expected = {k: metrics[key] for k, metrics in rounds.items() if key in metrics}
        assert sorted(history) == sorted(expected), key
        for k, value in expected.items():
            assert history[k] == pytest.approx(value, rel=1e-5, abs=1e-6), (key, k)


# The slow tests `make test` still runs: one of each kind of real run (the product learns on
# Flower, Flower equals the matrix form, the engines agree, also on compressed messages whose
# encoding the Flower wire carries, `flwr run`'s apps, a real MLflow server), so the default
# suite exercises the Flower engine end to end in a few minutes.
# `make test-slow` runs every slow test.
CORE = (
    "test_end_to_end.py::test_the_product_learns",
    "test_equivalence.py::test_flower_run_equals_matrix_form_on_a_4_ring[cdmsgd-polyak]",
    "test_vectorized.py::test_both_engines_end_with_the_same_parameters_and_metrics[cdsgd-ring]",
    "test_compressed_engines.py::test_both_engines_agree_and_the_wire_carries_the_encoding"
    "[choco-top_k]",
    "test_vectorized.py::test_both_engines_end_with_the_same_parameters_and_metrics["
    "float64-nesterov-ring]",
    "test_flwr_app.py::test_module_level_apps_run_a_scenario_from_the_run_config",
    "test_robustness.py::test_a_run_records_into_a_real_mlflow_server[vectorized]",
    "test_byzantine_engines.py::test_both_engines_agree_under_attack"
    "[clipped-gossip-nesterov-dissensus]",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid.endswith(CORE):
            item.add_marker(pytest.mark.core)
