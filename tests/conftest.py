"""Shared fixtures: small scenarios and a throw-away MLflow store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flwr.supercore.task_identity import TaskIdentity

from decentral_bench.engines.base import Engine, FinalParameters
from decentral_bench.engines.flower.simulation import FlowerEngine
from decentral_bench.engines.observer import RoundObserver
from decentral_bench.experiment.plan import MethodPlan
from decentral_bench.scenario import Scenario, parse


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


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    """A fresh sqlite MLflow store in a temporary folder."""
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


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


# The slow tests `make test` still runs: one of each kind of real run (the product learns on
# Flower, Flower equals the matrix form, the engines agree, `flwr run`'s apps, a real MLflow
# server), so the default suite exercises the Flower engine end to end in a few minutes.
# `make test-slow` runs every slow test.
CORE = (
    "test_end_to_end.py::test_the_product_learns",
    "test_equivalence.py::test_flower_run_equals_matrix_form_on_a_4_ring[cdmsgd-polyak]",
    "test_vectorized.py::test_both_engines_end_with_the_same_parameters_and_metrics[cdsgd-ring]",
    "test_vectorized.py::test_both_engines_end_with_the_same_parameters_and_metrics["
    "float64-nesterov-ring]",
    "test_flwr_app.py::test_module_level_apps_run_a_scenario_from_the_run_config",
    "test_robustness.py::test_a_run_records_into_a_real_mlflow_server",
    "test_byzantine_engines.py::test_both_engines_agree_under_attack"
    "[clipped-gossip-nesterov-dissensus]",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid.endswith(CORE):
            item.add_marker(pytest.mark.core)
