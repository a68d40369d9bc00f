"""The heterogeneity study's claims, judged from records: a method that wins back most of
CDSGD's loss holds, one that wins back little does not, no loss cannot be judged, a claim
whose runs are still climbing is not yet converged (on the curve of the figure it compares);
the levels table lists them all."""

from __future__ import annotations

from decentral_bench.report.claims import FAILS, HOLDS, NOT_CONVERGED, UNCLEAR, judge
from decentral_bench.report.heterogeneity_claims import (
    AVERAGE,
    HETEROGENEITY,
    HETEROGENEOUS_LEVELS,
    IID_LEVEL,
    beats,
    closes_the_gap,
    levels_table,
)
from decentral_bench.report.summary import RunRecord, group_records

ALPHA_01 = HETEROGENEOUS_LEVELS[1]
EPOCHS = 20


def _curve(accuracy: float, rising: bool) -> list[tuple[int, float]]:
    """Test accuracy after each of 20 epochs (step k = epoch k) ending at `accuracy`: flat
    from epoch 15 on (a plateau), or climbing 0.01 an epoch to the end."""
    if rising:
        return [(e, accuracy - 0.01 * (EPOCHS - e)) for e in range(1, EPOCHS + 1)]
    return [(e, min(accuracy, accuracy - 0.05 * (15 - e))) for e in range(1, EPOCHS + 1)]


def _record(method: str, level: str, seed: int, accuracy: float, rising: bool = False,
            average_rising: bool = False) -> RunRecord:
    """A run evaluated every epoch; its average model x̄ ends 0.05 above its agents."""
    return RunRecord(run_id=f"{method}{level}{seed}", config_hash=f"{method}{level}{seed}",
                     label=f"{method} {level}", method=method, seed=seed, status="FINISHED",
                     curves={"test_accuracy_mean": _curve(accuracy, rising),
                             "average_model_test_accuracy": _curve(accuracy + 0.05,
                                                                   average_rising),
                             "epochs": [(e, float(e)) for e in range(1, EPOCHS + 1)]})


Arms = frozenset[tuple[str, str]]


def _records(accuracies: dict[tuple[str, str], float], rising: Arms = frozenset(),
             average_rising: Arms = frozenset()) -> list[RunRecord]:
    """Three seeds of each (method, level), 0.002 apart; those in `rising` still climbing
    on the agents' curve, those in `average_rising` on the average model's."""
    return [_record(method, level, seed, accuracy + 0.002 * seed, (method, level) in rising,
                    (method, level) in average_rising)
            for (method, level), accuracy in accuracies.items() for seed in (0, 1, 2)]


BASE = {("CDSGD", IID_LEVEL): 0.80, ("CDSGD", ALPHA_01): 0.60}


def test_winning_back_most_of_the_gap_holds_and_little_does_not() -> None:
    records = _records({**BASE, ("gradient-tracking", ALPHA_01): 0.75, ("D2", ALPHA_01): 0.65})
    groups = group_records(records)
    tracking = closes_the_gap("gradient-tracking", ALPHA_01)(groups)
    d2 = closes_the_gap("D2", ALPHA_01)(groups)
    assert tracking is not None and d2 is not None
    assert tracking.verdict == HOLDS and "75% of the gap won back" in tracking.why
    assert "CDSGD's gap to α = 10: 0.2000 ± 0.0000" in tracking.figures
    assert d2.verdict == FAILS and "25% of the gap won back" in d2.why


def test_no_gap_cannot_be_judged() -> None:
    records = _records({("CDSGD", IID_LEVEL): 0.80, ("CDSGD", ALPHA_01): 0.799,
                        ("D2", ALPHA_01): 0.80})
    claim = closes_the_gap("D2", ALPHA_01)(group_records(records))
    assert claim is not None and claim.verdict == UNCLEAR
    assert "CDSGD opens no gap beyond the seeds' noise" in claim.why


def test_a_claim_on_runs_still_climbing_is_not_yet_converged() -> None:
    """QG-DSGDm ends below local momentum while still climbing 0.01 an epoch: no verdict,
    with the epoch reached and the slope; once both have plateaued, it does not hold."""
    accuracies = {("QG-DSGDm", ALPHA_01): 0.70, ("CDMSGD-local", ALPHA_01): 0.72}
    rising = _records(accuracies, rising=frozenset({("QG-DSGDm", ALPHA_01)}))
    claim = beats("QG-DSGDm", "CDMSGD-local", ALPHA_01)(group_records(rising))
    assert claim is not None and claim.verdict == NOT_CONVERGED
    assert claim.why.startswith(f"QG-DSGDm {ALPHA_01} seed 0 still rising at epoch 20 "
                                "(+0.01000/epoch over its last 2 epochs: +0.0200 > 0.002)")
    assert "CDMSGD-local" not in claim.why
    claim = beats("QG-DSGDm", "CDMSGD-local", ALPHA_01)(group_records(_records(accuracies)))
    assert claim is not None and claim.verdict == FAILS


def test_a_gap_whose_baseline_is_still_closing_is_not_yet_converged() -> None:
    """Gradient tracking wins back 75 % of CDSGD's loss, but CDSGD at α = 0.1 is still
    climbing: its gap, and so the share won back, is not final."""
    records = _records({**BASE, ("gradient-tracking", ALPHA_01): 0.75},
                       rising=frozenset({("CDSGD", ALPHA_01)}))
    claim = closes_the_gap("gradient-tracking", ALPHA_01)(group_records(records))
    assert claim is not None and claim.verdict == NOT_CONVERGED
    assert f"CDSGD {ALPHA_01} seed 2 still rising at epoch 20" in claim.why


def test_each_measure_needs_its_own_curve_at_a_plateau() -> None:
    """Agents' models at a plateau, the average model still climbing: the claim on the
    agents' models is judged, the one on x̄ is not yet converged."""
    records = _records({**BASE, ("gradient-tracking", ALPHA_01): 0.75},
                       average_rising=frozenset({("gradient-tracking", ALPHA_01)}))
    groups = group_records(records)
    on_agents = closes_the_gap("gradient-tracking", ALPHA_01)(groups)
    assert on_agents is not None and on_agents.verdict == HOLDS
    on_average = closes_the_gap("gradient-tracking", ALPHA_01, AVERAGE)(groups)
    assert on_average is not None and on_average.verdict == NOT_CONVERGED


def test_the_rules_judge_only_the_groups_present_and_the_table_lists_every_level() -> None:
    records = _records({**BASE, ("gradient-tracking", ALPHA_01): 0.75,
                        ("gradient-tracking", IID_LEVEL): 0.81})
    claims = judge(records, HETEROGENEITY)
    assert [c.claim for c in claims] == \
        ["gradient-tracking closes most of the gap CDSGD opens at α = 0.1 (agents' models)",
         "gradient-tracking closes most of the gap CDSGD opens at α = 0.1 (average model x̄)"]
    table = levels_table(group_records(records)).splitlines()
    assert table[0] == ("| agents' models | α = 10 | α = 1 | α = 0.1 | 2 classes/agent | "
                        "drop α = 10 → 2 classes |")
    assert table[2].startswith("| CDSGD | 0.8020 ± 0.0016 | – | 0.6020 ± 0.0016 | – |")
    assert table[5].startswith("| average model x̄ | α = 10 |")
    assert table[7].startswith("| CDSGD | 0.8520 ± 0.0016 | – | 0.6520 ± 0.0016 | – |")
