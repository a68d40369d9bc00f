"""ClippedGossip's claims as the Byzantine study judges them: a method breaks where it loses
more than 5 points beyond the seeds' noise, degrades gracefully where every attack costs it
less, and is not judged while its clean run is still rising."""

from __future__ import annotations

from matplotlib import pyplot

from decentral_bench.report.byzantine_claims import (
    NOT_CONVERGED,
    accuracy_matrix,
    best_under_every,
    breaks_under_some,
    graceful_under_every,
    measured,
    study_figures,
)
from decentral_bench.report.claims import FAILS, HOLDS, UNCLEAR
from decentral_bench.report.summary import Group, RunRecord, group_records


def _records(label: str, finals: list[float], rise: float = 0.0) -> list[RunRecord]:
    """One record per seed: accuracy ending at each final over 8 epochs, evaluated after
    each, having risen `rise` per two epochs until the end (0: flat)."""
    records = []
    for seed, value in enumerate(finals):
        curve = [(step, value - rise * max(0.0, (8 - step) / 2)) for step in range(1, 9)]
        records.append(RunRecord(
            run_id=f"{label}-{seed}", config_hash=f"{label}-{seed}", label=label,
            method=label.split()[0], seed=seed, status="FINISHED", algorithm="cdsgd",
            curves={"test_accuracy_mean": curve,
                    "epochs": [(step, float(step)) for step in range(1, 9)]}))
    return records


def _groups(**finals: list[float]) -> list[Group]:
    records = []
    for label, values in finals.items():
        records += _records(label.replace("__", " ").replace("_eq_", "="), values)
    return group_records(records)


CLEAN = [0.80, 0.81, 0.80]


def test_a_method_breaks_where_an_attack_costs_it_beyond_the_threshold() -> None:
    groups = _groups(Mean=CLEAN, Mean__count_eq_1__attack_eq_sign_flip=[0.10, 0.11, 0.10],
                     Mean__count_eq_1__attack_eq_ipm=[0.79, 0.80, 0.80])
    claim = breaks_under_some("Mean", 1)(groups)
    assert claim is not None and claim.verdict == HOLDS
    assert "sign_flip" in claim.why and "ipm" not in claim.why
    assert "Mean clean 0.8033 ± 0.0047" in claim.figures


def test_an_attack_whose_runs_have_not_finished_is_left_out() -> None:
    """A group still running has no final figure: it neither breaks a method nor lets it
    pass as graceful."""
    groups = _groups(ClippedGossip=CLEAN,
                     ClippedGossip__count_eq_2__attack_eq_sign_flip=[0.79, 0.80, 0.80])
    running = _records("ClippedGossip count=2 attack=gaussian", [0.10])
    running[0].status = "RUNNING"
    groups += group_records(running)
    claim = graceful_under_every("ClippedGossip", 2)(groups)
    assert claim is not None and "gaussian" not in claim.figures
    assert claim.verdict == HOLDS and "sign_flip" in claim.figures


def _diverged(label: str, seeds: int = 3, reason: str = "diverged at round 40",
              ) -> list[Group]:
    records = _records(label, [0.10] * seeds)
    for record in records:
        record.status, record.error, record.curves = "FAILED", reason, {}
    return group_records(records)


def test_an_attack_under_which_every_run_diverged_breaks_the_method() -> None:
    """Every seed diverged (non-finite parameters): no final figure, and the method broke;
    it neither passes as graceful nor escapes "breaks", and loses to a rule that held."""
    groups = _groups(TrimmedMean=CLEAN, Median=CLEAN,
                     TrimmedMean__count_eq_2__attack_eq_sign_flip=[0.79, 0.80, 0.80],
                     Median__count_eq_2__attack_eq_sign_flip=[0.79, 0.80, 0.80])
    groups += group_records(_records("Median count=2 attack=alie(z=10)", [0.78, 0.79, 0.79]))
    groups += _diverged("TrimmedMean count=2 attack=alie(z=10)")
    broken = breaks_under_some("TrimmedMean", 2)(groups)
    assert broken is not None and broken.verdict == HOLDS
    assert "alie(z=10) diverged" in broken.figures and "alie(z=10)" in broken.why
    graceful = graceful_under_every("TrimmedMean", 2)(groups)
    assert graceful is not None and graceful.verdict == FAILS
    best = best_under_every("TrimmedMean", ["Median"], 2)(groups)
    assert best is not None and best.verdict == FAILS and "diverged" in best.why
    table = accuracy_matrix(groups, ["TrimmedMean", "Median"], ("sign_flip", "alie"), (2,))
    assert "| TrimmedMean | 0.8033 ± 0.0047 | 0.7967 ± 0.0047 | diverged |" in table


