"""The `report` command: a scenario run's comparison table and figures, from the store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import click
import typer
from rich.markup import escape

from decentral_bench.cli.base import (
    EXIT_BAD_INPUT,
    console,
    errors,
)
from decentral_bench.cli.console import summary_table


def report(
    target: Annotated[str, typer.Argument(
        help="An MLflow experiment name (its latest scenario run) or a parent run id.")],
    tracking_uri: Annotated[str | None, typer.Option(
        help="MLflow tracking URI (default: sqlite:///mlflow.db).")] = None,
    plot: Annotated[Path | None, typer.Option(help="Write the report's figures here.")] = None,
    csv: Annotated[bool, typer.Option("--csv", help="Print CSV instead of a table.")] = False,
    target_accuracy: Annotated[float | None, typer.Option(
        help="Report rounds, epochs and simulated seconds to reach this mean test "
             "accuracy.")] = None,
    x_axis: Annotated[str, typer.Option(click_type=click.Choice(["epochs", "rounds", "time"]),
                                        help="The figures' x axis: epochs, rounds or "
                                             "simulated seconds (runs with a network).")
    ] = "epochs",
) -> None:
    """Print a scenario run's comparison table from the MLflow store (no re-run)."""
    from decentral_bench.report.summary import (
        as_csv,
        group_records,
        latest_per_configuration,
        report_rows,
        shared_runs,
    )
    from decentral_bench.tracking.store import (
        DEFAULT_TRACKING_URI,
        configure_mlflow,
        find_parent_run,
        load_records,
        open_store,
    )

    configure_mlflow()
    client_uri = tracking_uri or DEFAULT_TRACKING_URI
    client = open_store(client_uri)
    parent = find_parent_run(client, target)
    if parent is None or parent.data.tags.get("kind") != "scenario":
        errors.print(f"[bold red]error[/]: no experiment or scenario (parent) run "
                     f"'{escape(target)}' in {client_uri}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_BAD_INPUT)
    records = latest_per_configuration(load_records(client, parent.info.run_id))
    if target_accuracy is None and "report.target_accuracy" in parent.data.params:
        stored = parent.data.params["report.target_accuracy"]
        target_accuracy = None if stored == "None" else float(stored)
    rows, control = report_rows(records, target_accuracy)
    if csv:
        print(as_csv(rows), end="")
    else:
        console.print(summary_table(f"{parent.info.run_name} ({parent.info.run_id})", rows,
                                    control, shared_runs(records)))
    if plot is not None:
        from decentral_bench.report.plots import XAxis, chosen_axis, report_figures

        plot.mkdir(parents=True, exist_ok=True)
        groups = group_records(records)
        axis: XAxis = "rounds" if x_axis == "rounds" else "time" if x_axis == "time" \
            else "epochs"
        if chosen_axis(groups, axis) != axis:
            errors.print(f"[yellow]note[/]: some runs recorded no "
                         f"{'sim_time_s (no network: section)' if axis == 'time' else 'epochs'}"
                         f"; the figures use {chosen_axis(groups, axis)} instead")
        for name, figure in report_figures(groups, x_axis=axis).items():
            (plot / name).parent.mkdir(parents=True, exist_ok=True)
            figure.savefig(plot / name)
        errors.print(f"figures written to {plot}")
