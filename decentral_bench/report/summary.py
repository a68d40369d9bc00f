"""Comparison reports over the child runs read back from the MLflow store.

A report groups a parent run's finished children by method and swept
values, averages each group over its seeds, and tabulates: the epochs each
trained (its budget, so unequal budgets show beside every figure), final and best
mean test accuracy, rounds, epochs and simulated seconds to a target accuracy
(seconds where the scenario has a `network:`), generalization
gap (train − test accuracy), final Ξ², bytes moved and wall time. Where
methods control the consensus distance (Kong et al. 2021), a second table
gives each controlled group's extra traffic against the scenario's
uncontrolled method of the same algorithm (and the same swept values), in
percent, and the mean Ξ² its agents held in each step-size phase. The run
command and `decentral-bench report` both build it from the store
(`tracking.load_records`), so what is printed is what is logged.

Rounds mean different amounts of training per method (FedAvg's round is
`local_epochs` epochs, a gossip round `local_steps` minibatches), so the
report also gives the point where the target is reached in epochs: passes
over an agent's own data, the per-round `epochs` metric; and, on a modelled
network, in simulated seconds: the `sim_time_s` metric, the time the rounds take
on that network (`decentral_bench.network.clock`).
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from decentral_bench.tracking.records import RunRecord

COLUMNS = ("method", "seeds", "status", "epochs", "final test acc", "best test acc",
           "rounds to target", "epochs to target", "sim s to target", "gen. gap", "Ξ² final",
           "MB moved", "time s")
CONTROL_COLUMNS = ("method", "uncontrolled", "extra traffic %", "mean Ξ² by phase")


@dataclass
class Group:
    """Runs that differ only by seed."""

    label: str
    records: list[RunRecord]

    @property
    def finished(self) -> list[RunRecord]:
        return [r for r in self.records if r.status == "FINISHED"]

    @property
    def diverged(self) -> bool:
        """Whether every run of the group diverged (FAILED, `diverged at round k`): none
        has a final figure, and what they say is that the method broke."""
        return bool(self.records) and all(
            r.status == "FAILED" and r.error.startswith("diverged") for r in self.records)

    @property
    def algorithm(self) -> str:
        return self.records[0].algorithm

    def has(self, key: str) -> bool:
        """Whether every finished run of the group recorded metric `key`."""
        return bool(self.finished) and all(key in r.curves for r in self.finished)

    def curve(self, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rounds, mean and std over seeds of a metric (rounds every seed recorded)."""
        series = [dict(r.curves.get(key, [])) for r in self.finished]
        if not series:
            return np.array([]), np.array([]), np.array([])
        rounds = sorted(set.intersection(*(set(s) for s in series)))
        values = np.array([[s[k] for k in rounds] for s in series])
        return np.array(rounds), values.mean(axis=0), values.std(axis=0)

    def epochs_at(self, rounds: np.ndarray) -> np.ndarray:
        """Epochs done after each of `rounds`: the `epochs` metric, mean over seeds."""
        return self.at(rounds, "epochs")

    def seconds_at(self, rounds: np.ndarray) -> np.ndarray:
        """Simulated seconds after each of `rounds`: `sim_time_s`, mean over seeds (NaN
        where the scenario modelled no network)."""
        return self.at(rounds, "sim_time_s")

    def at(self, rounds: np.ndarray, key: str) -> np.ndarray:
        """A per-round metric after each of `rounds`, mean over seeds."""
        known, values, _ = self.curve(key)
        if len(known) == 0:
            return np.full(len(rounds), math.nan)
        return np.interp(rounds, known, values)


