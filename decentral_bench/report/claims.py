"""The papers' claims, judged from the runs in the store.

Each claim is a comparison between groups of runs (a method, with its swept
values; several seeds each) of one scenario run: the figures (mean ± std over
seeds) and a verdict, "holds", "does not hold" or "cannot be judged", with the
reason. A difference counts only when it exceeds the seeds' noise: twice the
standard error of the difference of two means (√(σ_a²/n_a + σ_b²/n_b)), and
never less than `MIN_DIFFERENCE` (half a point of accuracy); a group with one
seed has no noise estimate, and its differences are judged against the floor.
A claim about final accuracy is "not yet converged" where a group it compares has not
plateaued: its test accuracy rose over the last quarter of its epochs by more than that
noise (`plateaued`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from decentral_bench.report.summary import Group, RunRecord, group_records

MIN_DIFFERENCE = 0.005   # the smallest accuracy difference read as real
SIMILAR = 0.015          # accuracies this close (and within noise) count as "similar"
HOLDS, FAILS, UNCLEAR = "holds", "does not hold", "cannot be judged"
NOT_CONVERGED = "not yet converged"  # a claim on final accuracy where a run still rises
LAST_STRETCH = 0.75      # plateaued: no real rise after this fraction of the epochs


@dataclass(frozen=True)
class Estimate:
    """A figure over seeds."""

    mean: float
    std: float
    count: int

    def __str__(self) -> str:
        if math.isnan(self.mean):
            return "–"
        return f"{self.mean:.4f} ± {self.std:.4f}" if self.count > 1 else f"{self.mean:.4f}"

    @classmethod
    def of(cls, values: Sequence[float]) -> Estimate:
        finite = [v for v in values if not math.isnan(v)]
        if not finite:
            return cls(math.nan, math.nan, 0)
        return cls(float(np.mean(finite)), float(np.std(finite)), len(finite))


def noise(a: Estimate, b: Estimate) -> float:
    """Twice the standard error of a − b, at least `MIN_DIFFERENCE`."""
    spread = math.sqrt((a.std ** 2 / max(a.count, 1)) + (b.std ** 2 / max(b.count, 1)))
    return max(2.0 * spread, MIN_DIFFERENCE)


def compare(a: Estimate, b: Estimate, expect: str) -> tuple[str, str]:
    """Judge `expect` ("a<b", "a>b", "a≈b", "a≥b") for two estimates, with the reason."""
    if math.isnan(a.mean) or math.isnan(b.mean):
        return UNCLEAR, "a figure is missing (did every run finish?)"
    difference, margin = a.mean - b.mean, noise(a, b)
    if expect == "a≥b":
        if difference < -margin:
            return FAILS, f"lower by {-difference:.4f}, beyond the seeds' noise ±{margin:.4f}"
        return HOLDS, f"difference {difference:+.4f} (noise ±{margin:.4f})"
    if expect == "a≈b":
        if abs(difference) <= max(SIMILAR, margin):
            return HOLDS, f"they differ by {difference:+.4f} (tolerance {max(SIMILAR, margin):.4f})"
        return FAILS, f"they differ by {difference:+.4f}, more than {max(SIMILAR, margin):.4f}"
    wanted = difference < 0 if expect == "a<b" else difference > 0
    if abs(difference) <= margin:
        return UNCLEAR, f"the difference {difference:+.4f} is within the seeds' noise ±{margin:.4f}"
    return (HOLDS if wanted else FAILS), f"difference {difference:+.4f}, noise ±{margin:.4f}"


def at_epoch(record: RunRecord, key: str, epoch: float) -> float:
    """`key` at the first of its recorded rounds where `epochs` ≥ `epoch`."""
    epochs = dict(record.curves.get("epochs", []))
    for step, value in record.curves.get(key, []):
        if epochs.get(step, math.nan) >= epoch - 1e-9:
            return value
    return math.nan


def epochs_to(record: RunRecord, key: str, target: float) -> float:
    """The epochs done when `key` first reaches `target` (inf if never)."""
    epochs = dict(record.curves.get("epochs", []))
    for step, value in record.curves.get(key, []):
        if value >= target:
            return epochs.get(step, math.nan)
    return math.inf


def late_rise(record: RunRecord, key: str = "test_accuracy_mean") -> float:
    """How much `key` rose from `LAST_STRETCH` of the run's epochs to its end."""
    return record.final(key) - at_epoch(record, key, LAST_STRETCH * record.final("epochs"))


def plateaued(group: Group) -> bool:
    """Whether the group's test accuracy rose no more than the seeds' noise (at least
    `MIN_DIFFERENCE`) over the last quarter of its epochs."""
    rise = figure(group, late_rise)
    return math.isnan(rise.mean) or \
        rise.mean <= max(2.0 * rise.std / math.sqrt(max(rise.count, 1)), MIN_DIFFERENCE)


def mean_over_rounds(record: RunRecord, key: str) -> float:
    values = [value for _, value in record.curves.get(key, [])]
    return float(np.mean(values)) if values else math.nan


def figure(group: Group, measure: Callable[[RunRecord], float]) -> Estimate:
    return Estimate.of([measure(record) for record in group.finished])


def final(key: str) -> Callable[[RunRecord], float]:
    return lambda record: record.final(key)


def gap(record: RunRecord) -> float:
    """Generalization gap at the end: train − test accuracy (common training data)."""
    return record.final("train_accuracy_mean") - record.final("test_accuracy_mean")


@dataclass(frozen=True)
class Claim:
    """One row of the claims table."""

    claim: str
    figures: str
    verdict: str
    why: str


def find(groups: Sequence[Group], label: str) -> Group | None:
    """The group whose label is `label` or starts with it (its swept values follow)."""
    for group in groups:
        if group.label == label or group.label.startswith(f"{label} "):
            return group
    return None


def judge(records: Sequence[RunRecord], rules: Sequence[Rule]) -> list[Claim]:
    """Every rule whose groups are present, judged on `records`."""
    groups = group_records(records)
    claims = []
    for rule in rules:
        claim = rule(groups)
        if claim is not None:
            claims.append(claim)
    return claims


Rule = Callable[[Sequence[Group]], "Claim | None"]


def as_markdown(claims: Sequence[Claim]) -> str:
    lines = ["| claim | measured (mean ± std over seeds) | verdict | why |",
             "|---|---|---|---|"]
    lines += [f"| {c.claim} | {c.figures} | {c.verdict} | {c.why} |" for c in claims]
    return "\n".join(lines) + "\n"
