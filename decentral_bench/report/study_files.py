"""A study's finished runs read back from the store, and the figures and tables a study's
script draws from them written beside its docs page and on its parent run under `study/`
(`scripts/*_figures.py`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib import pyplot
from matplotlib.figure import Figure

from decentral_bench.report.summary import Group, group_records, latest_per_configuration
from decentral_bench.tracking.store import (
    attach_figure,
    attach_text,
    find_parent_run,
    load_records,
    open_store,
)


@dataclass
class StudyRuns:
    """The latest scenario run of a study: the store's client, the parent run and its groups
    of finished runs (latest per configuration)."""

    client: Any
    parent: Any
    groups: list[Group]

    @property
    def target(self) -> float:
        """The scenario's `report.target_accuracy`."""
        return float(self.parent.data.params["report.target_accuracy"])

    def publish(self, out: Path, figures: dict[str, Figure],
                tables: dict[str, str]) -> None:
        """Write the figures and the tables (Markdown) into `out` and on the parent run under
        `study/`; the figures are closed."""
        out.mkdir(parents=True, exist_ok=True)
        for name, figure in figures.items():
            figure.savefig(out / name)
            attach_figure(self.client, self.parent.info.run_id, figure, f"study/{name}")
            pyplot.close(figure)
        for name, text in tables.items():
            (out / name).write_text(text)
            attach_text(self.client, self.parent.info.run_id, text, f"study/{name}")


def study_runs(tracking_uri: str | None, experiment: str) -> StudyRuns:
    """The latest scenario run named `experiment` in the store; LookupError if none."""
    client = open_store(tracking_uri)
    parent = find_parent_run(client, experiment)
    if parent is None:
        raise LookupError(f"no scenario run '{experiment}' in the store")
    records = latest_per_configuration(load_records(client, parent.info.run_id))
    return StudyRuns(client, parent, [g for g in group_records(records) if g.finished])
