"""CHOCO's claims over a choco_ring run: accuracy against CDSGD within the seeds' noise,
bytes as exact ratios, naive compression below, and "not yet converged" where a run still
rises; judged from a real store through the CLI (slow)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from decentral_bench.cli.entry import cli
from decentral_bench.report.claims import FAILS, HOLDS, NOT_CONVERGED, UNCLEAR, judge
from decentral_bench.report.compression_claims import CHOCO_RING, bytes_table
from decentral_bench.report.summary import group_records
from decentral_bench.tracking.records import RunRecord

EPOCHS = [(k, 2.0 * k) for k in range(1, 11)]  # 10 evaluations, 20 epochs


def _run(method: str, seed: int, accuracy: float, megabytes: float,
         rising: bool = False) -> RunRecord:
    """A finished 16-agent run whose test accuracy levels off at `accuracy` (or is still
    rising, by 0.0167 over its last 2 epochs: more than the plateau rule's 0.002)."""
    curve = [(k, accuracy - (0.05 * (10 - k) / 3 if rising and k > 7 else 0.0)
              - (0.3 if k < 4 else 0.0) + 0.001 * seed) for k in range(1, 11)]
    label = f"{method} agents=16"
    return RunRecord(run_id=f"{label}-{seed}", config_hash=f"{label}-{seed}", label=label,
                     method=method, seed=seed, status="FINISHED", algorithm="choco",
                     curves={"test_accuracy_mean": curve, "epochs": EPOCHS,
                             "bytes_moved_total": [(10, megabytes * 1e6)]})


def test_choco_claims_from_accuracy_and_bytes() -> None:
    """16 agents, three seeds each (final accuracy, MB moved, still rising?); the 32-agent
    claims find no groups and are left out."""
    arms = {"CDSGD": (0.87, 1000.0, False), "CHOCO top-1%": (0.865, 20.0, False),
            "CHOCO top-10%": (0.80, 200.0, False), "CHOCO sign": (0.86, 31.5, True),
            "CHOCO qsgd-4bit": (0.87, 156.0, False), "naive top-10%": (0.10, 200.0, False)}
    records = [_run(method, seed, accuracy, megabytes, rising)
               for method, (accuracy, megabytes, rising) in arms.items() for seed in range(3)]
    fewer = "... at 10–100× fewer bytes"
    assert [(claim.claim, claim.verdict) for claim in judge(records, CHOCO_RING)] == [
        ("CHOCO top-1% ends close to uncompressed CDSGD (16 agents)", HOLDS),
        (fewer, HOLDS),                                                   # 50×
        ("CHOCO top-10% ends close to uncompressed CDSGD (16 agents)", FAILS),
        (fewer, FAILS),                                                   # 5×
        ("CHOCO sign ends close to uncompressed CDSGD (16 agents)", NOT_CONVERGED),
        (fewer, HOLDS),                                                   # 31.7×
        ("CHOCO qsgd-4bit ends close to uncompressed CDSGD (16 agents)", HOLDS),
        (fewer, FAILS),                                                   # 6.4×
        ("Naive compression degrades: naive top-10% ends below CHOCO top-10% (16 agents)",
         HOLDS),
        ("... and below uncompressed CDSGD (16 agents)", HOLDS)]


def test_the_bytes_table_gives_each_ratio_against_cdsgd_on_its_ring() -> None:
    records = [_run("CDSGD", 0, 0.87, 1000.0), _run("CHOCO top-1%", 0, 0.86, 20.0)]
    table = bytes_table(group_records(records))
    assert "| CHOCO top-1% agents=16 | 0.8600 | 20 | 50× |" in table
    assert "| CDSGD agents=16 | 0.8700 | 1000 | 1× |" in table


CHOCO_LIKE = """\
name: choco_ring
dataset: {name: digits, partition: iid}
model: {name: mlp, hidden: [16]}
topology: {kind: ring, agents: 16}
training: {epochs: 4, batch_size: 16, lr: 0.2, seeds: [0, 1], eval_every_epochs: 1}
methods:
  - {name: CDSGD, algorithm: cdsgd}
  - {name: CHOCO top-10%, algorithm: choco, compression: {kind: top_k, fraction: 0.1},
     consensus_step_size: 0.3}
  - {name: naive top-10%, algorithm: cdsgd, compression: {kind: top_k, fraction: 0.1}}
sweep: {topology.agents: [16]}
resources: {engine: vectorized}
tracking: {experiment: choco_ring}
"""


@pytest.mark.slow
def test_choco_claims_are_judged_from_the_store_and_logged_on_the_parent(
        tmp_path: Path, tracking_uri: str) -> None:
    path = tmp_path / "choco_ring.yaml"
    path.write_text(CHOCO_LIKE)
    runner = CliRunner()
    done = runner.invoke(cli, ["run", str(path), "--tracking-uri", tracking_uri])
    assert done.exit_code == 0, done.output
    judged = runner.invoke(cli, ["claims", "choco_ring", "--tracking-uri", tracking_uri])
    assert judged.exit_code == 0, judged.output
    client = MlflowClient(tracking_uri=tracking_uri)
    parent = client.search_runs([client.get_experiment_by_name("choco_ring").experiment_id],
                                filter_string="tags.kind = 'scenario'")[0]
    logged = Path(client.download_artifacts(parent.info.run_id, "claims.md", str(tmp_path)))
    text = logged.read_text()
    assert "fewer bytes than CDSGD" in text
    # the table as logged (the terminal wraps long rows): one row per claim
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    verdicts = [row for row in rows if any(f"| {v} |" in row for v in (HOLDS, FAILS, UNCLEAR,
                                                                        NOT_CONVERGED))]
    assert len(verdicts) == 4  # CHOCO top-10 %: accuracy, bytes; naive: two comparisons
    assert any("CHOCO top-10% agents=16" in row and "MB moved" in row and f"| {FAILS} |" in row
               for row in verdicts)  # 5× fewer bytes: short of the claim's 10×
    assert all(word in judged.output for word in ("MB moved", FAILS))
    plots = {item.path for item in client.list_artifacts(parent.info.run_id, "plots")}
    assert "plots/test_accuracy_mean_vs_bytes.png" in plots
