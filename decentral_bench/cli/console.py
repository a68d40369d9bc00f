"""What the command line shows: on a terminal, one live view of the sweep (its runs done
and its ETA) and of every running child run (rounds, latest accuracy, elapsed time,
ETA), each child's end as a line above it; elsewhere, as in a log file, a line at each
child's start, at every tenth of its rounds and at its end. Then the summary table,
and warnings from the project's own code only (third parties' with `run --verbose`)."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from rich.console import Console, Group
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as ProgressBars
from rich.table import Table

from decentral_bench.report.summary import COLUMNS, CONTROL_COLUMNS

if TYPE_CHECKING:
    from decentral_bench.run.child import MethodResult

OWN_CODE = tuple(str(Path(__file__).resolve().parents[2] / package) + os.sep
                 for package in ("decentral_bench", "strategies"))
SHOW_ANY_WARNING = warnings.showwarning


def _show_own_warning(message: Warning | str, category: type[Warning], filename: str,
                      lineno: int, file: TextIO | None = None, line: str | None = None) -> None:
    if filename.startswith(OWN_CODE):
        SHOW_ANY_WARNING(message, category, filename, lineno, file, line)


def own_warnings_only(only: bool = True) -> None:
    """Show warnings raised in the project's code and drop third parties' (pandas,
    alembic, SQLAlchemy), or show every one again. Filtering where a warning is shown
    holds even where a library adds its own filters when it is imported."""
    warnings.showwarning = _show_own_warning if only else SHOW_ANY_WARNING


def progress_bars(console: Console) -> ProgressBars:
    """Bars labelled with the run's name, rounds done, elapsed time, time left and status."""
    return ProgressBars(TextColumn("{task.description:>24}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[unit]}"), TimeElapsedColumn(),
                        TextColumn("ETA"), TimeRemainingColumn(),
                        TextColumn("{task.fields[status]}"), console=console)


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{seconds:02d}"


@contextmanager
def progress_for(console: Console) -> Iterator[RichProgress | LineProgress]:
    """Bars on a terminal; lines where nothing redraws them (a log file, a pipe, CI)."""
    if console.is_terminal:
        with progress_bars(console) as bars:
            yield RichProgress(bars)
    else:
        yield LineProgress(console)


def measured(accuracy: float, server_round: int) -> str:
    """The latest test accuracy and the round it was measured after: between evaluations
    a progress line repeats it, so it says how old it is."""
    return f"test acc {accuracy:.3f} at round {server_round}"


class LineProgress:
    """One line per child run's start, tenth of its rounds and end, with the elapsed time
    and the latest accuracy (and the round it was measured at): progress that reads in a
    log file."""

    STEPS = 10

    def __init__(self, console: Console) -> None:
        self.console = console
        self.runs: dict[str, tuple[int, float, int]] = {}  # rounds, start, tenths shown
        self.accuracy: dict[str, tuple[float, int]] = {}  # latest, and the round it was taken
        self.total, self.done = 0, 0

    def sweep_started(self, runs: int, jobs: int) -> None:
        self.total = runs
        if jobs > 1:
            self.console.print(f"{runs} runs, {jobs} at once", highlight=False)

    def _line(self, name: str, text: str) -> None:
        elapsed = time.monotonic() - self.runs[name][1]
        self.console.print(f"{name}: {text} ({elapsed:.0f} s)", highlight=False,
                           markup=False, soft_wrap=True)

    def method_started(self, name: str, rounds: int) -> None:
        self.runs[name] = (rounds, time.monotonic(), 0)
        self._line(name, f"started, {rounds} rounds")

    def round_finished(self, name: str, server_round: int, metrics: dict[str, float]) -> None:
        if "test_accuracy_mean" in metrics:
            self.accuracy[name] = (metrics["test_accuracy_mean"], server_round)
        rounds, start, shown = self.runs[name]
        tenths = server_round * self.STEPS // max(rounds, 1)
        if tenths > shown and server_round < rounds:
            self.runs[name] = (rounds, start, tenths)
            self._line(name, f"round {server_round}/{rounds}{self._accuracy(name)}")

    def method_finished(self, result: MethodResult) -> None:
        self.runs.setdefault(result.name, (0, time.monotonic(), 0))
        self.done += 1
        counted = f", {self.done}/{self.total} runs done" if self.total else ""  # one run
        self._line(result.name, f"{result.status.lower()}{self._accuracy(result.name)}{counted}")

    def _accuracy(self, name: str) -> str:
        return f", {measured(*self.accuracy[name])}" if name in self.accuracy else ""


class RichProgress:
    """One live view: the sweep's runs done and its ETA, a bar per running child with its
    rounds, latest accuracy, elapsed time and ETA; each child's end is printed above it."""

    def __init__(self, bars: ProgressBars) -> None:
        self.bars = bars
        self.tasks: dict[str, TaskID] = {}
        self.started: dict[str, float] = {}
        self.accuracy: dict[str, tuple[float, int]] = {}  # latest, and the round it was taken
        self.sweep: TaskID | None = None

    def sweep_started(self, runs: int, jobs: int) -> None:
        if runs > 1:
            self.sweep = self.bars.add_task(f"{jobs} at once" if jobs > 1 else "sweep",
                                            total=runs, unit="runs", status="")

    def method_started(self, name: str, rounds: int) -> None:
        self.started[name] = time.monotonic()
        self.tasks[name] = self.bars.add_task(name, total=rounds, unit="rounds",
                                              status="starting")

    def round_finished(self, name: str, server_round: int, metrics: dict[str, float]) -> None:
        if "test_accuracy_mean" in metrics:
            self.accuracy[name] = (metrics["test_accuracy_mean"], server_round)
        status = measured(*self.accuracy[name]) if name in self.accuracy else "running"
        self.bars.update(self.tasks[name], completed=server_round, status=status)

    def method_finished(self, result: MethodResult) -> None:
        task = self.tasks.pop(result.name, None)
        if task is not None:
            self.bars.remove_task(task)
        elapsed = time.monotonic() - self.started.pop(result.name, time.monotonic())
        accuracy = self.accuracy.pop(result.name, None)
        accuracy_text = "" if accuracy is None else f", {measured(*accuracy)}"
        colour = "green" if result.status == "FINISHED" else "red"
        self.bars.console.print(f"[{colour}]{escape(result.name)}[/]: {result.status.lower()}"
                                f"{accuracy_text} in {_duration(elapsed)}", highlight=False)
        if self.sweep is not None:
            self.bars.advance(self.sweep)


def _table(title: str, columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> Table:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    return table


def summary_table(title: str, rows: list[tuple[str, ...]],
                  control: list[tuple[str, ...]] | None = None,
                  notes: list[str] | None = None) -> Table | Group:
    """The comparison table (`report.COLUMNS`) as the console draws it, with `notes`
    (methods run once for a sweep they ignore) as its caption, and below it the
    consensus-control table (`report.CONTROL_COLUMNS`) when there are controlled runs."""
    table = _table(title, COLUMNS, rows)
    if notes:
        table.caption = ". ".join(notes) + "."
    if not control:
        return table
    return Group(table, _table("consensus control: extra traffic against the uncontrolled "
                               "method", CONTROL_COLUMNS, control))
