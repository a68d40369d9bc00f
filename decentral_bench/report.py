"""Comparison reports over the child runs read back from the MLflow store.

A report groups a parent run's finished children by method and swept
values, averages each group over its seeds, and tabulates: final and best
mean test accuracy, rounds to a target accuracy, generalization gap
(train − test accuracy), final Ξ², bytes moved and wall time. The run
command and `decentral-bench report` both build it from the store
(`tracking.load_records`), so what is printed is what is logged.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

CURVES = ("test_accuracy_mean", "train_accuracy_mean", "consensus_distance", "test_accuracy_std",
          "bytes_moved_total", "minibatch_loss_mean", "epochs", "phase",
          "consensus_distance_controlled")
COLUMNS = ("method", "seeds", "status", "final test acc", "best test acc", "rounds to target",
           "gen. gap", "Ξ² final", "MB moved", "time s")


@dataclass
class RunRecord:
    """One child run as stored: its identity, status and metric histories."""

    run_id: str
    config_hash: str
    label: str
    method: str
    seed: int
    status: str
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    wall_time_s: float = math.nan

    def final(self, key: str) -> float:
        points = self.curves.get(key, [])
        return points[-1][1] if points else math.nan


@dataclass
class Group:
    """Runs that differ only by seed."""

    label: str
    records: list[RunRecord]

    @property
    def finished(self) -> list[RunRecord]:
        return [r for r in self.records if r.status == "FINISHED"]

    def curve(self, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rounds, mean and std over seeds of a metric (rounds every seed recorded)."""
        series = [dict(r.curves.get(key, [])) for r in self.finished]
        if not series:
            return np.array([]), np.array([]), np.array([])
        rounds = sorted(set.intersection(*(set(s) for s in series)))
        values = np.array([[s[k] for k in rounds] for s in series])
        return np.array(rounds), values.mean(axis=0), values.std(axis=0)


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


def summary_rows(records: Sequence[RunRecord], target_accuracy: float | None = None,
                 ) -> list[tuple[str, ...]]:
    """One row per group; accuracies are means over seeds (± std when several)."""
    rows: list[tuple[str, ...]] = []
    for group in group_records(records):
        finished = group.finished
        statuses = sorted({r.status for r in group.records})
        finals = [r.final("test_accuracy_mean") for r in finished]
        final = "–"
        if finals:
            final = f"{np.mean(finals):.4f}" + (f" ± {np.std(finals):.4f}" if len(finals) > 1
                                                 else "")
        rounds, mean, _ = group.curve("test_accuracy_mean")
        best = float(mean.max()) if len(mean) else math.nan
        to_target = "–"
        if target_accuracy is not None and len(mean):
            reached = np.flatnonzero(mean >= target_accuracy)
            to_target = str(int(rounds[reached[0]])) if len(reached) else "not reached"
        gap = _mean([r.final("train_accuracy_mean") - r.final("test_accuracy_mean")
                     for r in finished])
        consensus = _mean([r.final("consensus_distance") for r in finished])
        moved = _mean([r.final("bytes_moved_total") / 1e6 for r in finished])
        rows.append((group.label, str(len(finished)), "/".join(statuses), final, _format(best),
                     to_target, _format(gap), "–" if math.isnan(consensus) else f"{consensus:.3g}",
                     _format(moved, 2), _format(_mean([r.wall_time_s for r in finished]), 1)))
    return rows


def as_markdown(rows: Sequence[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def as_csv(rows: Sequence[tuple[str, ...]]) -> str:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(rows)
    return buffer.getvalue()


def as_table_data(rows: Sequence[tuple[str, ...]]) -> dict[str, list[str]]:
    """Column → values, the shape `MlflowClient.log_table` takes."""
    return {column: [row[index] for row in rows] for index, column in enumerate(COLUMNS)}
