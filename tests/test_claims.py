"""The papers' claims are judged from the store: verdicts against the seeds' noise, and a
Kong-style run through the CLI that logs its table on the parent run."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from decentral_bench.cli.entry import cli
from decentral_bench.report.claims import FAILS, HOLDS, UNCLEAR, Estimate, compare


@pytest.mark.parametrize(("a", "b", "expect", "verdict"), [
    (Estimate(0.80, 0.002, 3), Estimate(0.85, 0.002, 3), "a<b", HOLDS),
    (Estimate(0.85, 0.002, 3), Estimate(0.80, 0.002, 3), "a<b", FAILS),
    (Estimate(0.80, 0.03, 3), Estimate(0.82, 0.03, 3), "a<b", UNCLEAR),   # within noise
    (Estimate(0.801, 0.0, 1), Estimate(0.803, 0.0, 1), "a<b", UNCLEAR),   # below the floor
    (Estimate(0.80, 0.004, 3), Estimate(0.81, 0.004, 3), "a≈b", HOLDS),
    (Estimate(0.70, 0.004, 3), Estimate(0.81, 0.004, 3), "a≈b", FAILS),
    (Estimate(0.80, 0.004, 3), Estimate(0.801, 0.004, 3), "a≥b", HOLDS),
    (Estimate(0.70, 0.004, 3), Estimate(0.80, 0.004, 3), "a≥b", FAILS),
    (Estimate(float("nan"), 0.0, 0), Estimate(0.80, 0.004, 3), "a<b", UNCLEAR),
])
def test_a_difference_counts_only_beyond_the_seeds_noise(a: Estimate, b: Estimate,
                                                         expect: str, verdict: str) -> None:
    assert compare(a, b, expect)[0] == verdict


KONG_LIKE = """\
name: kong_phases
dataset: {name: digits, partition: iid}
model: {name: mlp, hidden: [32]}
topology: {kind: ring, agents: 8}
training: {epochs: 6, batch_size: 16, lr: 0.2, lr_schedule: step, milestones: [0.5, 0.75],
           seeds: [0, 1], eval_every_epochs: 2}
methods:
  - {name: centralized, algorithm: cdmsgd, consensus_control: {mode: exact}}
  - {name: decentralized, algorithm: cdmsgd}
  - {name: dec-phase-1, algorithm: cdmsgd, consensus_control: {mode: exact, phases: [2, 3]}}
  - {name: dec-phase-2, algorithm: cdmsgd, consensus_control: {mode: exact, phases: [1, 3]}}
  - {name: dec-phase-3, algorithm: cdmsgd, consensus_control: {mode: exact, phases: [1, 2]}}
  - {name: control-phase-1, algorithm: cdmsgd,
     consensus_control: {mode: adaptive, target_ratio: 0.25, phases: [1]}}
  - {name: control-phases-2-3, algorithm: cdmsgd,
     consensus_control: {mode: adaptive, target_ratio: 0.25, phases: [2, 3]}}
  - {name: control-throughout, algorithm: cdmsgd,
     consensus_control: {mode: adaptive, target_ratio: 0.25}}
resources: {engine: vectorized}
tracking: {experiment: kong_phases}
"""


@pytest.mark.slow  # about a minute: 8 methods × 2 seeds through the CLI
def test_kong_claims_are_judged_from_the_store_and_logged_on_the_parent(
        tmp_path: Path, tracking_uri: str) -> None:
    path = tmp_path / "kong.yaml"
    path.write_text(KONG_LIKE)
    runner = CliRunner()
    done = runner.invoke(cli, ["run", str(path), "--tracking-uri", tracking_uri])
    assert done.exit_code == 0, done.output
    assert "consensus control: extra traffic against the uncontrolled method" in done.output
    output = tmp_path / "claims.md"
    judged = runner.invoke(cli, ["claims", "kong_phases", "--tracking-uri", tracking_uri,
                                 "--output", str(output)])
    assert judged.exit_code == 0, judged.output
    table = output.read_text()
    assert table.startswith("## kong_phases")
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    claims = [row for row in rows if any(v in row for v in (HOLDS, FAILS, UNCLEAR))]
    assert len(claims) == 7  # every Kong rule found its arms
    assert "extra traffic vs uncontrolled" in table
    arms = [row for row in rows if row.startswith(("| centralized", "| control-phase-1"))]
    assert len(arms) == 2 and all(" ± " in row for row in arms)  # two seeds each
    client = MlflowClient(tracking_uri=tracking_uri)
    parent = client.search_runs([client.get_experiment_by_name("kong_phases").experiment_id],
                                filter_string="tags.kind = 'scenario'")[0]
    logged = Path(client.download_artifacts(parent.info.run_id, "claims.md", str(tmp_path)))
    assert logged.read_text() == table
    # The run's own summary: each controlled arm's extra traffic and Ξ² by phase.
    control = Path(client.download_artifacts(parent.info.run_id, "consensus_control.md",
                                             str(tmp_path))).read_text()
    assert control.startswith("| method | uncontrolled | extra traffic % | mean Ξ² by phase |")
    assert "| control-phase-1 | decentralized |" in control
    metrics = parent.data.metrics
    assert metrics["centralized.extra_traffic_percent"] > 0
    assert metrics["centralized.consensus_distance_phase_1"] == 0
    assert metrics["decentralized.extra_traffic_percent"] == 0


def test_claims_of_a_missing_experiment_are_an_error(tracking_uri: str) -> None:
    done = CliRunner().invoke(cli, ["claims", "fig1a_cdsgd_vs_sgd", "--tracking-uri",
                                    tracking_uri])
    assert done.exit_code == 2
    assert "no scenario run 'fig1a_cdsgd_vs_sgd'" in done.output
