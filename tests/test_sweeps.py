"""Sweeps × seeds, resumable runs, diverged and crashed children, and reports."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import tiny_scenario
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from decentral_bench.experiment.effective import effective_settings
from decentral_bench.experiment.sweep import configuration_hash, expand
from decentral_bench.scenario import Scenario, ScenarioError, parse
from decentral_bench.scenario.network import NetworkConfig


def _sweep_scenario(**overrides: object) -> Scenario:
    return tiny_scenario(
        methods=[{"name": "CDSGD", "algorithm": "cdsgd"},
                 {"name": "FedAvg", "algorithm": "fedavg"}],
        training={"rounds": 2, "batch_size": 16, "lr": 0.1, "seeds": [0, 1, 2]},
        sweep={"topology.agents": [2, 8, 16], "dataset.partition.alpha": [0.1, 1.0]},
        dataset={"name": "digits", "partition": {"kind": "dirichlet", "alpha": 0.5}},
        **overrides)


def test_sweep_expands_combinations_seeds_and_methods() -> None:
    specs = expand(_sweep_scenario())
    assert len(specs) == 3 * 2 * 3 * 2  # agents × alpha × seeds × methods
    first = specs[0]
    assert first.scenario.topology.agents == 2
    assert first.scenario.dataset.partition.alpha == 0.1
    assert first.scenario.training.seed == 0 and first.scenario.training.seeds is None
    assert first.scenario.sweep == {}
    assert first.name == "CDSGD agents=2 alpha=0.1 seed=0"
    assert len({spec.config_hash for spec in specs}) == len(specs)


def test_configuration_hashes_are_stable() -> None:
    hashes = [spec.config_hash for spec in expand(_sweep_scenario())]
    assert hashes == [spec.config_hash for spec in expand(_sweep_scenario())]
    # Where the results go does not change what a run computes.
    moved = _sweep_scenario(tracking={"uri": "sqlite:///elsewhere.db", "experiment": "x"})
    assert hashes == [spec.config_hash for spec in expand(moved)]
    one = expand(_sweep_scenario())[0]
    assert configuration_hash(one.scenario.model_copy(update={"name": "renamed"}),
                              "CDSGD") == one.config_hash
    # A scenario without a network hashes as it did before the format had the section, so
    # finished runs of older stores are still recognised; with one, the network counts.
    assert "network" not in effective_settings(one.scenario, "CDSGD")
    timed = one.scenario.model_copy(update={"network": NetworkConfig()})
    assert configuration_hash(timed, "CDSGD") != one.config_hash


def test_sweep_rejects_unknown_and_unsweepable_keys() -> None:
    base = {"name": "x", "methods": [{"name": "a", "algorithm": "cdsgd"}]}
    with pytest.raises(ScenarioError, match=r"sweep: unknown key 'topology\.agnets' \(did you "
                                            r"mean 'topology\.agents'\?\)"):
        parse({**base, "sweep": {"topology.agnets": [2, 4]}}, "s.yaml")
    with pytest.raises(ScenarioError, match=r"'training\.seed' cannot be swept \(use training"):
        parse({**base, "sweep": {"training.seed": [1, 2]}}, "s.yaml")
    with pytest.raises(ScenarioError, match=r"sweep: 'topology\.agents' value 2 \(0\): Input "
                                            "should be greater than or equal to 1"):
        parse({**base, "sweep": {"topology.agents": [2, 0]}}, "s.yaml")
    # A value valid on its own may still clash with the rest of its combination.
    with pytest.raises(ScenarioError, match=r"sweep \(dataset\.partition\.alpha=0\.1\): "
                                            r"dataset\.partition: 'alpha' applies to kind"):
        expand(parse({**base, "sweep": {"dataset.partition.alpha": [0.1]}}, "s.yaml"), "s.yaml")


@pytest.mark.slow
def test_resume_skips_finished_runs_and_marks_failures(tmp_path: Path, tracking_uri: str,
                                                      ) -> None:
    from decentral_bench.engines.flower.simulation import FlowerEngine
    from decentral_bench.run.runner import run_scenario

    scenario = tiny_scenario(
        name="resume",
        dataset={"name": "digits", "partition": "iid", "root": str(tmp_path)},
        training={"rounds": 2, "batch_size": 16, "lr": 0.1, "seeds": [0]},
        sweep={"training.lr": [0.1, 1e38], "dataset.name": ["digits", "fashion_mnist"]},
        tracking={"uri": tracking_uri})
    first = run_scenario(scenario, FlowerEngine())
    statuses = {run.name: (run.status, run.error) for run in first.runs}
    assert statuses["CDSGD lr=0.1 name=digits seed=0"] == ("FINISHED", None)
    assert statuses["CDSGD lr=1e+38 name=digits seed=0"] == ("FAILED", "diverged at round 2")
    assert statuses["CDSGD lr=0.1 name=fashion_mnist seed=0"][0] == "FAILED"
    assert "Fashion-MNIST not found" in statuses["CDSGD lr=0.1 name=fashion_mnist seed=0"][1]

    client = MlflowClient(tracking_uri=tracking_uri)
    children = client.search_runs(
        [client.get_run(first.parent_run_id).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{first.parent_run_id}'")
    assert len(children) == 4
    crashed = next(c for c in children if c.info.run_name.startswith("CDSGD lr=0.1 name=fashion"))
    assert crashed.info.status == "FAILED"
    assert "Fashion-MNIST not found" in crashed.data.tags["error"]
    diverged = next(c for c in children if c.info.run_name.startswith("CDSGD lr=1e+38 name=dig"))
    assert diverged.data.tags["error"] == "diverged at round 2"
    # The reports read the reason back: only the group whose every run diverged counts so.
    from decentral_bench.report.summary import group_records
    from decentral_bench.tracking.store import load_records

    groups = group_records(load_records(client, first.parent_run_id))
    assert [group.label for group in groups if group.diverged] == ["CDSGD lr=1e+38 name=digits"]

    # Again, with one more seed: the finished child is skipped, the rest run.
    wider = scenario.model_copy(update={"training": scenario.training.model_copy(
        update={"seeds": (0, 1)})})
    wider = parse(wider.model_dump(mode="json"), "<test>")
    second = run_scenario(wider, FlowerEngine())
    assert second.parent_run_id == first.parent_run_id
    assert second.skipped == 1
    assert len(second.runs) == 7
    children = client.search_runs(
        [client.get_run(first.parent_run_id).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{first.parent_run_id}'")
    finished = [c for c in children if c.info.status == "FINISHED"]
    assert len(children) == 11
    assert sorted(c.info.run_name for c in finished) == [
        "CDSGD lr=0.1 name=digits seed=0", "CDSGD lr=0.1 name=digits seed=1"]

    # The report printed from the store is the table logged on the parent.
    from decentral_bench.cli.entry import cli

    printed = CliRunner().invoke(cli, ["report", first.parent_run_id, "--tracking-uri",
                                       tracking_uri, "--csv"])
    assert printed.exit_code == 0, printed.output
    logged = Path(client.download_artifacts(first.parent_run_id, "summary.csv", str(tmp_path)))
    assert printed.stdout == logged.read_text()
    assert "CDSGD lr=0.1 name=digits,2,FINISHED" in printed.stdout
    artifacts = {a.path for a in client.list_artifacts(first.parent_run_id, "plots")}
    assert {"plots/test_accuracy_mean.png", "plots/train_accuracy_mean.png",
            "plots/consensus_distance.png", "plots/accuracy_spread.png"} <= artifacts
