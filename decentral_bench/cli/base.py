"""What every command shares: the Typer app, the consoles, the exit code of bad input, how a
scenario's problems and `--set` overrides are read and printed."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from decentral_bench import scenario as scenario_file
from decentral_bench.scenario import ScenarioError

# Piped output (CI logs, files) gets wide tables instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 160)
errors = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
cli = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Benchmark decentralized SGD against FedAvg on Flower, recorded in MLflow.")

EXIT_BAD_INPUT = 2
debug_mode = {"on": False}


@cli.callback()
def options(debug: Annotated[bool, typer.Option(
        "--debug", help="On an internal error, print the full traceback.")] = False) -> None:
    """Benchmark decentralized SGD against FedAvg on Flower, recorded in MLflow."""
    debug_mode["on"] = debug


def print_problems(error: ScenarioError) -> None:
    for key, message in error.problems:
        where = f"{error.source}: {key}" if key else error.source
        errors.print(f"[bold red]error[/]: {escape(where)}: {escape(message)}", highlight=False,
                     soft_wrap=True)


def print_warnings(source: object, warnings: list[tuple[str, str]]) -> None:
    """`check_scenario`'s warnings, in yellow on stderr: they fail nothing."""
    for key, message in warnings:
        errors.print(f"[bold yellow]warning[/]: {escape(f'{source}: {key}')}: "
                     f"{escape(message)}", highlight=False, soft_wrap=True)


def overrides_of(settings: list[str] | None) -> dict[str, object]:
    """`--set key=value` pairs; values are read as YAML (20 → int, [2, 8] → list)."""
    overrides: dict[str, object] = {}
    for setting in settings or []:
        key, separator, value = setting.partition("=")
        if not separator or not key:
            errors.print(f"[bold red]error[/]: --set {escape(setting)}: expected key=value, "
                         "e.g. --set training.rounds=20", highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_BAD_INPUT)
        overrides[key.strip()] = scenario_file.read_yaml(value)
    return overrides
