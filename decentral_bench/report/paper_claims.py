"""The claims of Jiang et al. (2017) and Kong et al. (2021) that `scenarios/paper/` tests,
and ClippedGossip's that `scenarios/byzantine/` tests (`byzantine_claims`), CHOCO-SGD's
(Koloskova et al. 2019) that `scenarios/compression/` tests (`compression_claims`), and
those of the heterogeneity study (`heterogeneity_claims`), as rules over the groups of a
scenario run (see `claims` for how a verdict is reached).

Rules are keyed by scenario name (a `_cifar10` twin shares its FMNIST original's rules);
each names the method labels of its scenario file. Some scenarios add a table of their own
to the verdicts (`TABLES`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

from matplotlib import pyplot

from decentral_bench.report.bottleneck_claims import SCENARIO as BOTTLENECK
from decentral_bench.report.bottleneck_claims import bottleneck_rules
from decentral_bench.report.byzantine_claims import (
    ATTACKS,
    BYZANTINE,
    SERVER_ATTACKS,
    accuracy_matrix,
    measured,
    study_figures,
)
from decentral_bench.report.claims import (
    FAILS,
    HOLDS,
    UNCLEAR,
    Claim,
    Estimate,
    Rule,
    as_markdown,
    at_epoch,
    compare,
    compare_at_plateau,
    figure,
    final,
    find,
    gap,
    judge,
    mean_over_rounds,
)
from decentral_bench.report.compression_claims import CHOCO_RING, bytes_table
from decentral_bench.report.heterogeneity_claims import HETEROGENEITY, levels_table
from decentral_bench.report.straggler_claims import SCENARIO as STRAGGLERS
from decentral_bench.report.straggler_claims import straggler_rules
from decentral_bench.report.summary import (
    Group,
    RunRecord,
    group_records,
    latest_per_configuration,
    phase_means,
    phases_text,
    traffic_increase,
)
from decentral_bench.tracking.store import (
    attach_figure,
    attach_text,
    find_parent_run,
    load_records,
    open_store,
)

EARLY_EPOCH = 1.0  # "converges slower per epoch": accuracy after the first epoch
AT_THE_END = ("final", "gap")  # figures of the run's end: judged only at a plateau


def _pair(groups: Sequence[Group], a: str, b: str) -> tuple[Group, Group] | None:
    first, second = find(groups, a), find(groups, b)
    return None if first is None or second is None else (first, second)


def _early(group: Group) -> Estimate:
    return figure(group, lambda r: at_epoch(r, "test_accuracy_mean", EARLY_EPOCH))


def _accuracy(group: Group) -> Estimate:
    return figure(group, final("test_accuracy_mean"))


def _horizon(group: Group) -> str:
    """The epochs the group's runs reached, as the figures' text says it: "(epoch 100)"."""
    reached = {round(epochs) for epochs in (record.final("epochs") for record in group.finished)
               if math.isfinite(epochs)}
    return "(epoch " + ("/".join(f"{epoch:g}" for epoch in sorted(reached)) or "?") + ")"


def _rule(claim: str, a: str, b: str, measure: str, expect: str) -> Rule:
    """A claim comparing one figure of groups `a` and `b`."""
    measures = {"early": _early, "final": _accuracy,
                "gap": lambda g: figure(g, gap),
                "spread": lambda g: figure(g, lambda r: mean_over_rounds(r, "test_accuracy_std")),
                "xi": lambda g: figure(g, final("consensus_distance"))}
    names = {"early": f"test acc. after epoch {EARLY_EPOCH:g}", "final": "final test acc.",
             "gap": "final train − test acc.", "spread": "mean std of test acc. over agents",
             "xi": "final Ξ²"}

    def judge(groups: Sequence[Group]) -> Claim | None:
        pair = _pair(groups, a, b)
        if pair is None:
            return None
        first, second = (measures[measure](group) for group in pair)
        if measure not in AT_THE_END:
            return Claim(claim, f"{names[measure]}: {pair[0].label} {first}, "
                                f"{pair[1].label} {second}", *compare(first, second, expect))
        return Claim(claim, f"{names[measure]}: {pair[0].label} {first} {_horizon(pair[0])}, "
                            f"{pair[1].label} {second} {_horizon(pair[1])}",
                     *compare_at_plateau(pair, first, second, expect))

    return judge


def _drift(groups: Sequence[Group]) -> Claim | None:
    """Server failure: FedAvg's Ξ² grows after the failure (epoch 10), CDMSGD's does not."""
    pair = _pair(groups, "FedAvg", "CDMSGD")
    if pair is None:
        return None

    def growth(record: RunRecord) -> float:
        before = at_epoch(record, "consensus_distance", 10.0)
        return record.final("consensus_distance") / before if before > 0 else math.nan

    fedavg, cdmsgd = (figure(group, growth) for group in pair)
    if math.isnan(fedavg.mean) or math.isnan(cdmsgd.mean):
        verdict, why = UNCLEAR, "Ξ² at the failure or at the end is missing"
    elif fedavg.mean > 2.0 and fedavg.mean > 2.0 * cdmsgd.mean:
        verdict, why = HOLDS, "FedAvg's Ξ² grew more than 2×, and over twice as much as CDMSGD's"
    elif fedavg.mean <= cdmsgd.mean:
        verdict, why = FAILS, "FedAvg's Ξ² grew no more than CDMSGD's"
    else:
        verdict, why = UNCLEAR, "FedAvg's Ξ² grew, but less than the 2× the rule asks"
    return Claim("After a server failure FedAvg's agents drift apart while CDMSGD's stay "
                 "together", f"Ξ² final / Ξ² at epoch 10: FedAvg {fedavg}, CDMSGD {cdmsgd}",
                 verdict, why)


JIANG: dict[str, list[Rule]] = {
    "fig1a_cdsgd_vs_sgd": [
        _rule("CDSGD converges slower than centralized SGD per epoch", "CDSGD", "SGD",
              "early", "a<b"),
        _rule("... but reaches accuracy comparable to SGD", "CDSGD", "SGD", "final", "a≈b"),
        _rule("... with a smaller generalization gap", "CDSGD", "SGD", "gap", "a<b"),
    ],
    "fig1b_cdmsgd_vs_fedavg": [
        _rule("CDMSGD converges at a rate similar to FedAvg", "CDMSGD", "FedAvg", "early",
              "a≈b"),
        _rule("CDMSGD performs better than FedAvg at the steady state", "CDMSGD", "FedAvg",
              "final", "a>b"),
    ],
    "fig2a_network_size": [
        _rule("More agents converge slower per epoch (16 vs 2)", "CDMSGD agents=16",
              "CDMSGD agents=2", "early", "a<b"),
        _rule("... but reach similar accuracy (16 vs 2)", "CDMSGD agents=16", "CDMSGD agents=2",
              "final", "a≈b"),
    ],
    "fig2b_topology": [
        _rule("The denser network (complete, λ2 = 0) keeps the agents' accuracies closer than "
              "the ring (λ2 = 0.544)", "CDMSGD matrix_file=complete5_uniform.csv",
              "CDMSGD matrix_file=ring5_authors.csv", "spread", "a<b"),
        _rule("The average accuracy converges faster on the sparser network",
              "CDMSGD matrix_file=ring5_authors.csv",
              "CDMSGD matrix_file=complete5_uniform.csv", "early", "a>b"),
    ],
    "fig2b_topology_lambda2": [
        _rule("(extension) λ2 0.25 keeps the agents' accuracies closer than λ2 0.95",
              "CDMSGD target_lambda2=0.25", "CDMSGD target_lambda2=0.95", "spread", "a<b"),
    ],
    "paper_server_failure": [
        _drift,
        _rule("CDMSGD ends at least as accurate as FedAvg after the failure", "CDMSGD",
              "FedAvg", "final", "a≥b"),
    ],
}


def _extra_traffic(group: Group, baseline: Group) -> Estimate:
    """Bytes moved beyond the uncontrolled run's, in percent (seed by seed)."""
    return Estimate.of(traffic_increase(group, baseline))


