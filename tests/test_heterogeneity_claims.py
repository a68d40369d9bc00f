"""The heterogeneity study's claims, judged from records: a method that wins back most of
CDSGD's loss holds, one that wins back little does not, no loss cannot be judged, and a
leader still climbing at the end is not yet converged; the levels table lists them all."""

from __future__ import annotations

from decentral_bench.report.claims import FAILS, HOLDS, NOT_CONVERGED, UNCLEAR, judge
from decentral_bench.report.heterogeneity_claims import (
    HETEROGENEITY,
    HETEROGENEOUS_LEVELS,
    IID_LEVEL,
    beats,
    closes_the_gap,
    levels_table,
)
from decentral_bench.report.summary import RunRecord, group_records

ALPHA_01 = HETEROGENEOUS_LEVELS[1]


def _record(method: str, level: str, seed: int, accuracy: float,
            late: float | None = None) -> RunRecord:
    """A run evaluated at epochs 5, 10, 15, 20; `late` is its accuracy at epoch 15 (default:
    already at its final accuracy, a plateau)."""
    curve = [(1, 0.3), (2, 0.5), (3, accuracy if late is None else late), (4, accuracy)]
    return RunRecord(run_id=f"{method}{level}{seed}", config_hash=f"{method}{level}{seed}",
                     label=f"{method} {level}", method=method, seed=seed, status="FINISHED",
                     curves={"test_accuracy_mean": curve,
                             "average_model_test_accuracy": [(k, v + 0.05) for k, v in curve],
                             "epochs": [(k, 5.0 * k) for k in range(1, 5)]})


def _records(accuracies: dict[tuple[str, str], float], late: dict | None = None,
             ) -> list[RunRecord]:
    return [_record(method, level, seed, accuracy + 0.002 * seed,
                    None if late is None or (method, level) not in late
                    else late[(method, level)] + 0.002 * seed)
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


def test_a_leader_still_climbing_is_not_yet_converged() -> None:
    """QG-DSGDm ends below local momentum but gained 0.05 over the last quarter, local
    momentum nothing: at that pace it would lead after as many epochs again."""
    records = _records({("QG-DSGDm", ALPHA_01): 0.70, ("CDMSGD-local", ALPHA_01): 0.72},
                       late={("QG-DSGDm", ALPHA_01): 0.65})
    claim = beats("QG-DSGDm", "CDMSGD-local", ALPHA_01)(group_records(records))
    assert claim is not None and claim.verdict == NOT_CONVERGED
    assert "the margin -0.0200 would be +0.1800 after as many epochs again" in claim.why
    plateaued = _records({("QG-DSGDm", ALPHA_01): 0.70, ("CDMSGD-local", ALPHA_01): 0.72})
    claim = beats("QG-DSGDm", "CDMSGD-local", ALPHA_01)(group_records(plateaued))
    assert claim is not None and claim.verdict == FAILS


def test_a_gap_still_closing_on_its_own_is_not_yet_converged() -> None:
    """Gradient tracking wins back 75 % of CDSGD's loss, but CDSGD gained 0.10 over the
    last quarter: at that pace its own gap would be gone, so the margin would turn."""
    records = _records({**BASE, ("gradient-tracking", ALPHA_01): 0.75},
                       late={("CDSGD", ALPHA_01): 0.50})
    claim = closes_the_gap("gradient-tracking", ALPHA_01)(group_records(records))
    assert claim is not None and claim.verdict == NOT_CONVERGED
    assert "the margin +0.0500 would be -0.1500" in claim.why


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
