"""The papers' claims are judged from the store: verdicts against the seeds' noise, and a
Kong-style run through the CLI that logs its table on the parent run."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from decentral_bench.cli.entry import cli
from decentral_bench.report.claims import (
    FAILS,
    HOLDS,
    NOT_CONVERGED,
    UNCLEAR,
    Estimate,
    compare,
    compare_at_plateau,
    curve_plateau,
    judge,
    plateaued,
    unconverged,
)
from decentral_bench.report.paper_claims import JIANG, KONG
from decentral_bench.report.summary import group_records
from decentral_bench.tracking.records import RunRecord


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
    claims = [row for row in rows
              if any(v in row for v in (HOLDS, FAILS, UNCLEAR, NOT_CONVERGED))]
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


# ------------------------------------------------------------ verdicts at a plateau

EPOCHS = np.arange(1.0, 101.0)
RISING = 0.834 + 0.0003 * EPOCHS  # CDSGD at α = 0.01 near epoch 90: +0.0003 an epoch
FLAT = 0.88 - 0.2 * np.exp(-EPOCHS / 5)
NOISY_FLAT = 0.87 + np.random.default_rng(0).normal(0.0, 0.003, len(EPOCHS))
FALLING = 0.88 - 0.0004 * EPOCHS  # overfitting: no longer improving


@pytest.mark.parametrize(("curve", "reached"), [
    (RISING, False), (FLAT, True), (NOISY_FLAT, True), (FALLING, True)])
def test_the_plateau_rule_on_hand_made_curves(curve: np.ndarray, reached: bool) -> None:
    found = curve_plateau(EPOCHS, curve)
    want = curve[90:].mean() - curve[80:90].mean()  # epochs 91-100 against 81-90
    assert found.rise == pytest.approx(want, abs=1e-12)
    assert found.slope == pytest.approx(want / 10.0, abs=1e-12)
    assert found.epoch == 100.0
    assert found.reached is reached


def test_sparse_evaluations_widen_the_windows_to_hold_one_each() -> None:
    """Evaluated every 3 of 20 epochs (Kong's scenario, epochs as the runs log them): the
    windows widen from 2 epochs to 3, (17, 20] against (14, 17]."""
    epochs = [3.0003 * k for k in range(1, 7)] + [20.0002]
    found = curve_plateau(epochs, [0.80, 0.84, 0.86, 0.87, 0.883, 0.882, 0.883])
    assert found.window == pytest.approx(3.0003 * 6 - 3.0003 * 5)
    assert found.rise == pytest.approx((0.882 + 0.883) / 2 - 0.883) and found.reached
    coarse = curve_plateau([10.0, 50.0, 100.0], [0.8, 0.85, 0.86])  # (50, 100] vs (0, 50]
    assert coarse.window == 50.0 and coarse.rise == pytest.approx(0.035)
    assert not coarse.reached  # wider windows add to a rising curve's rise
    assert math.isnan(curve_plateau([20.0], [0.88]).rise)  # one evaluation: cannot tell
    assert not curve_plateau([19.0, 20.0], [0.88, 0.88]).reached  # both in the last window
    assert math.isnan(curve_plateau([], []).epoch)  # no curve


def _accuracy_run(label: str, seed: int, curve: np.ndarray, early: float) -> RunRecord:
    """A run evaluated after every epoch: `curve`, with `early` after epoch 1."""
    values = [early, *curve[1:]]
    return RunRecord(run_id=f"{label}-{seed}", config_hash=f"{label}-{seed}", label=label,
                     method=label, seed=seed, status="FINISHED", algorithm="cdsgd",
                     curves={"epochs": [(k, float(e)) for k, e in enumerate(EPOCHS)],
                             "test_accuracy_mean": [(k, float(v) + 0.001 * seed)
                                                    for k, v in enumerate(values)],
                             "train_accuracy_mean": [(k, float(v) + 0.01)
                                                     for k, v in enumerate(values)]})


def test_a_claim_about_final_accuracy_on_a_rising_curve_is_not_yet_converged() -> None:
    """fig1a's rules on hand-made runs: SGD flat, CDSGD still rising in one seed. The
    rate claim is judged (epoch 1); the final-accuracy and generalization-gap claims are
    not yet converged, naming the run, the epoch it reached and its slope."""
    records = [_accuracy_run("SGD", seed, FLAT, 0.78) for seed in range(3)]
    records += [_accuracy_run("CDSGD", 0, RISING, 0.70), _accuracy_run("CDSGD", 1, FLAT, 0.71),
                _accuracy_run("CDSGD", 2, FLAT, 0.70)]
    rate, final, generalization = judge(records, JIANG["fig1a_cdsgd_vs_sgd"])
    assert rate.verdict == HOLDS
    for claim in (final, generalization):
        assert claim.verdict == NOT_CONVERGED
        assert claim.why.startswith("CDSGD seed 0 still rising at epoch 100 (+0.0")
        assert "/epoch over its last 10 epochs" in claim.why
        assert "SGD seed" not in claim.why.replace("CDSGD seed", "")
    assert "(epoch 100)" in final.figures
    plateaued = [r for r in records if r.seed != 0 or r.method == "SGD"]
    _, final, _ = judge([*plateaued, _accuracy_run("CDSGD", 0, FLAT, 0.70)],
                        JIANG["fig1a_cdsgd_vs_sgd"])
    assert final.verdict == HOLDS  # both flat at the same level: comparable


def test_kong_phase_claims_need_a_measurable_ring_gap_at_their_size() -> None:
    """Hand-made flat runs: where the ring ends with centralized, the phase claims cannot be
    judged (whatever their own figures say); where it ends 0.02 below, they are judged."""
    def arms(ring: float) -> list[RunRecord]:
        levels = {"centralized": 0.88, "decentralized": ring, "dec-phase-1": ring,
                  "dec-phase-2": 0.88, "dec-phase-3": 0.88}
        return [_accuracy_run(arm, seed, FLAT - 0.88 + level, 0.7)
                for arm, level in levels.items() for seed in range(3)]

    no_gap = {claim.claim: claim for claim in judge(arms(0.8805), KONG)}
    assert no_gap["Decentralized training (the ring) ends below centralized"].verdict == UNCLEAR
    phase = no_gap["... and below decentralized only in phase 3"]
    assert phase.verdict == UNCLEAR
    assert phase.why.startswith("the ring's own gap to centralized is not measurable at this "
                                "size (cannot be judged: the difference +0.0005")
    gap = {claim.claim: claim for claim in judge(arms(0.86), KONG)}
    assert gap["Decentralized training (the ring) ends below centralized"].verdict == HOLDS
    assert gap["... and below decentralized only in phase 3"].verdict == HOLDS
    assert len(gap) == 3  # the control arms were not run: their claims are left out


def test_a_run_evaluated_every_two_epochs_over_twenty_is_judged() -> None:
    """Kong's cadence: 20 epochs, an evaluation every 2. Each window (epochs 16-18 and
    18-20) holds one evaluation, and the rule reads them."""
    epochs = [2.0 * k for k in range(1, 11)]
    settled = curve_plateau(epochs, [0.70, 0.80, 0.84, 0.86, 0.87, 0.874, 0.876, 0.878,
                                     0.879, 0.880])
    assert settled.rise == pytest.approx(0.001) and settled.reached
    assert settled.slope == pytest.approx(0.0005)  # per epoch over the 2-epoch window
    rising = curve_plateau(epochs, [0.70, 0.75, 0.78, 0.80, 0.82, 0.83, 0.84, 0.85, 0.86,
                                    0.87])
    assert rising.rise == pytest.approx(0.01) and not rising.reached


def test_plateaued_asks_every_seed_of_a_group() -> None:
    flat = [_accuracy_run("SGD", seed, FLAT, 0.78) for seed in range(3)]
    one_rising = [_accuracy_run("CDSGD", 0, RISING, 0.70),
                  *(_accuracy_run("CDSGD", seed, FLAT, 0.70) for seed in (1, 2))]
    sgd, cdsgd = group_records(flat + one_rising)
    assert plateaued(sgd) and not plateaued(cdsgd)
    assert unconverged([sgd]) is None
    why = unconverged([sgd, cdsgd])
    assert why is not None and why.startswith("CDSGD seed 0 still rising at epoch 100")
    assert "seed 1" not in why and "seed 2" not in why


def test_a_sparse_rising_curve_is_not_yet_converged() -> None:
    sparse = RunRecord(run_id="s", config_hash="s", label="CDSGD", method="CDSGD", seed=0,
                       status="FINISHED",
                       curves={"epochs": [(0, 10.0), (1, 50.0), (2, 100.0)],
                               "test_accuracy_mean": [(0, 0.8), (1, 0.85), (2, 0.86)]})
    group, flat = group_records([sparse, _accuracy_run("SGD", 0, FLAT, 0.78)])
    assert not plateaued(group) and plateaued(flat)
    verdict, why = compare_at_plateau([group, flat], Estimate(0.86, 0.0, 1),
                                      Estimate(0.80, 0.0, 1), "a>b")
    assert verdict == NOT_CONVERGED
    assert why == "CDSGD seed 0 still rising at epoch 100 (+0.00070/epoch over its last 50 " \
        "epochs: +0.0350 > 0.002)"


def test_the_plateau_is_asked_of_the_accuracy_the_claim_is_about() -> None:
    """A claim on the average model's accuracy is judged once that curve is flat, whatever
    the agents' own accuracy does."""
    records = []
    for label, level in (("A", 0.88), ("B", 0.86)):
        for seed in range(3):
            run = _accuracy_run(label, seed, RISING, 0.7)  # the agents' models still rise
            run.curves["average_model_test_accuracy"] = [
                (k, level + 0.001 * seed + float(v) - 0.88) for k, v in enumerate(FLAT)]
            records.append(run)
    a, b = group_records(records)
    first, second = (Estimate.of([r.final("average_model_test_accuracy") for r in g.records])
                     for g in (a, b))
    assert compare_at_plateau([a, b], first, second, "a>b")[0] == NOT_CONVERGED
    verdict, why = compare_at_plateau([a, b], first, second, "a>b",
                                      key="average_model_test_accuracy")
    assert (verdict, why) == (HOLDS, "difference +0.0200, noise ±0.0050")
