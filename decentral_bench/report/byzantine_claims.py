"""ClippedGossip's claims (He, Karimireddy & Jaggi 2022) as the Byzantine study tests them,
from the groups of one scenario run (`scenarios/byzantine/`): plain averaging breaks under
attack, the trimmed mean and the median break under some attacks on sparse graphs, and
ClippedGossip degrades gracefully; on a server, FedAvg breaks where Flower's robust
strategies hold.

A group is a method under an attack with f attackers (label `Mean count=1
attack=sign_flip`); the clean run of a method is its group with no attacker (`Mean
count=0`, or `Mean` where the clean run was a scenario run of its own). A group whose
every run diverged (FAILED, `diverged at round k`) has no final figure and counts as
broken: more than `BREAKS` lost, beyond any noise; one still running, or failed for
another reason, is left out.
Every figure is the honest agents' final mean test accuracy. A method *breaks* under an
attack when it ends more than `BREAKS` below its clean run beyond the seeds' noise, and
*degrades gracefully* when it ends within `BREAKS` of it. Where the clean run had not
plateaued (the project's rule, `claims.curve_plateau`: its accuracy over the last 10 % of
its epochs still above the 10 % before by more than `claims.PLATEAU_RISE`), a claim about
a method holding up is *not yet converged* rather than judged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from matplotlib.figure import Figure

from decentral_bench.report.claims import (
    FAILS,
    HOLDS,
    NOT_CONVERGED,
    UNCLEAR,
    Claim,
    Estimate,
    Rule,
    figure,
    final,
    noise,
    unconverged,
)
from decentral_bench.report.plots import attack_figure, metric_figure
from decentral_bench.report.summary import Group

BREAKS = 0.05    # a drop of more than 5 points of accuracy below the clean run breaks it
# A clean run below 0.2 test accuracy (twice chance on the ten-class data sets) did not learn:
# what an attack costs it says nothing about the method's robustness.
LEARNED = 0.2
ATTACKS = ("sign_flip", "gaussian", "alie", "ipm", "dissensus", "label_flip")
SERVER_ATTACKS = ("sign_flip", "gaussian", "label_flip")


def exact(groups: Sequence[Group], label: str) -> Group | None:
    """The group labelled exactly `label`, where one of its runs has finished (a group
    still running, or only failed, has no figure to judge)."""
    return next((group for group in groups if group.label == label and group.finished), None)


def attacked(method: str, count: int, attack: str) -> str:
    return f"{method} count={count} attack={attack}"


def _attacked_group(groups: Sequence[Group], method: str, count: int, attack: str,
                    keep: Callable[[Group], bool]) -> Group | None:
    """The method's group under `attack` with `count` attackers that `keep` accepts, its
    attack named by its kind alone (`attack=alie`) or, failing that, with the parameters
    it was swept with (`attack=alie(z=10)`)."""
    label = attacked(method, count, attack)
    kept = [group for group in groups if keep(group)]
    return next((group for group in kept if group.label == label), None) or next(
        (group for group in kept if group.label.startswith(f"{label}(")), None)


def under_attack(groups: Sequence[Group], method: str, count: int, attack: str,
                 ) -> Group | None:
    """The method's group under `attack` with `count` attackers where one of its runs
    has finished."""
    return _attacked_group(groups, method, count, attack, lambda group: bool(group.finished))


def diverged_under(groups: Sequence[Group], method: str, count: int, attack: str,
                   ) -> Group | None:
    """The method's group under `attack` with `count` attackers where every run of it
    diverged (no final figure: the method broke)."""
    return _attacked_group(groups, method, count, attack, lambda group: group.diverged)


def attack_text(group: Group) -> str:
    """The attack as the group's label writes it: `sign_flip`, `alie(z=10)`."""
    return group.label.partition(" attack=")[2]


def written(groups: Sequence[Group], methods: Sequence[str], attack: str) -> str:
    """`attack` as the runs of `methods` write it (`alie(z=10)`); its kind where none ran."""
    return next((attack_text(group) for method in methods for count in (1, 2)
                 if (group := under_attack(groups, method, count, attack)) is not None),
                attack)


def clean(groups: Sequence[Group], method: str) -> Group | None:
    """The method's group without attackers."""
    return exact(groups, f"{method} count=0") or exact(groups, method)


def accuracy(group: Group) -> Estimate:
    return figure(group, final("test_accuracy_mean"))


def drop(reference: Estimate, under: Estimate) -> tuple[float, float]:
    """The accuracy lost under attack, and the seeds' noise on it."""
    return reference.mean - under.mean, noise(reference, under)


def _figures(method: str, reference: Estimate,
             drops: list[tuple[str, Estimate, float]]) -> str:
    parts = [f"{attack} diverged" if math.isinf(lost) else f"{attack} {under} ({-lost:+.3f})"
             for attack, under, lost in drops]
    return f"{method} clean {reference}; " + ", ".join(parts)