@dataclass
class GroupSummary:
    """A group's figures, averaged over its finished seeds (NaN where there is none).

    `rounds_to_target`, `epochs_to_target` and `time_to_target_s` are NaN when no
    target is set or it was not reached (the time also without a network); `reached`
    tells them apart.
    """

    label: str
    seeds: int
    status: str
    epochs: float  # passes over an agent's own data by the last round: the budget
    final_test_accuracy: float
    final_test_accuracy_std: float
    best_test_accuracy: float
    rounds_to_target: float
    epochs_to_target: float
    time_to_target_s: float
    reached: bool
    generalization_gap: float
    consensus_distance_final: float
    mb_moved: float
    wall_time_s: float
    sim_time_s: float  # the simulated seconds of all the rounds (NaN without a network)
    # Consensus control only: against `baseline`, the uncontrolled group.
    baseline: str = ""
    extra_traffic_percent: float = math.nan
    consensus_by_phase: dict[int, float] = field(default_factory=dict)

    def row(self, target_accuracy: float | None) -> tuple[str, ...]:
        """The group as the table's strings."""
        final = _format(self.final_test_accuracy)
        if self.seeds > 1:
            final += f" ± {self.final_test_accuracy_std:.4f}"
        to_target, epochs, seconds = "–", "–", "–"
        if target_accuracy is not None and self.seeds:
            to_target = str(int(self.rounds_to_target)) if self.reached else "not reached"
            epochs = _format(self.epochs_to_target, 2) if self.reached else "not reached"
            seconds = _seconds(self.time_to_target_s) if self.reached else \
                "not reached" if math.isfinite(self.sim_time_s) else "–"
        consensus = self.consensus_distance_final
        return (self.label, str(self.seeds), self.status, _format(self.epochs, 2), final,
                _format(self.best_test_accuracy), to_target, epochs, seconds,
                _format(self.generalization_gap),
                "–" if math.isnan(consensus) else f"{consensus:.3g}",
                _format(self.mb_moved, 2), _format(self.wall_time_s, 1))

    def figures(self) -> dict[str, float]:
        """The numeric figures by name, finite ones only (what the parent logs as metrics)."""
        values = {"epochs": self.epochs, "final_test_accuracy": self.final_test_accuracy,
                  "best_test_accuracy": self.best_test_accuracy,
                  "rounds_to_target": self.rounds_to_target,
                  "epochs_to_target": self.epochs_to_target,
                  "time_to_target_s": self.time_to_target_s,
                  "generalization_gap": self.generalization_gap,
                  "consensus_distance_final": self.consensus_distance_final,
                  "mb_moved": self.mb_moved, "wall_time_s": self.wall_time_s,
                  "sim_time_s": self.sim_time_s}
        if self.seeds > 1:
            values["final_test_accuracy_std"] = self.final_test_accuracy_std
        values["extra_traffic_percent"] = self.extra_traffic_percent
        values.update({f"consensus_distance_phase_{phase}": value
                       for phase, value in self.consensus_by_phase.items()})
        return {key: value for key, value in values.items() if math.isfinite(value)}

    def control_row(self) -> tuple[str, ...]:
        """The group as a row of the consensus-control table."""
        return (self.label, self.baseline or "–", _format(self.extra_traffic_percent, 1),
                phases_text(self.consensus_by_phase))


def latest_per_configuration(records: Sequence[RunRecord]) -> list[RunRecord]:
    """One record per configuration hash: its latest FINISHED run, else its latest run
    (a configuration that failed and then finished on a re-run counts as finished)."""
    chosen: dict[str, RunRecord] = {}
    for record in records:  # oldest first
        kept = chosen.get(record.config_hash)
        if kept is None or kept.status != "FINISHED" or record.status == "FINISHED":
            chosen[record.config_hash] = record
    return list(chosen.values())


def group_records(records: Sequence[RunRecord]) -> list[Group]:
    """Group by label (method and swept values), in first-seen order."""
    groups: dict[str, list[RunRecord]] = defaultdict(list)
    for record in records:
        groups[record.label].append(record)
    return [Group(label, members) for label, members in groups.items()]


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def _format(value: float, digits: int = 4) -> str:
    return "–" if math.isnan(value) else f"{value:.{digits}f}"


