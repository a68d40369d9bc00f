"""The claims `scenarios/heterogeneity/dirichlet.yaml` tests, as rules over its groups.

Groups are labelled `METHOD partition=...`; the least heterogeneous level (Dirichlet
α = 10) stands for IID. Every claim is about final accuracy, and the runs may not have
plateaued, so each verdict is checked against the runs' late slope: the margin the claim
rests on moves, over the last quarter of the epochs, by some drift; if continuing that
drift for as many epochs again (four quarters, a generous projection: learning curves
flatten) would flip the verdict, it is *not yet converged* instead.

- Gradient tracking and D² close most of the gap CDSGD opens (Koloskova et al. 2021,
  Tang et al. 2018): at each heterogeneous level h, seed by seed,
  e = acc(M, h) − acc(CDSGD, h) − ½ (acc(CDSGD, IID) − acc(CDSGD, h)) > 0, i.e. M wins
  back more than half of what CDSGD lost; *cannot be judged* where CDSGD loses nothing
  beyond the seeds' noise.
- QG-DSGDm beats local momentum on heterogeneous data (Lin et al. 2021): at each
  heterogeneous level, acc(QG-DSGDm, h) > acc(CDMSGD-local, h).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from decentral_bench.report.claims import (
    HOLDS,
    NOT_CONVERGED,
    UNCLEAR,
    Claim,
    Estimate,
    Rule,
    at_epoch,
    compare,
    figure,
    final,
)
from decentral_bench.report.summary import Group, RunRecord

IID_LEVEL = "partition=dirichlet(alpha=10.0)"
HETEROGENEOUS_LEVELS = ("partition=dirichlet(alpha=1.0)", "partition=dirichlet(alpha=0.1)",
                        "partition=shards(classes_per_agent=2)")
LEVEL_NAMES = {IID_LEVEL: "α = 10", HETEROGENEOUS_LEVELS[0]: "α = 1",
               HETEROGENEOUS_LEVELS[1]: "α = 0.1", HETEROGENEOUS_LEVELS[2]: "2 classes/agent"}
BASELINE = "CDSGD"
LATE_FRACTION = 0.75  # the late slope: accuracy gained since this fraction of the epochs


def _group(groups: Sequence[Group], method: str, level: str) -> Group | None:
    return next((group for group in groups if group.label == f"{method} {level}"), None)


def _accuracy(group: Group) -> Estimate:
    return figure(group, final("test_accuracy_mean"))


def late_gain(record: RunRecord) -> float:
    """Test accuracy gained over the last quarter of the run's epochs."""
    epochs = record.curves.get("epochs", [])
    if not epochs:
        return math.nan
    late = at_epoch(record, "test_accuracy_mean", LATE_FRACTION * epochs[-1][1])
    return record.final("test_accuracy_mean") - late


PROJECTED_QUARTERS = 4  # "as many epochs again", in quarters of the run


def _settled(verdict: str, why: str, margin: float, drift: float) -> tuple[str, str]:
    """`verdict` on a claim resting on `margin` (> 0: it holds), or *not yet converged* when
    the margin's late drift (per last quarter of the epochs), continued for as many epochs
    again, would flip it."""
    if verdict == UNCLEAR or not math.isfinite(drift):
        return verdict, why
    projected = margin + PROJECTED_QUARTERS * drift
    if (verdict == HOLDS) == (projected > 0):
        return verdict, why
    return NOT_CONVERGED, (f"{why}; still moving: at the last quarter's pace the margin "
                           f"{margin:+.4f} would be {projected:+.4f} after as many epochs "
                           "again")


def _seed_values(group: Group) -> dict[int, float]:
    return {record.seed: record.final("test_accuracy_mean") for record in group.finished}


def _late_gains(group: Group) -> dict[int, float]:
    return {record.seed: late_gain(record) for record in group.finished}


