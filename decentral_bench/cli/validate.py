"""The `validate` command: every check `run` makes before training, and `--explain`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from decentral_bench.cli.base import (
    EXIT_BAD_INPUT,
    console,
    print_problems,
    print_warnings,
)
from decentral_bench.scenario import ScenarioError


def validate(
    files: Annotated[list[Path], typer.Argument(help="Scenario YAML files.")],
    explain: Annotated[bool, typer.Option("--explain", help="Also print each scenario with "
                       "every default filled in, and its runs with rounds and epochs.")] = False,
) -> None:
    """Check scenario files as `run` would before training, without training: every sweep
    combination, graph, data files, partitions, model and device (exit 2 if any fails;
    warnings, such as a momentum form that barely contracts on the graph, fail nothing)."""
    from decentral_bench.experiment.explain import explanation
    from decentral_bench.run.checks import check_scenario

    bad = 0
    for path in files:
        try:
            parsed, _, warnings = check_scenario(path)
            text = explanation(parsed, str(path)) if explain else ""
        except ScenarioError as error:
            print_problems(error)
            bad += 1
        else:
            console.print(f"[green]ok[/]: {escape(str(path))} ({parsed.name}, "
                          f"{len(parsed.methods)} methods)", highlight=False, soft_wrap=True)
            print_warnings(path, warnings)
            print(text, end="")
    if bad:
        raise typer.Exit(EXIT_BAD_INPUT)
