"""What the command line draws: progress bars of a running scenario, comparison tables."""

from __future__ import annotations

from rich.progress import Progress as ProgressBars
from rich.progress import TaskID
from rich.table import Table

from decentral_bench.report import COLUMNS
from decentral_bench.runner import MethodResult


class RichProgress:
    """Progress bars, one per method, with the latest accuracy."""

    def __init__(self, bars: ProgressBars) -> None:
        self.bars = bars
        self.tasks: dict[str, TaskID] = {}

    def method_started(self, name: str, rounds: int) -> None:
        self.tasks[name] = self.bars.add_task(name, total=rounds, status="starting")

    def round_finished(self, name: str, server_round: int, metrics: dict[str, float]) -> None:
        accuracy = metrics.get("test_accuracy_mean")
        if accuracy is None:
            self.bars.update(self.tasks[name], completed=server_round)
        else:
            self.bars.update(self.tasks[name], completed=server_round,
                             status=f"test acc {accuracy:.3f}")

    def method_finished(self, result: MethodResult) -> None:
        self.bars.update(self.tasks[result.name], status=result.status.lower())


def summary_table(title: str, rows: list[tuple[str, ...]]) -> Table:
    table = Table(title=title)
    for column in COLUMNS:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    return table