def _seconds(value: float) -> str:
    """Simulated seconds to 4 significant digits (`0.1234`, `12.35`, `1.235e+04`)."""
    return "–" if math.isnan(value) else f"{value:.4g}"


def summarize(group: Group, target_accuracy: float | None) -> GroupSummary:
    """A group's figures; the target is reached at the first evaluated round whose
    mean (over seeds) test accuracy is at least `target_accuracy`."""
    finished = group.finished
    finals = [r.final("test_accuracy_mean") for r in finished]
    rounds, mean, _ = group.curve("test_accuracy_mean")
    to_target = math.nan
    if target_accuracy is not None and len(mean):
        reached = np.flatnonzero(mean >= target_accuracy)
        to_target = float(rounds[reached[0]]) if len(reached) else math.nan
    reached_at = np.array([to_target])
    epochs = float(group.epochs_at(reached_at)[0]) if math.isfinite(to_target) else math.nan
    seconds = float(group.seconds_at(reached_at)[0]) if math.isfinite(to_target) else math.nan
    return GroupSummary(
        label=group.label, seeds=len(finished),
        status="/".join(sorted({r.status for r in group.records})),
        epochs=_mean([r.final("epochs") for r in finished]),
        final_test_accuracy=_mean(finals),
        final_test_accuracy_std=float(np.std(finals)) if finals else math.nan,
        best_test_accuracy=float(mean.max()) if len(mean) else math.nan,
        rounds_to_target=to_target, epochs_to_target=epochs, time_to_target_s=seconds,
        reached=math.isfinite(to_target),
        generalization_gap=_mean([r.final("train_accuracy_mean") - r.final("test_accuracy_mean")
                                  for r in finished]),
        consensus_distance_final=_mean([r.final("consensus_distance") for r in finished]),
        mb_moved=_mean([r.final("bytes_moved_total") / 1e6 for r in finished]),
        wall_time_s=_mean([r.wall_time_s for r in finished]),
        sim_time_s=_mean([r.final("sim_time_s") for r in finished]))


def is_controlled(group: Group) -> bool:
    """Whether the group's runs controlled the consensus distance."""
    return group.has("consensus_distance_controlled")


def consensus_by_phase(record: RunRecord) -> dict[int, float]:
    """Mean Ξ² the agents held (after control, where there was control) in each step-size
    phase."""
    phase = dict(record.curves.get("phase", []))
    held = record.curves.get("consensus_distance_controlled") or \
        record.curves.get("consensus_distance", [])
    by_phase: dict[int, list[float]] = {}
    for step, value in held:
        if step in phase:
            by_phase.setdefault(int(phase[step]), []).append(value)
    return {p: sum(values) / len(values) for p, values in sorted(by_phase.items())}


def phase_means(group: Group) -> dict[int, float]:
    """The group's mean Ξ² per step-size phase, averaged over its finished seeds."""
    phases: dict[int, list[float]] = {}
    for record in group.finished:
        for phase, value in consensus_by_phase(record).items():
            phases.setdefault(phase, []).append(value)
    return {phase: _mean(values) for phase, values in sorted(phases.items())}


def phases_text(by_phase: dict[int, float]) -> str:
    """Mean Ξ² per phase as the tables show it: `4.65 / 0.112 / 0.00133`."""
    return " / ".join(f"{value:.3g}" for _, value in sorted(by_phase.items())) or "–"


def traffic_increase(group: Group, baseline: Group) -> list[float]:
    """Bytes moved beyond the baseline's, in percent, seed by seed."""
    base = {r.seed: r.final("bytes_moved_total") for r in baseline.finished}
    return [100.0 * (r.final("bytes_moved_total") / base[r.seed] - 1.0)
            for r in group.finished if base.get(r.seed, 0) > 0]


