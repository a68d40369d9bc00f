"""The claims `scenarios/heterogeneity/dirichlet.yaml` tests, as rules over its groups.

Groups are labelled `METHOD partition=...`; the least heterogeneous level (Dirichlet
α = 10) stands for IID. Every claim is about final accuracy, so it is judged only where
every run it compares has plateaued (`claims.unconverged`, the rule every study shares);
otherwise its verdict is *not yet converged*, with the epoch each unfinished run reached
and its slope.

- Gradient tracking and D² close most of the gap CDSGD opens (Koloskova et al. 2021,
  Tang et al. 2018): at each heterogeneous level h, seed by seed,
  e = acc(M, h) − acc(CDSGD, h) − ½ (acc(CDSGD, IID) − acc(CDSGD, h)) > 0, i.e. M wins
  back more than half of what CDSGD lost; *cannot be judged* where CDSGD loses nothing
  beyond the seeds' noise.
- QG-DSGDm beats local momentum on heterogeneous data (Lin et al. 2021): at each
  heterogeneous level, acc(QG-DSGDm, h) > acc(CDMSGD-local, h).

Each claim is judged twice: on the agents' own models (acc = the mean over agents of
their test accuracy, what the report's tables give) and on the average model x̄ (for a
server method, its global model). The two differ most where the agents disagree: x̄
averages much of the heterogeneity bias out, an agent's own model does not.
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
    compare,
    compare_at_plateau,
    figure,
    final,
    unconverged,
)
from decentral_bench.report.summary import Group

IID_LEVEL = "partition=dirichlet(alpha=10.0)"
HETEROGENEOUS_LEVELS = ("partition=dirichlet(alpha=1.0)", "partition=dirichlet(alpha=0.1)",
                        "partition=shards(classes_per_agent=2)")
LEVEL_NAMES = {IID_LEVEL: "α = 10", HETEROGENEOUS_LEVELS[0]: "α = 1",
               HETEROGENEOUS_LEVELS[1]: "α = 0.1", HETEROGENEOUS_LEVELS[2]: "2 classes/agent"}
BASELINE = "CDSGD"
AGENTS, AVERAGE = "test_accuracy_mean", "average_model_test_accuracy"
MEASURED = {AGENTS: "agents' models", AVERAGE: "average model x̄"}


def _group(groups: Sequence[Group], method: str, level: str) -> Group | None:
    return next((group for group in groups if group.label == f"{method} {level}"), None)


def _accuracy(group: Group, metric: str = AGENTS) -> Estimate:
    return figure(group, final(metric))


def _seed_values(group: Group, metric: str) -> dict[int, float]:
    return {record.seed: record.final(metric) for record in group.finished}


def closes_the_gap(method: str, level: str, metric: str = AGENTS) -> Rule:
    """`method` wins back more than half of what CDSGD loses from IID to `level`, in the
    test accuracy `metric`."""

    def judge(groups: Sequence[Group]) -> Claim | None:
        corrected, baseline = _group(groups, method, level), _group(groups, BASELINE, level)
        iid = _group(groups, BASELINE, IID_LEVEL)
        if corrected is None or baseline is None or iid is None:
            return None
        ours, theirs, reference = (_seed_values(g, metric) for g in
                                   (corrected, baseline, iid))
        seeds = sorted(set(ours) & set(theirs) & set(reference))
        gap = Estimate.of([reference[s] - theirs[s] for s in seeds])
        won = Estimate.of([ours[s] - theirs[s] for s in seeds])
        excess = Estimate.of([ours[s] - theirs[s] - 0.5 * (reference[s] - theirs[s])
                              for s in seeds])
        claim = (f"{method} closes most of the gap CDSGD opens at {LEVEL_NAMES[level]} "
                 f"({MEASURED[metric]})")
        figures = f"CDSGD's gap to α = 10: {gap}; {method} wins back {won}"
        late = unconverged((corrected, baseline, iid), metric)
        if late is not None:
            return Claim(claim, figures, NOT_CONVERGED, late)
        opened = compare(Estimate(gap.mean, gap.std, gap.count), Estimate(0.0, 0.0, 1), "a>b")
        if opened[0] != HOLDS:
            return Claim(claim, figures, UNCLEAR, f"CDSGD opens no gap beyond the seeds' "
                                                  f"noise here ({opened[1]})")
        verdict, why = compare(excess, Estimate(0.0, 0.0, excess.count), "a>b")
        share = won.mean / gap.mean if gap.mean else math.nan
        return Claim(claim, figures, verdict,
                     f"{share:.0%} of the gap won back, seed by seed {why}")

    return judge


def beats(method: str, other: str, level: str, metric: str = AGENTS) -> Rule:
    """`method` ends more accurate than `other` at `level`, in the test accuracy `metric`."""

    def judge(groups: Sequence[Group]) -> Claim | None:
        ours, theirs = _group(groups, method, level), _group(groups, other, level)
        if ours is None or theirs is None:
            return None
        a, b = _accuracy(ours, metric), _accuracy(theirs, metric)
        return Claim(f"{method} beats {other} at {LEVEL_NAMES[level]} ({MEASURED[metric]})",
                     f"final test acc.: {method} {a}, {other} {b}",
                     *compare_at_plateau((ours, theirs), a, b, "a>b", metric))

    return judge


HETEROGENEITY: list[Rule] = [
    *(closes_the_gap(method, level, metric) for metric in MEASURED
      for method in ("gradient-tracking", "D2") for level in HETEROGENEOUS_LEVELS),
    *(beats("QG-DSGDm", "CDMSGD-local", level, metric) for metric in MEASURED
      for level in HETEROGENEOUS_LEVELS),
]


def levels_table(groups: Sequence[Group]) -> str:
    """Final test accuracy (mean ± std over seeds) of every method at every level, of the
    agents' models and of the average model, each with the drop from α = 10 to the most
    heterogeneous split (Markdown)."""
    return "\n".join(_levels_table(groups, metric) for metric in MEASURED)


def _levels_table(groups: Sequence[Group], metric: str) -> str:
    methods = list(dict.fromkeys(group.records[0].method for group in groups))
    levels = [IID_LEVEL, *HETEROGENEOUS_LEVELS]
    lines = [f"| {MEASURED[metric]} | " + " | ".join(LEVEL_NAMES[level] for level in levels)
             + " | drop α = 10 → 2 classes |", "|---" * (len(levels) + 2) + "|"]
    for method in methods:
        cells, means = [], []
        for level in levels:
            group = _group(groups, method, level)
            estimate = _accuracy(group, metric) if group is not None \
                else Estimate(math.nan, 0.0, 0)
            cells.append(str(estimate))
            means.append(estimate.mean)
        drop = means[0] - means[-1]
        lines.append(f"| {method} | " + " | ".join(cells)
                     + f" | {'–' if math.isnan(drop) else f'{drop:+.4f}'} |")
    return "\n".join(lines) + "\n"