def _drops(groups: Sequence[Group], method: str, count: int, attacks: Sequence[str],
           ) -> tuple[Estimate, list[tuple[str, Estimate, float, float]]] | None:
    unattacked = clean(groups, method)
    if unattacked is None:
        return None
    reference = accuracy(unattacked)
    found = []
    for attack in attacks:
        group = under_attack(groups, method, count, attack)
        if group is not None:
            under = accuracy(group)
            lost, margin = drop(reference, under)
            found.append((attack_text(group), under, lost, margin))
        elif (broke := diverged_under(groups, method, count, attack)) is not None:
            found.append((attack_text(broke), Estimate.of([]), math.inf, 0.0))
    return (reference, found) if found else None


def _did_not_learn(reference: Estimate) -> str:
    return (f"its clean runs did not learn (test accuracy {reference.mean:.3f} < "
            f"{LEARNED:g}): what an attack costs it says nothing")


def breaks_under_some(method: str, count: int, attacks: Sequence[str] = ATTACKS) -> Rule:
    """"`method` breaks under some attack with `count` attackers": holds when one attack
    costs it more than `BREAKS` beyond noise; does not hold when every attack costs less
    than `BREAKS` (noise included)."""

    def judge(groups: Sequence[Group]) -> Claim | None:
        measured = _drops(groups, method, count, attacks)
        if measured is None or math.isnan(measured[0].mean):
            return None
        reference, found = measured
        broken = [a for a, _, lost, margin in found if lost - margin > BREAKS]
        spared = [a for a, _, lost, margin in found if lost + margin < BREAKS]
        figures = _figures(method, reference, [(a, u, lost) for a, u, lost, _ in found])
        if reference.mean < LEARNED:
            verdict, why = UNCLEAR, _did_not_learn(reference)
        elif broken:
            verdict, why = HOLDS, f"it loses more than {BREAKS:g} under {', '.join(broken)}"
        elif len(spared) == len(found):
            verdict, why = FAILS, f"every attack costs it less than {BREAKS:g}"
        else:
            verdict, why = UNCLEAR, "the largest loss is within the seeds' noise of " \
                f"{BREAKS:g}"
        return Claim(f"{method} breaks under some attack (f = {count})", figures, verdict, why)

    return judge


def graceful_under_every(method: str, count: int, attacks: Sequence[str] = ATTACKS) -> Rule:
    """"`method` degrades gracefully under every attack": holds when no attack costs it more
    than `BREAKS` (beyond noise); does not hold when one costs more, beyond noise."""

    def judge(groups: Sequence[Group]) -> Claim | None:
        measured = _drops(groups, method, count, attacks)
        unattacked = clean(groups, method)
        if measured is None or unattacked is None:
            return None
        reference, found = measured
        figures = _figures(method, reference, [(a, u, lost) for a, u, lost, _ in found])
        broken = [a for a, _, lost, margin in found if lost - margin > BREAKS]
        unclear = [a for a, _, lost, margin in found if lost + margin >= BREAKS]
        rising = unconverged([unattacked])
        if reference.mean < LEARNED:
            verdict, why = UNCLEAR, _did_not_learn(reference)
        elif broken:
            verdict, why = FAILS, f"it loses more than {BREAKS:g} under {', '.join(broken)}"
        elif rising is not None:
            verdict, why = NOT_CONVERGED, f"its clean run had not plateaued: {rising}"
        elif unclear:
            verdict, why = UNCLEAR, f"the loss under {', '.join(unclear)} is within the " \
                f"seeds' noise of {BREAKS:g}"
        else:
            verdict, why = HOLDS, f"every attack costs it less than {BREAKS:g}"
        return Claim(f"{method} degrades gracefully under every attack (f = {count})",
                     figures, verdict, why)

    return judge


def best_under_every(method: str, others: Sequence[str], count: int,
                     attacks: Sequence[str] = ATTACKS) -> Rule:
    """"`method` ends at least as accurate as each of `others` under every attack": does not
    hold when one of them beats it beyond noise under some attack."""

    def judge(groups: Sequence[Group]) -> Claim | None:
        rows, beaten = [], []
        for attack in attacks:
            mine = under_attack(groups, method, count, attack)
            rivals = [(other, accuracy(group)) for other in others
                      if (group := under_attack(groups, other, count, attack)) is not None]
            broke = diverged_under(groups, method, count, attack) if mine is None else None
            if not rivals:
                continue
            best_name, best = max(rivals, key=lambda pair: pair[1].mean)
            if broke is not None:  # it diverged where another rule ended with a figure
                name = attack_text(broke)
                rows.append(f"{name}: diverged vs {best_name} {best.mean:.3f}")
                beaten.append(f"{best_name} under {name} (it diverged)")
                continue
            if mine is None:
                continue
            ours, name = accuracy(mine), attack_text(mine)
            rows.append(f"{name}: {ours.mean:.3f} vs {best_name} {best.mean:.3f}")
            if best.mean - ours.mean > noise(ours, best):
                beaten.append(f"{best_name} under {name}")
        if not rows:
            return None
        if beaten:
            verdict, why = FAILS, "beaten beyond the seeds' noise by " + ", ".join(beaten)
        else:
            verdict, why = HOLDS, "no other aggregation beats it beyond the seeds' noise"
        return Claim(f"{method} ends at least as accurate as {', '.join(others)} under every "
                     f"attack (f = {count})", "; ".join(rows), verdict, why)

    return judge