def closes_the_gap(method: str, level: str) -> Rule:
    """`method` wins back more than half of what CDSGD loses from IID to `level`."""

    def judge(groups: Sequence[Group]) -> Claim | None:
        corrected, baseline = _group(groups, method, level), _group(groups, BASELINE, level)
        iid = _group(groups, BASELINE, IID_LEVEL)
        if corrected is None or baseline is None or iid is None:
            return None
        ours, theirs, reference = (_seed_values(g) for g in (corrected, baseline, iid))
        seeds = sorted(set(ours) & set(theirs) & set(reference))
        gap = Estimate.of([reference[s] - theirs[s] for s in seeds])
        won = Estimate.of([ours[s] - theirs[s] for s in seeds])
        excess = Estimate.of([ours[s] - theirs[s] - 0.5 * (reference[s] - theirs[s])
                              for s in seeds])
        claim = f"{method} closes most of the gap CDSGD opens at {LEVEL_NAMES[level]}"
        figures = f"CDSGD's gap to α = 10: {gap}; {method} wins back {won}"
        opened = compare(Estimate(gap.mean, gap.std, gap.count), Estimate(0.0, 0.0, 1), "a>b")
        if opened[0] != HOLDS:
            return Claim(claim, figures, UNCLEAR, f"CDSGD opens no gap beyond the seeds' "
                                                  f"noise here ({opened[1]})")
        verdict, why = compare(excess, Estimate(0.0, 0.0, excess.count), "a>b")
        share = won.mean / gap.mean if gap.mean else math.nan
        why = f"{share:.0%} of the gap won back, seed by seed {why}"
        gains = [_late_gains(g) for g in (corrected, baseline, iid)]
        drift = Estimate.of([gains[0][s] - 0.5 * gains[1][s] - 0.5 * gains[2][s]
                             for s in seeds if all(s in gain for gain in gains)]).mean
        return Claim(claim, figures, *_settled(verdict, why, excess.mean, drift))

    return judge


def beats(method: str, other: str, level: str) -> Rule:
    """`method` ends more accurate than `other` at `level`."""

    def judge(groups: Sequence[Group]) -> Claim | None:
        ours, theirs = _group(groups, method, level), _group(groups, other, level)
        if ours is None or theirs is None:
            return None
        a, b = _accuracy(ours), _accuracy(theirs)
        verdict, why = compare(a, b, "a>b")
        drift = figure(ours, late_gain).mean - figure(theirs, late_gain).mean
        return Claim(f"{method} beats {other} at {LEVEL_NAMES[level]}",
                     f"final test acc.: {method} {a}, {other} {b}",
                     *_settled(verdict, why, a.mean - b.mean, drift))

    return judge


HETEROGENEITY: list[Rule] = [
    *(closes_the_gap(method, level) for method in ("gradient-tracking", "D2")
      for level in HETEROGENEOUS_LEVELS),
    *(beats("QG-DSGDm", "CDMSGD-local", level) for level in HETEROGENEOUS_LEVELS),
]


def levels_table(groups: Sequence[Group]) -> str:
    """Final test accuracy (mean ± std over seeds) of every method at every level, and the
    drop from α = 10 to the most heterogeneous split (Markdown)."""
    methods = list(dict.fromkeys(group.records[0].method for group in groups))
    levels = [IID_LEVEL, *HETEROGENEOUS_LEVELS]
    lines = ["| method | " + " | ".join(LEVEL_NAMES[level] for level in levels)
             + " | drop α = 10 → 2 classes |", "|---" * (len(levels) + 2) + "|"]
    for method in methods:
        cells, means = [], []
        for level in levels:
            group = _group(groups, method, level)
            estimate = _accuracy(group) if group is not None else Estimate(math.nan, 0.0, 0)
            cells.append(str(estimate))
            means.append(estimate.mean)
        drop = means[0] - means[-1]
        lines.append(f"| {method} | " + " | ".join(cells)
                     + f" | {'–' if math.isnan(drop) else f'{drop:+.4f}'} |")
    return "\n".join(lines) + "\n"