def _kong_traffic(groups: Sequence[Group]) -> Claim | None:
    control, throughout = find(groups, "control-phase-1"), find(groups, "control-throughout")
    baseline = find(groups, "decentralized")
    if control is None or throughout is None or baseline is None:
        return None
    cheap, dear = _extra_traffic(control, baseline), _extra_traffic(throughout, baseline)
    verdict, why = compare(cheap, dear, "a<b")
    if dear.mean > 0:
        why += f"; {cheap.mean / dear.mean:.2f} of its extra bytes"
    return Claim("... at far less traffic than controlling throughout",
                 f"extra traffic vs uncontrolled, %: control-phase-1 {cheap}, "
                 f"control-throughout {dear}", verdict, why)


KONG_ARMS = ("centralized", "decentralized", "dec-phase-1", "dec-phase-2", "dec-phase-3",
             "control-phase-1", "control-phases-2-3", "control-throughout")
_RING_GAP = _rule("Decentralized training (the ring) ends below centralized", "decentralized",
                  "centralized", "final", "a<b")


def _given_a_gap(rule: Rule) -> Rule:
    """A claim about where the ring's gap comes from or what recovers it: judged only where
    that gap is measurable (the ring ends below centralized beyond the seeds' noise, at a
    plateau); elsewhere it cannot be judged, whatever its own figures say."""

    def judge(groups: Sequence[Group]) -> Claim | None:
        claim, gap = rule(groups), _RING_GAP(groups)
        if claim is None or gap is None or gap.verdict == HOLDS:
            return claim
        return Claim(claim.claim, claim.figures, UNCLEAR,
                     f"the ring's own gap to centralized is not measurable at this size "
                     f"({gap.verdict}: {gap.why})")

    return judge


