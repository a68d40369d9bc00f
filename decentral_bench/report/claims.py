"""The papers' claims, judged from the runs in the store.

Each claim is a comparison between groups of runs (a method, with its swept
values; several seeds each) of one scenario run: the figures (mean ± std over
seeds) and a verdict, "holds", "does not hold" or "cannot be judged" (or, for a claim
about final accuracy whose leader was still gaining at the end, "not yet converged"), with
the reason. A difference counts only when it exceeds the seeds' noise: twice the
standard error of the difference of two means (√(σ_a²/n_a + σ_b²/n_b)), and
never less than `MIN_DIFFERENCE` (half a point of accuracy); a group with one
seed has no noise estimate, and its differences are judged against the floor.

A claim about final (or eventual) accuracy is judged only where every run it
compares has stopped improving (`plateau`): the mean test accuracy over the last
10 % of a run's epochs is at most `PLATEAU_RISE` above its mean over the 10 %
before, seed by seed. Otherwise its verdict is "not yet converged", with the epoch
each unfinished run reached and its slope; a claim about the rate of training
("slower per epoch") is judged early and needs no plateau. A falling curve (overfitting)
has stopped improving too; a run with no evaluation in one of the two windows has not
shown a plateau. Every study's final-accuracy claims use this one rule: `compare_at_plateau`
for a comparison of two groups, `plateaued` / `unconverged` for a figure of its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from decentral_bench.report.summary import Group, RunRecord, group_records

MIN_DIFFERENCE = 0.005   # the smallest accuracy difference read as real
SIMILAR = 0.015          # accuracies this close (and within noise) count as "similar"
PLATEAU_WINDOW = 0.1     # the last 10 % of a run's epochs, against the 10 % before
PLATEAU_RISE = 0.002     # ... a rise above this means the run is still improving
HOLDS, FAILS, UNCLEAR = "holds", "does not hold", "cannot be judged"
NOT_CONVERGED = "not yet converged"


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


@dataclass(frozen=True)
class Plateau:
    """Whether an accuracy curve had stopped improving when its run ended: `rise` is the mean
    over its last `window` epochs (`PLATEAU_WINDOW` of them, or wider where evaluations are
    sparser) less the mean over the window before (NaN where a window holds no
    evaluation), `slope` that rise per epoch."""

    epoch: float  # epochs the run reached
    window: float  # epochs in each of the two windows
    rise: float
    slope: float

    @property
    def reached(self) -> bool:
        return self.rise <= PLATEAU_RISE  # False for NaN: too few evaluations to tell


def curve_plateau(epochs: Sequence[float], values: Sequence[float]) -> Plateau:
    """The plateau test on a curve: accuracy `values` measured after `epochs` (increasing).
    With E the last epoch and w = `PLATEAU_WINDOW` × E, the curve has plateaued when
    mean{a(e) : E − w < e ≤ E} − mean{a(e) : E − 2w < e ≤ E − w} ≤ `PLATEAU_RISE`. A
    falling curve has plateaued too: it has stopped improving. Where evaluations are
    sparser than w (an evaluation every 3 of 20 epochs), w widens to the longer of the
    last two intervals between them, so each window holds one: a wider window only adds
    to the rise of a rising curve, never passes one the narrow windows would fail."""
    if not len(epochs):
        return Plateau(math.nan, math.nan, math.nan, math.nan)
    at, accuracy = np.asarray(epochs, dtype=float), np.asarray(values, dtype=float)
    end = float(at[-1])
    width = max([PLATEAU_WINDOW * end, *np.diff(at[-3:])])
    last = accuracy[at > end - width]
    before = accuracy[(at > end - 2 * width) & (at <= end - width)]
    if not len(last) or not len(before):
        return Plateau(end, width, math.nan, math.nan)
    rise = float(last.mean() - before.mean())
    return Plateau(end, width, rise, rise / width)


def plateau(record: RunRecord, key: str = "test_accuracy_mean") -> Plateau:
    """The plateau test on a run's curve of `key` against its epochs."""
    epochs = dict(record.curves.get("epochs", []))
    points = [(epochs[step], value) for step, value in record.curves.get(key, [])
              if step in epochs]
    return curve_plateau([e for e, _ in points], [v for _, v in points])


def unconverged(groups: Sequence[Group], key: str = "test_accuracy_mean") -> str | None:
    """Why the groups' final figures cannot be read yet: each finished run whose curve of
    `key` had not plateaued, with the epoch it reached and its slope; None when every
    run had."""
    late = []
    for group in groups:
        for record in group.finished:
            found = plateau(record, key)
            if found.reached:
                continue
            if math.isnan(found.epoch):
                late.append(f"{group.label} seed {record.seed}: no {key} recorded")
            elif math.isnan(found.rise):
                late.append(f"{group.label} seed {record.seed}: too few evaluations in its "
                            f"last {2 * found.window:.3g} epochs to tell")
            else:
                late.append(f"{group.label} seed {record.seed} still rising at epoch "
                            f"{found.epoch:.0f} ({found.slope:+.5f}/epoch over its last "
                            f"{found.window:.3g} epochs: +{found.rise:.4f} > {PLATEAU_RISE})")
    return "; ".join(late) if late else None


def plateaued(group: Group, key: str = "test_accuracy_mean") -> bool:
    """Whether every finished run of `group` had stopped improving in `key` (`plateau`)."""
    return unconverged([group], key) is None


def compare_at_plateau(pair: Sequence[Group], a: Estimate, b: Estimate, expect: str,
                       key: str = "test_accuracy_mean") -> tuple[str, str]:
    """`compare` for a claim about the final figures `a` and `b` of `pair`'s groups: "not
    yet converged" (with why) unless every run of the groups had stopped improving in
    `key`, the accuracy the figures are about."""
    late = unconverged(pair, key)
    if late is not None:
        return NOT_CONVERGED, late
    return compare(a, b, expect)


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