def test_runs_that_failed_for_another_reason_or_only_partly_diverged_are_left_out() -> None:
    """A crash is not a verdict on the rule, and one diverged seed beside finished ones
    leaves the finished seeds' figure to judge."""
    groups = _groups(Mean=CLEAN, Mean__count_eq_1__attack_eq_ipm=[0.79, 0.80, 0.80])
    groups += _diverged("Mean count=1 attack=gaussian", reason="out of memory")
    claim = graceful_under_every("Mean", 1)(groups)
    assert claim is not None and claim.verdict == HOLDS and "gaussian" not in claim.figures
    mixed = _records("Mean count=1 attack=sign_flip", [0.79, 0.80, 0.10])
    mixed[2].status, mixed[2].error = "FAILED", "diverged at round 7"
    claim = graceful_under_every("Mean", 1)(groups + group_records(mixed))
    assert claim is not None and claim.verdict == HOLDS and "sign_flip 0.7950" in claim.figures


def test_a_method_that_every_attack_spares_does_not_break() -> None:
    """The clean run is the sweep's count=0 group."""
    groups = _groups(Median__count_eq_0=CLEAN,
                     Median__count_eq_2__attack_eq_alie=[0.79, 0.80, 0.80])
    assert breaks_under_some("Median", 2)(groups).verdict == FAILS  # type: ignore[union-attr]
    assert graceful_under_every("Median", 2)(groups).verdict == HOLDS  # type: ignore[union-attr]
    assert breaks_under_some("Median", 1)(groups) is None  # no attacked run with f = 1


def test_a_loss_near_the_threshold_within_noise_cannot_be_judged() -> None:
    groups = _groups(Median=[0.80, 0.84, 0.76],
                     Median__count_eq_1__attack_eq_ipm=[0.76, 0.70, 0.79])
    assert breaks_under_some("Median", 1)(groups).verdict == UNCLEAR  # type: ignore[union-attr]


def test_a_method_whose_clean_runs_did_not_learn_is_not_judged() -> None:
    """Near chance without attackers, an attack can cost nothing: neither claim is judged."""
    groups = _groups(Median=[0.13, 0.14, 0.13],
                     Median__count_eq_1__attack_eq_sign_flip=[0.15, 0.16, 0.14])
    for rule in (breaks_under_some("Median", 1), graceful_under_every("Median", 1)):
        claim = rule(groups)
        assert claim is not None and claim.verdict == UNCLEAR
        assert "did not learn" in claim.why


def test_graceful_is_not_judged_while_the_clean_run_still_rises() -> None:
    records = _records("ClippedGossip", CLEAN, rise=0.03) + \
        _records("ClippedGossip count=1 attack=ipm", [0.79, 0.80, 0.80])
    claim = graceful_under_every("ClippedGossip", 1)(group_records(records))
    assert claim is not None and claim.verdict == NOT_CONVERGED
    # The project's plateau rule: epoch 8 against epoch 7, +0.015 > 0.002.
    assert "ClippedGossip seed 0 still rising at epoch 8 (+0.01500/epoch" in claim.why


def test_a_clean_run_rising_less_than_the_plateau_rule_allows_is_judged() -> None:
    records = _records("ClippedGossip", CLEAN, rise=0.003) + \
        _records("ClippedGossip count=1 attack=ipm", [0.79, 0.80, 0.80])
    claim = graceful_under_every("ClippedGossip", 1)(group_records(records))
    assert claim is not None and claim.verdict == HOLDS  # +0.0015 over the last epoch


