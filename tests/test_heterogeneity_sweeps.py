"""Heterogeneity as a sweep axis: the Dirichlet α, the classes per agent, the sizes and the
whole partition are swept like any key, the runs are labelled by the swept value, and the
report draws each method's final accuracy against it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from decentral_bench.engines.vectorized import VectorizedEngine
from decentral_bench.experiment.sweep import expand
from decentral_bench.report.plots import sweep_figure
from decentral_bench.report.summary import Group, RunRecord, group_records
from decentral_bench.run.runner import run_scenario
from decentral_bench.scenario import parse

BASE = {"name": "swept", "dataset": {"name": "digits", "partition": "iid"},
        "model": {"name": "mlp", "hidden": [8]}, "topology": {"kind": "ring", "agents": 4},
        "training": {"rounds": 3, "batch_size": 16, "lr": 0.1},
        "methods": [{"name": "CDSGD", "algorithm": "cdsgd"},
                    {"name": "GT", "algorithm": "gradient_tracking"}]}


@pytest.mark.parametrize(("partition", "path", "values", "labels"), [
    ({"kind": "dirichlet", "alpha": 1.0}, "dataset.partition.alpha", [10.0, 0.1],
     ["alpha=10.0", "alpha=0.1"]),
    ({"kind": "shards", "classes_per_agent": 2}, "dataset.partition.classes_per_agent",
     [2, 5], ["classes_per_agent=2", "classes_per_agent=5"]),
    ({"kind": "by_size"}, "dataset.partition.sizes", [[1, 1, 1, 1], [1, 2, 3, 10]],
     ["sizes=1,1,1,1", "sizes=1,2,3,10"]),
    ("iid", "dataset.partition", ["iid", {"kind": "dirichlet", "alpha": 0.1},
                                  {"kind": "shards", "classes_per_agent": 3}],
     ["partition=iid", "partition=dirichlet(alpha=0.1)",
      "partition=shards(classes_per_agent=3)"]),
])
def test_a_partition_key_is_swept_and_labels_the_runs(partition: object, path: str,
                                                      values: list, labels: list[str]) -> None:
    scenario = parse({**BASE, "dataset": {"name": "digits", "partition": partition},
                      "sweep": {path: values}}, "s.yaml")
    specs = expand(scenario, "s.yaml")
    assert [spec.label for spec in specs] == [f"{method} {label}" for label in labels
                                             for method in ("CDSGD", "GT")]
    counts = {spec.label.split(" ", 1)[1]: spec.scenario.dataset.partition
              for spec in specs}
    if path.endswith("sizes"):
        assert counts["sizes=1,2,3,10"].sizes == (1, 2, 3, 10)
    if path == "dataset.partition":
        assert counts["partition=dirichlet(alpha=0.1)"].kind == "dirichlet"
        assert counts["partition=dirichlet(alpha=0.1)"].alpha == 0.1


def _record(method: str, setting: str, seed: int, accuracy: float) -> RunRecord:
    return RunRecord(run_id=f"{method}{setting}{seed}", config_hash=f"{method}{setting}{seed}",
                     label=f"{method} {setting}", method=method, seed=seed, status="FINISHED",
                     curves={"test_accuracy_mean": [(1, 0.1), (2, accuracy)]})


def test_the_sweep_figure_draws_final_accuracy_against_the_swept_setting() -> None:
    records = [_record(method, setting, seed, accuracy + 0.01 * seed)
               for method, by_setting in (("CDSGD", {"alpha=10": 0.8, "alpha=0.1": 0.6}),
                                          ("GT", {"alpha=10": 0.81, "alpha=0.1": 0.78}))
               for setting, accuracy in by_setting.items() for seed in (0, 1, 2)]
    figure = sweep_figure(group_records(records))
    assert figure is not None
    axes = figure.axes[0]
    assert [tick.get_text() for tick in axes.get_xticklabels()] == ["alpha=10", "alpha=0.1"]
    lines = {bars.get_label(): bars.lines[0] for bars in axes.containers}  # 3 seeds' means
    assert sorted(lines) == ["CDSGD", "GT"]
    np.testing.assert_allclose(np.asarray(lines["CDSGD"].get_ydata(), float), [0.81, 0.61])
    np.testing.assert_allclose(np.asarray(lines["GT"].get_ydata(), float), [0.82, 0.79])
    assert sweep_figure([Group("CDSGD", [_record("CDSGD", "", 0, 0.5)])]) is None


def test_a_run_reports_accuracy_against_the_heterogeneity_level(tmp_path: Path) -> None:
    """A swept partition, run and recorded: the parent holds the figure and the summary's
    rows are the methods at each level."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    scenario = parse({**BASE, "sweep": {"dataset.partition": [
        "iid", {"kind": "shards", "classes_per_agent": 2}]},
        "tracking": {"uri": uri}}, "s.yaml")
    result = run_scenario(scenario, VectorizedEngine())
    assert [row[0] for row in result.summary] == [
        "CDSGD partition=iid", "GT partition=iid", "CDSGD partition=shards(classes_per_agent=2)",
        "GT partition=shards(classes_per_agent=2)"]
    client = MlflowClient(tracking_uri=uri)
    plots = [item.path for item in client.list_artifacts(result.parent_run_id, "plots")]
    assert "plots/final_accuracy_by_sweep.png" in plots
    by_setting = [item.path for item in client.list_artifacts(result.parent_run_id,
                                                              "plots/by_setting")]
    assert by_setting == ["plots/by_setting/test_accuracy_partition=iid.png",
                          "plots/by_setting/test_accuracy_partition=shards_classes_per_agent=2"
                          ".png"]
