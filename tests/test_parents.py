"""One parent run per experiment and one child run per effective setting: a re-run with
other settings gets a parent of its own, a method that ignores a swept key runs once for
all its values, and labels name every swept key that differs."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import tiny_scenario
from mlflow.tracking import MlflowClient

from decentral_bench.engines.vectorized import VectorizedEngine
from decentral_bench.experiment.effective import effective_settings
from decentral_bench.experiment.sweep import configuration_hash, expand, swept_names
from decentral_bench.report.summary import group_records, shared_runs
from decentral_bench.run.runner import run_scenario
from decentral_bench.scenario import Scenario, parse
from decentral_bench.tracking.store import load_records

METHODS = [{"name": "CDSGD", "algorithm": "cdsgd"}, {"name": "FedAvg", "algorithm": "fedavg"},
           {"name": "SGD", "algorithm": "centralized_sgd"}]


def _topology_sweep(**overrides: object) -> Scenario:
    settings: dict[str, object] = {
        "methods": METHODS, "sweep": {"topology.kind": ["ring", "complete", "star"]},
        "training": {"rounds": 3, "batch_size": 16, "seeds": [0, 1]}}
    return tiny_scenario(**{**settings, **overrides})


def test_a_topology_sweep_runs_the_methods_without_a_graph_once() -> None:
    specs = expand(_topology_sweep())
    names = [spec.name for spec in specs]
    assert names == ["CDSGD kind=ring seed=0", "FedAvg seed=0", "SGD seed=0",
                     "CDSGD kind=ring seed=1", "FedAvg seed=1", "SGD seed=1",
                     "CDSGD kind=complete seed=0", "CDSGD kind=complete seed=1",
                     "CDSGD kind=star seed=0", "CDSGD kind=star seed=1"]
    fedavg = next(spec for spec in specs if spec.method == "FedAvg")
    assert fedavg.swept == () and fedavg.shared == ("topology.kind",)
    assert next(spec for spec in specs if spec.method == "CDSGD").shared == ()
    # The hash is of the effective settings: FedAvg's is the same on every graph, CDSGD's not.
    on = {kind: _topology_sweep(topology={"kind": kind, "agents": 4}, sweep={})
          for kind in ("ring", "star")}
    assert configuration_hash(on["ring"], "FedAvg") == configuration_hash(on["star"], "FedAvg")
    assert configuration_hash(on["ring"], "SGD") == configuration_hash(on["star"], "SGD")
    assert configuration_hash(on["ring"], "CDSGD") != configuration_hash(on["star"], "CDSGD")


def test_effective_settings_drop_only_what_a_method_does_not_read() -> None:
    scenario = tiny_scenario(methods=METHODS, topology={"kind": "ring", "agents": 6},
                             dataset={"name": "digits", "partition": {"kind": "dirichlet",
                                                                      "alpha": 0.5}},
                             failures={"links": {"drop_probability": 0.1}})
    cdsgd, fedavg, sgd = (effective_settings(scenario, m["name"]) for m in METHODS)
    assert cdsgd["topology"]["kind"] == "ring" and cdsgd["failures"]["links"] is not None
    assert "server" not in cdsgd["failures"]  # no server to lose
    assert fedavg["topology"] == {"agents": 6}  # it splits the data over 6 clients
    assert fedavg["dataset"]["partition"]["alpha"] == 0.5
    assert "links" not in fedavg["failures"] and "local_steps" not in fedavg["training"]
    assert "topology" not in sgd and "failures" not in sgd
    assert "partition" not in sgd["dataset"]  # its one agent holds all the data
    assert [m["name"] for m in fedavg["methods"]] == ["FedAvg"]
    # Agents change what FedAvg computes: sweeping them reruns it.
    specs = expand(tiny_scenario(methods=METHODS, sweep={"topology.agents": [2, 4]}))
    assert [spec.name for spec in specs] == ["CDSGD agents=2 seed=3", "FedAvg agents=2 seed=3",
                                             "SGD seed=3", "CDSGD agents=4 seed=3",
                                             "FedAvg agents=4 seed=3"]


def test_labels_name_every_swept_key_apart() -> None:
    assert swept_names(["topology.agents", "dataset.partition.alpha"]) == {
        "topology.agents": "agents", "dataset.partition.alpha": "alpha"}
    assert swept_names(["topology.kind", "dataset.partition.kind", "training.lr"]) == {
        "topology.kind": "topology.kind", "dataset.partition.kind": "partition.kind",
        "training.lr": "lr"}
    specs = expand(tiny_scenario(sweep={"topology.kind": ["ring", "complete"],
                                        "dataset.name": ["digits"]},
                                 dataset={"name": "digits", "partition": "iid"}))
    assert [spec.label for spec in specs] == ["CDSGD kind=ring name=digits",
                                              "CDSGD kind=complete name=digits"]
    both = expand(tiny_scenario(sweep={"topology.kind": ["ring"],
                                       "dataset.partition.kind": ["iid", "by_size"]}))
    assert [spec.label for spec in both] == [
        "CDSGD topology.kind=ring partition.kind=iid",
        "CDSGD topology.kind=ring partition.kind=by_size"]


def _parent_of(result_uri: str, parent_id: str) -> tuple[MlflowClient, list[str]]:
    client = MlflowClient(tracking_uri=result_uri)
    return client, [record.label for record in load_records(client, parent_id)]


def test_other_settings_get_their_own_parent_and_the_same_ones_resume(tracking_uri: str,
                                                                      ) -> None:
    """The file, then `--set topology.kind=torus`, then a Dirichlet α sweep: three
    experiments, three parents; the file again with another seed resumes the first."""
    base = tiny_scenario(name="mine", methods=METHODS[:1], tracking={"uri": tracking_uri},
                         training={"rounds": 2, "batch_size": 16, "seed": 0})
    data = base.model_dump(mode="json")
    torus = parse({**data, "topology": {**data["topology"], "kind": "torus"}}, "<test>")
    alpha = parse({**data, "dataset": {**data["dataset"], "partition": {
        "kind": "dirichlet", "alpha": 0.5}}, "sweep": {"dataset.partition.alpha": [0.1]}},
        "<test>")
    engine = VectorizedEngine()
    first = run_scenario(base, engine)
    parents = [first.parent_run_id, run_scenario(torus, engine).parent_run_id,
               run_scenario(alpha, engine).parent_run_id]
    assert len(set(parents)) == 3
    client, labels = _parent_of(tracking_uri, parents[0])
    assert labels == ["CDSGD"]
    assert _parent_of(tracking_uri, parents[2])[1] == ["CDSGD alpha=0.1"]
    seeds = parse({**data, "training": {**data["training"], "seeds": [0, 1]}}, "<test>")
    again = run_scenario(seeds, engine)
    assert again.parent_run_id == parents[0]  # not the latest parent: the same experiment's
    assert again.skipped == 1 and [run.name for run in again.runs] == ["CDSGD seed=1"]
    assert _parent_of(tracking_uri, parents[0])[1] == ["CDSGD", "CDSGD"]
    parent = client.get_run(parents[0])
    assert parent.data.tags["scenario_hash"] != client.get_run(parents[1]).data.tags[
        "scenario_hash"]


def test_a_method_run_once_for_a_sweep_is_reported_once(tracking_uri: str) -> None:
    scenario = _topology_sweep(name="graphs", tracking={"uri": tracking_uri},
                               training={"rounds": 2, "batch_size": 16, "seed": 0})
    result = run_scenario(scenario, VectorizedEngine())
    assert [run.name for run in result.runs] == [
        "CDSGD kind=ring seed=0", "FedAvg seed=0", "SGD seed=0", "CDSGD kind=complete seed=0",
        "CDSGD kind=star seed=0"]
    assert [row[0] for row in result.summary] == ["CDSGD kind=ring", "FedAvg", "SGD",
                                                  "CDSGD kind=complete", "CDSGD kind=star"]
    note = "FedAvg and SGD do not read topology.kind, so each ran once, not once per swept value"
    assert result.notes == [note]
    client = MlflowClient(tracking_uri=tracking_uri)
    records = load_records(client, result.parent_run_id)
    assert shared_runs(records) == [note]
    assert [group.label for group in group_records(records)].count("FedAvg") == 1
    parent = client.get_run(result.parent_run_id)
    assert note in parent.data.tags["mlflow.note.content"]
    fedavg = next(c for c in records if c.method == "FedAvg")
    assert client.get_run(fedavg.run_id).data.tags["sweep_shared"] == "topology.kind"
    assert "FedAvg does not read topology.kind: this one run stands for every swept value" \
        in client.get_run(fedavg.run_id).data.tags["mlflow.note.content"]


@pytest.mark.slow
def test_run_with_set_starts_its_own_parent_from_the_cli(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from decentral_bench.cli.entry import cli

    scenario = tmp_path / "mine.yaml"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    scenario.write_text(f"""\
name: mine
model: {{name: mlp, hidden: [8]}}
topology: {{kind: ring, agents: 4}}
training: {{rounds: 2, batch_size: 16}}
methods: [{{name: CDSGD, algorithm: cdsgd}}]
resources: {{engine: vectorized}}
tracking: {{uri: "{uri}"}}
""")
    runner = CliRunner()
    for args in ([], ["--set", "topology.kind=torus"], []):
        done = runner.invoke(cli, ["run", str(scenario), *args])
        assert done.exit_code == 0, done.output
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("mine")
    parents = client.search_runs([experiment.experiment_id], "tags.kind = 'scenario'")
    assert len(parents) == 2  # the file's (run, then resumed) and the --set one
    assert "1 runs already finished in this parent run were skipped" in done.output
