"""The `init` command: a commented scenario file to start from."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from decentral_bench.cli.base import (
    EXIT_BAD_INPUT,
    console,
    errors,
)


def init(
    file: Annotated[Path, typer.Argument(help="The scenario file to write (must not exist).")],
    template: Annotated[str, typer.Option("--from", help="A shipped scenario: quickstart, "
                        "server_failure, paper/fig1a_cdsgd_vs_sgd, ...")] = "quickstart",
) -> None:
    """Write a commented scenario file to start from (never replaces a file)."""
    from decentral_bench.scenario.scaffold import ScaffoldError, write_scaffold

    try:
        write_scaffold(file, template)
    except ScaffoldError as error:
        errors.print(f"[bold red]error[/]: {escape(str(error))}", highlight=False,
                     soft_wrap=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    console.print(f"wrote {escape(str(file))}; see what it runs with: decentral-bench "
                  f"validate {escape(str(file))} --explain", highlight=False, soft_wrap=True)
