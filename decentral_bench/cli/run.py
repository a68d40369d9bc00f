"""The `run` command: every child of a scenario, recorded in MLflow."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from decentral_bench import scenario as scenario_file
from decentral_bench.cli.base import (
    EXIT_BAD_INPUT,
    console,
    errors,
    overrides_of,
    print_problems,
    print_warnings,
)
from decentral_bench.cli.console import own_warnings_only, progress_for, summary_table
from decentral_bench.run.fork_server import start_early
from decentral_bench.scenario import ScenarioError


def jobs_of(text: str) -> int | str:
    """`--jobs`: a whole number of runs at once (1 or more) or auto; anything else is bad
    input, said in one line."""
    value = text.strip().lower()
    if value == "auto":
        return value
    if value.isdigit() and int(value) >= 1:
        return int(value)
    errors.print(f"[bold red]error[/]: --jobs {escape(text)}: expected a whole number of runs "
                 "at once (1 or more), or auto", highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_BAD_INPUT)


def file_parallel_runs(scenario: Path, settings: list[str] | None = None) -> object:
    """`resources.parallel_runs` as a `--set` of it, else the scenario file, writes it
    (None where the file or the key is missing or unreadable: the checks that follow say
    so)."""
    overrides = overrides_of(settings)
    if "resources.parallel_runs" in overrides:
        return overrides["resources.parallel_runs"]
    try:
        return scenario_file.read_yaml(scenario.read_text())["resources"].get("parallel_runs")
    except Exception:
        return None


def run(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML file.")],
    tracking_uri: Annotated[str | None, typer.Option(
        help="MLflow tracking URI (default: the scenario's tracking.uri, else sqlite:///mlflow.db).")
    ] = None,
    settings: Annotated[list[str] | None, typer.Option(
        "--set", help="Override a scenario key, e.g. --set training.rounds=20 (repeatable).")
    ] = None,
    fresh: Annotated[bool, typer.Option(
        help="Start a new parent run instead of resuming the last one of this scenario.")
    ] = False,
    engine: Annotated[str | None, typer.Option(
        help="flower (default) or vectorized; overrides the file's resources.engine.")
    ] = None,
    ray_address: Annotated[str | None, typer.Option(
        help="Join this Ray cluster (HOST:PORT or auto); sets resources.ray_address.")] = None,
    jobs: Annotated[str | None, typer.Option(
        "--jobs", "-j", help="Child runs at once, each in a process of its own with its share "
        "of the CPUs and GPUs: a number, or auto (from the cores, memory and devices); sets "
        "resources.parallel_runs. Default: the file's, else one after another.")] = None,
    fail_fast: Annotated[bool, typer.Option(
        help="Stop every other child run when one fails (they are marked KILLED).")] = False,
    verbose: Annotated[bool, typer.Option(
        help="Show Flower's own logs and third-party warnings.")] = False,
) -> None:
    """Run a scenario (every sweep combination × seed × method) on the Flower engine (or the
    vectorized one), recorded in MLflow. A re-run skips the runs it already finished.

    Exit codes: 0 every run finished; 1 some run failed or was stopped; 2 bad input (the
    scenario, --set, --jobs, GPUs per run the machine does not have, a local store with a
    Ray cluster); 3 the environment failed (the store, the disk, a Ray cluster that does not
    answer); 70 an internal error; 130 interrupted (Ctrl-C, SIGTERM)."""
    # A sweep that will fork children starts their server now, so that its imports run
    # beside this process's (below) instead of before the first child.
    start_early(jobs, file_parallel_runs(scenario, settings))
    from decentral_bench.run.checks import check_scenario
    from decentral_bench.run.runner import run_scenario
    from decentral_bench.tracking.store import configure_mlflow
    from decentral_bench.tracking.view import ui_instructions

    configure_mlflow(verbose)
    if verbose:
        own_warnings_only(False)

    try:
        overrides = overrides_of(settings)
        if engine is not None:
            overrides["resources.engine"] = engine
        if ray_address is not None:
            overrides["resources.ray_address"] = ray_address
        if jobs is not None:
            overrides["resources.parallel_runs"] = jobs_of(jobs)
        parsed, specs, warnings = check_scenario(scenario, overrides)
    except ScenarioError as error:
        print_problems(error)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    print_warnings(scenario, warnings)
    origin = " ".join([str(scenario), *(f"--set {setting}" for setting in settings or [])])
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    console.print(f"[bold]{parsed.name}[/]: {len(specs)} runs ({len(parsed.methods)} methods"
                  f"{', a sweep' if parsed.sweep else ''}), {parsed.topology.agents} agents "
                  f"({parsed.topology.kind}), " + (f"{parsed.training.rounds} rounds"
                  if parsed.training.rounds is not None else f"{parsed.training.epochs:g} epochs"))
    try:
        with progress_for(console) as progress:
            result = run_scenario(parsed, source=None if settings else scenario,
                                  tracking_uri=tracking_uri, progress=progress,
                                  fresh=fresh, verbose=verbose, origin=origin, specs=specs,
                                  fail_fast=fail_fast)
    except ScenarioError as error:
        print_problems(error)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except KeyboardInterrupt:
        errors.print("interrupted: the running children and the parent run are marked KILLED")
        raise typer.Exit(130) from None
    if result.skipped:
        console.print(f"{result.skipped} runs already finished in this parent run were skipped "
                      "(--fresh runs everything again)")
    console.print(summary_table(f"{parsed.name}: results", result.summary, result.control,
                                result.notes))
    for failed in result.failed:
        errors.print(f"[bold red]{escape(failed.name)} {failed.status}[/]: "
                     f"{escape(failed.error or '')}", highlight=False, soft_wrap=True)
    console.print(f"MLflow parent run {result.parent_run_id} in {result.tracking_uri}")
    for line in ui_instructions(result.tracking_uri, result.experiment_id, result.view_key,
                                result.parent_run_id):
        console.print(line, soft_wrap=True, highlight=False)
    if result.failed:
        raise typer.Exit(1)
