"""The `topology` command: a scenario's graph, its Π and spectrum."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from decentral_bench import scenario as scenario_file
from decentral_bench.cli.base import (
    EXIT_BAD_INPUT,
    console,
    errors,
    print_problems,
)
from decentral_bench.scenario import ScenarioError


def topology(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON, with the matrix.")] = False,
    plot: Annotated[Path | None, typer.Option(help="Draw the graph to this PNG file.")] = None,
    method: Annotated[str | None, typer.Option(
        help="The graph this method runs on, where it has one of its own "
             "(methods[].topology).")] = None,
) -> None:
    """Show a scenario's graph: agents, edges, degrees, λ2, λN, spectral gap, 1 − λN; with a
    time-varying graph (topology.schedule) also its period, the window of rounds whose union
    is checked connected, and the λ2 (second largest |eigenvalue|) of that window's product
    of Π_k. Methods on graphs of their own are listed; --method shows one's."""
    from decentral_bench.network.schedules import GraphSchedule
    from decentral_bench.network.topology import TopologyError, build_topology

    try:
        parsed = scenario_file.load(scenario)
        if method is not None:
            try:
                parsed = parsed.for_method(method)
            except KeyError as error:
                raise ScenarioError(str(scenario), [("--method", str(error).strip("'\""))]) \
                    from None
        built = build_topology(parsed.topology, parsed.training.seed)
        schedule = None if parsed.topology.schedule is None else \
            GraphSchedule(parsed.topology, built, parsed.training.seed)
        if schedule is not None:
            schedule.check(parsed.training.rounds or 0)
    except TopologyError as error:
        print_problems(ScenarioError(str(scenario), [("topology", str(error))]))
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except ScenarioError as error:
        print_problems(error)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    summary = built.summary() | ({} if schedule is None else schedule.summary())
    if as_json:
        print(json.dumps({"kind": parsed.topology.kind, "mixing": parsed.topology.mixing,
                          "lazy": parsed.topology.lazy, **summary,
                          "matrix": built.mixing_matrix.tolist()}, indent=2))
    else:
        mixing = "column-stochastic" if built.directed else parsed.topology.mixing
        table = Table(title=f"{parsed.name}: {parsed.topology.kind}, mixing "
                            f"{mixing}{' (lazy)' if parsed.topology.lazy else ''}")
        table.add_column("quantity")
        table.add_column("value", justify="right")
        for key, value in summary.items():
            table.add_row(key, f"{value:.6g}" if isinstance(value, float) else str(value))
        console.print(table)
        own = [entry for entry in parsed.methods if entry.topology is not None]
        if method is None and own:
            errors.print("methods on graphs of their own (show one with --method NAME): " +
                         ", ".join(f"'{entry.name}' ({parsed.method_topology(entry.name).kind})"
                                   for entry in own))
    if plot is not None:
        from decentral_bench.report.plots import graph_figure

        graph_figure(built).savefig(plot, dpi=120)
        errors.print(f"graph drawn to {plot}")