def test_clipped_gossip_must_not_be_beaten_under_any_attack() -> None:
    groups = _groups(ClippedGossip__count_eq_1__attack_eq_ipm=[0.79, 0.80, 0.80],
                     Median__count_eq_1__attack_eq_ipm=[0.70, 0.71, 0.70],
                     ClippedGossip__count_eq_1__attack_eq_alie=[0.60, 0.61, 0.60],
                     Median__count_eq_1__attack_eq_alie=[0.75, 0.75, 0.76])
    claim = best_under_every("ClippedGossip", ["Median"], 1)(groups)
    assert claim is not None and claim.verdict == FAILS
    assert claim.why == "beaten beyond the seeds' noise by Median under alie"
    assert claim.figures == "alie: 0.603 vs Median 0.753; ipm: 0.797 vs Median 0.703"


def test_the_matrix_and_figures_show_every_cell() -> None:
    groups = _groups(Mean=CLEAN, Mean__count_eq_2__attack_eq_dissensus=[0.30, 0.35, 0.32])
    table = accuracy_matrix(groups, ["Mean"], ["dissensus"])
    assert table.splitlines()[2] == "| Mean | 0.8033 ± 0.0047 | – | 0.3233 ± 0.0205 |"
    figures = study_figures(groups, "byzantine_torus", ["Mean"], ["dissensus"])
    assert sorted(figures) == ["attacks.png", "dissensus_test_accuracy.png"]
    bars = figures["attacks.png"].axes[1].patches  # the panel of 2 attackers
    assert [round(bar.get_height(), 4) for bar in bars] == [0.8033, 0.3233]
    for figure in figures.values():
        pyplot.close(figure)


def test_a_trimmed_study_shows_only_the_attacks_and_counts_it_ran() -> None:
    groups = _groups(Mean__count_eq_0=CLEAN, Mean__count_eq_1__attack_eq_ipm=[0.50, 0.52, 0.51],
                     Median__count_eq_1__attack_eq_dissensus=[0.70, 0.70, 0.70])
    attacks, counts = measured(groups, ["Mean", "Median"], ["sign_flip", "ipm", "dissensus"])
    assert (attacks, counts) == (["ipm", "dissensus"], [1])
    table = accuracy_matrix(groups, ["Mean", "Median"], attacks, counts).splitlines()
    assert table[0] == "| method | clean | ipm f=1 | dissensus f=1 |"
    assert table[2:] == ["| Mean | 0.8033 ± 0.0047 | 0.5100 ± 0.0082 | – |",
                         "| Median | – | – | 0.7000 ± 0.0000 |"]
    figures = study_figures(groups, "byzantine_torus", ["Mean", "Median"], attacks, counts)
    assert len(figures["attacks.png"].axes) == 1
    for figure in figures.values():
        pyplot.close(figure)


def test_an_attack_swept_with_its_parameters_is_found_and_named_so() -> None:
    """ALIE swept as `{kind: alie, z: 10}` labels its runs `attack=alie(z=10)`: the claims
    read them as ALIE's and every table and figure names them with their z."""
    groups = _groups(Mean__count_eq_0=CLEAN,
                     Mean__count_eq_1__attack_eq_sign_flip=[0.79, 0.80, 0.80])
    groups += group_records(_records("Mean count=1 attack=alie(z=10)", [0.20, 0.22, 0.21]))
    claim = breaks_under_some("Mean", 1)(groups)
    assert claim is not None and claim.verdict == HOLDS
    assert claim.why == "it loses more than 0.05 under alie(z=10)"
    attacks, counts = measured(groups, ["Mean"], ["sign_flip", "alie", "ipm"])
    assert (attacks, counts) == (["sign_flip", "alie"], [1])
    table = accuracy_matrix(groups, ["Mean"], attacks, counts).splitlines()
    assert table[0] == "| method | clean | sign_flip f=1 | alie(z=10) f=1 |"
    assert table[2] == "| Mean | 0.8033 ± 0.0047 | 0.7967 ± 0.0047 | 0.2100 ± 0.0082 |"
    figures = study_figures(groups, "byzantine_torus", ["Mean"], attacks, counts)
    # Without dissensus runs the curves are the clean run and sign flipping's.
    assert sorted(figures) == ["attacks.png", "sign_flip_test_accuracy.png"]
    ticks = [tick.get_text() for tick in figures["attacks.png"].axes[0].get_xticklabels()]
    assert ticks == ["clean", "sign_flip", "alie(z=10)"]
    assert [round(bar.get_height(), 4) for bar in figures["attacks.png"].axes[0].patches] == \
        [0.8033, 0.7967, 0.21]
    for figure in figures.values():
        pyplot.close(figure)
