"""Writing scenarios: `init` scaffolds a commented file that loads, and `validate
--explain` shows what a scenario will run."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from decentral_bench.cli.entry import cli
from decentral_bench.experiment.plan import MethodPlan
from decentral_bench.experiment.sweep import expand
from decentral_bench.scenario import load
from decentral_bench.scenario.export import SCHEMA_FILE, keys, plain_schema
from decentral_bench.scenario.scaffold import templates

runner = CliRunner()


@pytest.mark.parametrize("name", list(templates()))
def test_init_writes_the_template_commented_and_loading(name: str, tmp_path: Path) -> None:
    target = tmp_path / "sub" / "my-run.yaml"
    target.parent.mkdir()
    done = runner.invoke(cli, ["init", str(target), "--from", name])
    assert done.exit_code == 0, done.output
    written = load(target)
    # The template's scenario, but for its name and experiment (now the file's): its
    # runs go to an MLflow experiment of their own, not the template's.
    template = load(templates()[name])
    tracking = template.tracking.model_copy(update={"experiment": "my-run"})
    assert written == template.model_copy(update={"name": "my-run", "tracking": tracking})
    assert written.tracking.experiment == "my-run"
    text = target.read_text()
    first = text.splitlines()[0]
    assert first == f"# yaml-language-server: $schema={SCHEMA_FILE}"  # outside the repo
    schema = json.loads(SCHEMA_FILE.read_text())
    assert jsonschema.Draft7Validator(schema).is_valid(yaml.safe_load(text))
    # Every key is explained, set or not (sweep's entries are the keys themselves).
    for key in keys(plain_schema()):
        words = key.schema["description"].split()[:6]
        assert " ".join(words) in " ".join(text.replace("#", " ").split()), key.path


def test_init_inside_the_repository_names_the_schema_relatively(tmp_path: Path) -> None:
    target = SCHEMA_FILE.parent / "scenarios" / "paper" / f"init-test-{tmp_path.name}.yaml"
    try:
        assert runner.invoke(cli, ["init", str(target)]).exit_code == 0
        first = target.read_text().splitlines()[0]
        assert first == "# yaml-language-server: $schema=../../scenario.schema.json"
    finally:
        target.unlink(missing_ok=True)


def test_init_never_replaces_a_file_and_names_the_templates(tmp_path: Path) -> None:
    target = tmp_path / "mine.yaml"
    target.write_text("name: mine\n")
    done = runner.invoke(cli, ["init", str(target), "--from", "fashion_mnist"])
    assert done.exit_code == 2
    assert "exists; init never replaces a file" in done.output
    assert target.read_text() == "name: mine\n"
    done = runner.invoke(cli, ["init", str(tmp_path / "new.yaml"), "--from", "imagenet"])
    assert done.exit_code == 2
    assert "no shipped scenario 'imagenet'" in done.output
    assert "quickstart" in done.output and "paper/fig1a_cdsgd_vs_sgd" in done.output
    assert not (tmp_path / "new.yaml").exists()


SWEPT = """\
name: swept
dataset: {name: digits, partition: iid}
topology: {kind: ring, agents: 4}
training: {rounds: 6, batch_size: 16, seeds: [0, 1]}
methods:
  - {name: CDMSGD, algorithm: cdmsgd}
  - {name: FedAvg, algorithm: fedavg, local_epochs: 2, rounds: 3}
sweep:
  topology.agents: [2, 4]
"""


def test_explain_lists_every_default_and_every_run(tmp_path: Path) -> None:
    path = tmp_path / "swept.yaml"
    path.write_text(SWEPT)
    done = runner.invoke(cli, ["validate", str(path), "--explain"])
    assert done.exit_code == 0, done.output
    resolved_text, _, runs_text = done.output.split("\n", 1)[1].partition("\n\n")
    resolved = yaml.safe_load(resolved_text)
    assert resolved["topology"]["mixing"] == "metropolis"           # a default filled in
    assert "alpha" not in resolved["dataset"]["partition"]          # not for iid
    cdmsgd = resolved["methods"][0]
    assert {key: cdmsgd.pop(key) for key in ("epochs", "consensus_control", "aggregation")} == {
        "epochs": pytest.approx(6 * 16 / (1797 * 0.8 / 4), rel=0.01), "consensus_control": None,
        "aggregation": {"kind": "mean", "b": 1, "tau": None}}  # the plain gossip average
    assert cdmsgd == {"name": "CDMSGD", "algorithm": "cdmsgd", "momentum": 0.9,
                      "variant": "nesterov", "momentum_buffer": "local", "lr": 0.1,
                      "local_steps": 1, "batch_size": 16, "rounds": 6}
    assert "local_steps" not in resolved["methods"][1]               # FedAvg forbids it
    assert "seed: null  # default: training.seed" in resolved_text
    assert "# 8 runs: 2 sweep combinations × 2 seeds × 2 methods" in runs_text
    rows = {line[:26].strip(): line[26:].split() for line in runs_text.splitlines()[2:]}
    specs = expand(load(path), str(path))
    assert list(rows) == [spec.name for spec in specs]
    for spec in specs:
        plan = MethodPlan.of(spec.scenario, spec.method)
        rounds, per_round, epochs = rows[spec.name]
        assert int(rounds) == (3 if spec.method == "FedAvg" else 6)
        assert float(per_round) == pytest.approx(plan.epochs_per_round, abs=5e-5)
        assert float(epochs) == pytest.approx(int(rounds) * plan.epochs_per_round, abs=5e-3)
    assert rows["FedAvg agents=2 seed=0"][1:] == ["2.0000", "6.00"]  # E = 2 epochs a round


def test_explain_reports_a_sweep_combination_that_breaks_a_rule(tmp_path: Path) -> None:
    path = tmp_path / "clash.yaml"
    path.write_text("name: clash\nmethods: [{name: a, algorithm: cdsgd}]\n"
                    "sweep: {dataset.partition.alpha: [0.1]}\n")
    done = runner.invoke(cli, ["validate", str(path), "--explain"])
    assert done.exit_code == 2
    assert "sweep (dataset.partition.alpha=0.1): dataset.partition: 'alpha' applies to kind " \
           "'dirichlet' only" in done.output


SHIPPED = sorted((SCHEMA_FILE.parent / "scenarios").rglob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=[str(path.relative_to(SCHEMA_FILE.parent))
                                                for path in SHIPPED])
def test_explain_works_on_every_shipped_scenario(path: Path) -> None:
    done = runner.invoke(cli, ["validate", str(path), "--explain"])
    if done.exit_code == 2:  # only an optional data set that is not on this machine
        problems = [line for line in done.output.splitlines() if line.startswith("error:")]
        assert problems and all(": dataset: dataset.root " in line and "does not exist" in line
                                for line in problems), done.output
        return
    assert done.exit_code == 0, done.output
    resolved_text = done.output.split("\n", 1)[1].partition("\n\n")[0]
    resolved = yaml.safe_load(resolved_text)
    assert [method["name"] for method in resolved["methods"]] == \
        [method.name for method in load(path).methods]