KONG: list[Rule] = [
    _RING_GAP,
    _given_a_gap(_rule("Most of the gap comes from phase 1: decentralized only in phase 1 "
                       "ends below decentralized only in phase 2", "dec-phase-1",
                       "dec-phase-2", "final", "a<b")),
    _given_a_gap(_rule("... and below decentralized only in phase 3", "dec-phase-1",
                       "dec-phase-3", "final", "a<b")),
    _given_a_gap(_rule("Controlling Ξ in phase 1 recovers (most of) the gap: it ends above "
                       "the uncontrolled ring", "control-phase-1", "decentralized", "final",
                       "a>b")),
    _given_a_gap(_rule("... and close to centralized", "control-phase-1", "centralized",
                       "final", "a≈b")),
    _kong_traffic,
    _given_a_gap(_rule("Controlling only the later phases does not recover it: it ends "
                       "below centralized", "control-phases-2-3", "centralized", "final",
                       "a<b")),
]

RULES: dict[str, list[Rule]] = {**JIANG, "kong_phases": KONG, "choco_ring": CHOCO_RING,
                                 **BYZANTINE, "heterogeneity_dirichlet": HETEROGENEITY}
# The methods of each Byzantine study, as its accuracy matrix lists them.
MATRIX = {"byzantine_torus": ("Mean", "TrimmedMean", "Median", "ClippedGossip"),
          "byzantine_ring": ("Mean", "Median", "ClippedGossip"),
          "byzantine_server": ("FedAvg", "FedMedian", "Krum")}


def rules_for(scenario: str) -> list[Rule]:
    """The rules of a scenario (its `_cifar10` twin shares them); none if unknown."""
    return RULES.get(scenario.removesuffix("_cifar10"), [])


def arms_table(groups: Sequence[Group]) -> str:
    """Kong et al.'s table: each arm's final test accuracy, its gap to centralized, its
    extra traffic against the uncontrolled ring and its mean Ξ² per phase (Markdown)."""
    exact, baseline = find(groups, "centralized"), find(groups, "decentralized")
    lines = ["| arm | final test acc. | gap to centralized | extra traffic % | "
             "mean Ξ² phase 1 / 2 / 3 |", "|---|---|---|---|---|"]
    for group in groups:
        accuracy = _accuracy(group)
        gap_to = "–" if exact is None else \
            f"{_accuracy(exact).mean - accuracy.mean:+.4f}"
        extra = "–" if baseline is None else str(_extra_traffic(group, baseline))
        xi = phases_text(phase_means(group))
        lines.append(f"| {group.label} | {accuracy} | {gap_to} | {extra} | {xi} |")
    return "\n".join(lines) + "\n"