def _gossip_rules(aggregations: Sequence[str]) -> list[Rule]:
    robust = [name for name in aggregations if name not in ("Mean", "ClippedGossip")]
    rules: list[Rule] = []
    for count in (1, 2):
        rules.append(breaks_under_some("Mean", count))
        rules += [breaks_under_some(name, count) for name in robust]
        rules.append(graceful_under_every("ClippedGossip", count))
        rules.append(best_under_every("ClippedGossip", robust, count))
    return rules


def _server_rules() -> list[Rule]:
    rules: list[Rule] = []
    for count in (1, 2):
        rules.append(breaks_under_some("FedAvg", count, SERVER_ATTACKS))
        rules += [graceful_under_every(name, count, SERVER_ATTACKS)
                  for name in ("FedMedian", "Krum")]
    return rules


BYZANTINE: dict[str, list[Rule]] = {
    "byzantine_torus": _gossip_rules(("Mean", "TrimmedMean", "Median", "ClippedGossip")),
    "byzantine_ring": _gossip_rules(("Mean", "Median", "ClippedGossip")),
    "byzantine_server": _server_rules(),
}


def measured(groups: Sequence[Group], methods: Sequence[str], attacks: Sequence[str],
             ) -> tuple[list[str], list[int]]:
    """The attacks and the numbers of attackers (1, 2) that at least one method ran under:
    the columns a trimmed study has figures for (one attacker where none ran)."""
    ran = [(attack, count) for attack in attacks for count in (1, 2)
           if any(under_attack(groups, m, count, attack) is not None for m in methods)]
    return ([a for a in attacks if any(a == attack for attack, _ in ran)],
            sorted({count for _, count in ran}) or [1])


def accuracy_matrix(groups: Sequence[Group], methods: Sequence[str],
                    attacks: Sequence[str] = ATTACKS, counts: Sequence[int] = (1, 2)) -> str:
    """Markdown: each method's honest final accuracy, clean and under each attack with
    each number of attackers in `counts` (mean ± std over seeds), each attack headed as
    its runs write it (`alie(z=10)`)."""
    header = "| method | clean | " + " | ".join(
        f"{written(groups, methods, a)} f={count}" for a in attacks for count in counts) + " |"
    lines = [header, "|" + "---|" * (2 + len(counts) * len(attacks))]
    for method in methods:
        unattacked = clean(groups, method)
        cells = [str(accuracy(unattacked)) if unattacked is not None else "–"]
        for attack in attacks:
            for count in counts:
                group = under_attack(groups, method, count, attack)
                if group is not None:
                    cells.append(str(accuracy(group)))
                else:
                    broke = diverged_under(groups, method, count, attack) is not None
                    cells.append("diverged" if broke else "–")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def study_figures(groups: Sequence[Group], scenario: str, methods: Sequence[str],
                  attacks: Sequence[str], counts: Sequence[int] = (1, 2)) -> dict[str, Figure]:
    """The study's figures by file name: each method's honest final accuracy, clean and
    under each attack (a panel per number of attackers in `counts`); and the honest mean
    test accuracy over epochs, clean and under one attack with one attacker: dissensus, the
    attack the gossip claims are about, where it ran, else sign flipping. Each attack is
    named as its runs write it (`alie(z=10)`)."""
    names = [written(groups, methods, attack) for attack in attacks]
    cells: dict[tuple[str, str, int], tuple[float, float]] = {}
    for method in methods:
        unattacked = clean(groups, method)
        if unattacked is not None:
            estimate = accuracy(unattacked)
            cells[(method, "clean", 0)] = (estimate.mean, estimate.std)
        for attack, name in zip(attacks, names, strict=True):
            for count in counts:
                group = under_attack(groups, method, count, attack)
                if group is not None:
                    estimate = accuracy(group)
                    cells[(method, name, count)] = (estimate.mean, estimate.std)
    focus = "dissensus" if scenario != "byzantine_server" and "dissensus" in attacks \
        else "sign_flip"
    curves = [group for method in methods
              for group in (clean(groups, method), under_attack(groups, method, 1, focus))
              if group is not None]
    return {"attacks.png": attack_figure(cells, methods, names, counts,
                                         f"{scenario}: final test accuracy of the honest "
                                         "agents (mean ± std over seeds)"),
            f"{focus}_test_accuracy.png": metric_figure(curves, "test_accuracy_mean")}