def uncontrolled_baseline(group: Group, groups: Sequence[Group]) -> Group | None:
    """The scenario's uncontrolled group of the same algorithm and swept values."""
    def swept(other: Group) -> str:
        return other.label.removeprefix(other.records[0].method)

    return next((other for other in groups if other.algorithm == group.algorithm
                 and swept(other) == swept(group) and not is_controlled(other)
                 and other.finished), None)


def summaries(records: Sequence[RunRecord], target_accuracy: float | None = None,
              ) -> list[GroupSummary]:
    """One summary per group, in first-seen order; a controlled group also gets its
    extra traffic against its uncontrolled baseline and its mean Ξ² per phase, and each
    such baseline its own, for reference."""
    groups = group_records(records)
    baseline_of = {id(group): uncontrolled_baseline(group, groups) for group in groups
                   if is_controlled(group)}
    for baseline in list(baseline_of.values()):
        if baseline is not None:
            baseline_of[id(baseline)] = baseline
    found = []
    for group in groups:
        summary = summarize(group, target_accuracy)
        if id(group) in baseline_of:
            summary.consensus_by_phase = phase_means(group)
            baseline = baseline_of[id(group)]
            if baseline is not None:
                summary.baseline = baseline.label
                summary.extra_traffic_percent = _mean(traffic_increase(group, baseline))
        found.append(summary)
    return found


def table_rows(groups: Sequence[GroupSummary], target_accuracy: float | None,
               ) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    """The comparison table's rows (accuracies are means over seeds, ± std when several)
    and the consensus-control table's (empty without control)."""
    return ([group.row(target_accuracy) for group in groups],
            [group.control_row() for group in groups if group.consensus_by_phase])


def report_rows(records: Sequence[RunRecord], target_accuracy: float | None = None,
                ) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    """Both tables' rows for a parent's records (see `table_rows`)."""
    return table_rows(summaries(records, target_accuracy), target_accuracy)


def shared_runs(records: Sequence[RunRecord]) -> list[str]:
    """What the table shows once though a sweep varies it: per set of swept keys some
    methods ignore (FedAvg and centralized SGD do not read the graph), one line naming
    the methods, e.g. "FedAvg and SGD do not read topology.kind, so each ran once, not
    once per swept value"."""
    ignoring: dict[tuple[str, ...], list[str]] = {}
    for record in records:
        methods = ignoring.setdefault(record.shared, []) if record.shared else []
        if record.shared and record.method not in methods:
            methods.append(record.method)
    lines = []
    for keys, methods in ignoring.items():
        named = methods[0] if len(methods) == 1 else \
            ", ".join(methods[:-1]) + " and " + methods[-1]
        verb, subject = ("does", "it") if len(methods) == 1 else ("do", "each")
        lines.append(f"{named} {verb} not read {', '.join(keys)}, so {subject} ran once, not "
                     "once per swept value")
    return lines


def as_markdown(rows: Sequence[tuple[str, ...]], columns: Sequence[str] = COLUMNS) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def as_csv(rows: Sequence[tuple[str, ...]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(rows)
    return buffer.getvalue()


def as_table_data(groups: Sequence[GroupSummary]) -> dict[str, list[object]]:
    """Column → values, the shape `MlflowClient.log_table` takes: the figures as numbers
    (None where there is none), so that tables of several parents compare."""
    columns: dict[str, list[object]] = {"method": [], "seeds": [], "status": []}
    names = ("epochs", "final_test_accuracy", "final_test_accuracy_std", "best_test_accuracy",
             "rounds_to_target", "epochs_to_target", "time_to_target_s", "generalization_gap",
             "consensus_distance_final", "mb_moved", "wall_time_s", "sim_time_s",
             "extra_traffic_percent")
    for name in names:
        columns[name] = []
    for group in groups:
        columns["method"].append(group.label)
        columns["seeds"].append(group.seeds)
        columns["status"].append(group.status)
        for name in names:
            value = getattr(group, name)
            columns[name].append(value if math.isfinite(value) else None)
    return columns