TABLES: dict[str, Callable[[Sequence[Group]], str]] = {"heterogeneity_dirichlet": levels_table,
                                                      "choco_ring": bytes_table}


def by_swept_values(records: Sequence[RunRecord]) -> dict[str, list[RunRecord]]:
    """The records of each sweep combination, keyed by its values as labels write them
    ("agents=32"; "" where the scenario sweeps nothing), in the order they first appear."""
    parts: dict[str, list[RunRecord]] = {}
    for record in records:
        parts.setdefault(record.label.removeprefix(record.method).strip(), []).append(record)
    return parts


def kong_tables(records: Sequence[RunRecord]) -> str:
    """Kong et al.'s claims and arms table, for each ring size (sweep combination) apart:
    the phase claims compare arms of one size."""
    text = []
    for values, part in by_swept_values(records).items():
        groups = group_records(part)
        missing = [arm for arm in KONG_ARMS if find(groups, arm) is None]
        heading = f"### {values}\n\n" if values else ""
        text.append(heading + as_markdown(judge(part, KONG)) + "\n" + arms_table(groups) +
                    (f"\nNot run at this size: {', '.join(missing)}.\n" if missing else ""))
    return "\n".join(text)


def judge_store(tracking_uri: str | None, experiments: Sequence[str] | None,
                figures: Path | None = None) -> list[str]:
    """Judge the claims of each named experiment (default: every papers' scenario found in
    the store), log each table on its parent run as claims.md and return the tables.
    A Byzantine study also gets its accuracy matrix and its figures, logged on the parent
    under plots/ and, with `figures`, written there as `<scenario>_<name>.png`. A named
    experiment that is not in the store raises LookupError."""
    client = open_store(tracking_uri)
    names = experiments or [*(name for base in RULES for name in (base, f"{base}_cifar10")),
                            BOTTLENECK, STRAGGLERS]
    sections = []
    for name in names:
        parent = find_parent_run(client, name)
        if parent is None or parent.data.tags.get("kind") != "scenario":
            if experiments:
                raise LookupError(repr(name))
            continue
        scenario = parent.data.tags.get("scenario", name)
        records = latest_per_configuration(load_records(client, parent.info.run_id))
        rules = rules_for(scenario)
        if scenario in (BOTTLENECK, STRAGGLERS):  # judged at the run's own target accuracy
            target = parent.data.params.get("report.target_accuracy", "None")
            timed = bottleneck_rules if scenario == BOTTLENECK else straggler_rules
            rules = timed(float(target)) if target != "None" else []
        text = f"## {scenario}\n\n"
        if scenario.removesuffix("_cifar10") == "kong_phases":
            text += kong_tables(records)
        else:
            text += as_markdown(judge(records, rules))
        table = TABLES.get(scenario.removesuffix("_cifar10"))
        if table is not None:
            text += "\n" + table(group_records(records))
        if scenario in MATRIX:
            groups = group_records(records)
            attacks, counts = measured(groups, MATRIX[scenario], SERVER_ATTACKS if
                                       scenario == "byzantine_server" else ATTACKS)
            text += "\nFinal test accuracy of the honest agents:\n\n" + accuracy_matrix(
                groups, MATRIX[scenario], attacks, counts)
            for name, drawn in study_figures(groups, scenario, MATRIX[scenario], attacks,
                                             counts).items():
                attach_figure(client, parent.info.run_id, drawn, f"plots/{name}")
                if figures is not None:
                    drawn.savefig(figures / f"{scenario}_{name}")
                pyplot.close(drawn)
        attach_text(client, parent.info.run_id, text, "claims.md")
        sections.append(text)
    return sections
