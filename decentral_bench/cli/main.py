"""The `decentral-bench` command line."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Literal

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from decentral_bench import scenario as scenario_file
from decentral_bench.console import own_warnings_only, progress_for, summary_table
from decentral_bench.deploy_command import deploy_local_command
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


def _print_problems(error: ScenarioError) -> None:
    for key, message in error.problems:
        where = f"{error.source}: {key}" if key else error.source
        errors.print(f"[bold red]error[/]: {escape(where)}: {escape(message)}", highlight=False,
                     soft_wrap=True)


def _overrides(settings: list[str] | None) -> dict[str, object]:
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


cli.command("deploy-local")(deploy_local_command(_print_problems, console, errors,
                                                 EXIT_BAD_INPUT))


@cli.command()
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
    verbose: Annotated[bool, typer.Option(
        help="Show Flower's own logs and third-party warnings.")] = False,
) -> None:
    """Run a scenario (every sweep combination × seed × method) on the Flower engine (or the
    vectorized one), recorded in MLflow. A re-run skips the runs it already finished."""
    from decentral_bench.checks import check_scenario
    from decentral_bench.runner import run_scenario
    from decentral_bench.tracking import configure_mlflow, ui_instructions

    configure_mlflow(verbose)
    if verbose:
        own_warnings_only(False)

    try:
        overrides = _overrides(settings)
        if engine is not None:
            overrides["resources.engine"] = engine
        if ray_address is not None:
            overrides["resources.ray_address"] = ray_address
        parsed, specs = check_scenario(scenario, overrides)
    except ScenarioError as error:
        _print_problems(error)
        raise typer.Exit(EXIT_BAD_INPUT) from None
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
                                  fresh=fresh, verbose=verbose, origin=origin, specs=specs)
    except KeyboardInterrupt:
        errors.print("interrupted: the running child and the parent run are marked KILLED")
        raise typer.Exit(130) from None
    if result.skipped:
        console.print(f"{result.skipped} runs already finished in this parent run were skipped "
                      "(--fresh runs everything again)")
    console.print(summary_table(f"{parsed.name}: results", result.summary, result.control))
    for failed in result.failed:
        errors.print(f"[bold red]{escape(failed.name)} {failed.status}[/]: "
                     f"{escape(failed.error or '')}", highlight=False, soft_wrap=True)
    console.print(f"MLflow parent run {result.parent_run_id} in {result.tracking_uri}")
    for line in ui_instructions(result.tracking_uri, result.experiment_id):
        console.print(line, soft_wrap=True, highlight=False)
    if result.failed:
        raise typer.Exit(1)


@cli.command()
def report(
    target: Annotated[str, typer.Argument(
        help="An MLflow experiment name (its latest scenario run) or a parent run id.")],
    tracking_uri: Annotated[str | None, typer.Option(
        help="MLflow tracking URI (default: sqlite:///mlflow.db).")] = None,
    plot: Annotated[Path | None, typer.Option(help="Write the report's figures here.")] = None,
    csv: Annotated[bool, typer.Option("--csv", help="Print CSV instead of a table.")] = False,
    target_accuracy: Annotated[float | None, typer.Option(
        help="Report rounds and epochs to reach this mean test accuracy.")] = None,
    x_axis: Annotated[str, typer.Option(click_type=click.Choice(["epochs", "rounds"]),
                                        help="The figures' x axis: epochs or rounds.")
    ] = "epochs",
) -> None:
    """Print a scenario run's comparison table from the MLflow store (no re-run)."""
    from decentral_bench.report import (
        as_csv,
        group_records,
        latest_per_configuration,
        report_rows,
    )
    from decentral_bench.tracking import (
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
                                    control))
    if plot is not None:
        from decentral_bench.plots import report_figures

        plot.mkdir(parents=True, exist_ok=True)
        axis: Literal["epochs", "rounds"] = "rounds" if x_axis == "rounds" else "epochs"
        for name, figure in report_figures(group_records(records), x_axis=axis).items():
            figure.savefig(plot / name)
        errors.print(f"figures written to {plot}")


@cli.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="Scenario YAML files.")],
    explain: Annotated[bool, typer.Option("--explain", help="Also print each scenario with "
                       "every default filled in, and its runs with rounds and epochs.")] = False,
) -> None:
    """Check scenario files as `run` would before training, without training: every sweep
    combination, graph, data files, partitions, model and device (exit 2 if any fails)."""
    from decentral_bench.checks import check_scenario
    from decentral_bench.scenario.explain import explanation

    bad = 0
    for path in files:
        try:
            parsed, _ = check_scenario(path)
            text = explanation(parsed, str(path)) if explain else ""
        except ScenarioError as error:
            _print_problems(error)
            bad += 1
        else:
            console.print(f"[green]ok[/]: {escape(str(path))} ({parsed.name}, "
                          f"{len(parsed.methods)} methods)", highlight=False, soft_wrap=True)
            print(text, end="")
    if bad:
        raise typer.Exit(EXIT_BAD_INPUT)


@cli.command()
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


@cli.command()
def topology(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON, with the matrix.")] = False,
    plot: Annotated[Path | None, typer.Option(help="Draw the graph to this PNG file.")] = None,
) -> None:
    """Show a scenario's graph: agents, edges, degrees, λ2, λN, spectral gap, 1 − λN."""
    from decentral_bench.topology import TopologyError, build_topology

    try:
        parsed = scenario_file.load(scenario)
        built = build_topology(parsed.topology, parsed.training.seed)
    except TopologyError as error:
        _print_problems(ScenarioError(str(scenario), [("topology", str(error))]))
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except ScenarioError as error:
        _print_problems(error)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    summary = built.summary()
    if as_json:
        print(json.dumps({"kind": parsed.topology.kind, "mixing": parsed.topology.mixing,
                          "lazy": parsed.topology.lazy, **summary,
                          "matrix": built.mixing_matrix.tolist()}, indent=2))
    else:
        table = Table(title=f"{parsed.name}: {parsed.topology.kind}, mixing "
                            f"{parsed.topology.mixing}{' (lazy)' if parsed.topology.lazy else ''}")
        table.add_column("quantity")
        table.add_column("value", justify="right")
        for key, value in summary.items():
            table.add_row(key, f"{value:.6g}" if isinstance(value, float) else str(value))
        console.print(table)
    if plot is not None:
        from decentral_bench.plots import graph_figure

        graph_figure(built).savefig(plot, dpi=120)
        errors.print(f"graph drawn to {plot}")


@cli.command()
def bench(
    workloads: Annotated[list[str] | None, typer.Argument(
        help="Workloads to run (default: the digits ones). `all` runs every one.")] = None,
    rounds: Annotated[int | None, typer.Option(help="Rounds per workload.")] = None,
    train_samples: Annotated[int | None, typer.Option(
        help="Fashion-MNIST: a class-stratified training subset, for shorter runs.")] = None,
    cpus_per_agent: Annotated[int, typer.Option(
        help="resources.cpus_per_agent of the Flower path (actors × threads).")] = 1,
    paths: Annotated[str | None, typer.Option(
        help="Comma-separated paths to time: flower, plain, vectorized, funcloop "
             "(default: all each workload lists).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    output: Annotated[Path, typer.Option(help="JSON file of the figures.")] = Path(
        "bench.json"),
) -> None:
    """Time the engines against loops doing the identical computation: the Flower engine,
    the vectorized engine, a plain per-agent PyTorch loop and a hand-written torch.func
    loop. All must end with the same parameters."""
    from decentral_bench.benchmark import (
        DEFAULT,
        PATHS,
        TABLE_COLUMNS,
        WORKLOADS,
        environment,
        run_workload,
        write_json,
    )

    chosen = workloads or list(DEFAULT)
    if chosen == ["all"]:
        chosen = list(WORKLOADS)
    unknown = [name for name in chosen if name not in WORKLOADS]
    picked = tuple(paths.split(",")) if paths else None
    unknown += [name for name in picked or () if name not in PATHS]
    if unknown:
        errors.print(f"unknown workload or path {', '.join(unknown)}; workloads: "
                     f"{', '.join(WORKLOADS)}; paths: {', '.join(PATHS)}")
        raise typer.Exit(EXIT_BAD_INPUT)
    console.print(environment())
    results = []
    table = Table(title="seconds per round, by path (all must end with the same parameters)")
    for column in TABLE_COLUMNS:
        table.add_column(column)
    with console.status("benchmarking") as status:
        for name in chosen:
            status.update(f"benchmarking {name}")
            result = run_workload(name, rounds, train_samples, cpus_per_agent, picked, device)
            results.append(result)
            for row in result.table_rows():
                table.add_row(*row)
    console.print(table)
    write_json(results, output)
    console.print(f"figures written to {output}")


@cli.command()
def claims(
    experiments: Annotated[list[str] | None, typer.Argument(
        help="MLflow experiments (or parent run ids) of the papers' scenarios; default: "
             "every one of them in the store.")] = None,
    tracking_uri: Annotated[str | None, typer.Option(
        help="MLflow tracking URI (default: sqlite:///mlflow.db).")] = None,
    output: Annotated[Path | None, typer.Option(help="Also write the tables here.")] = None,
) -> None:
    """Judge the papers' claims from their scenarios' runs in the store: a table per
    scenario (figures over seeds, holds / does not hold / cannot be judged, why), also
    logged on each parent run as claims.md."""
    from decentral_bench.paper_claims import judge_store
    from decentral_bench.tracking import DEFAULT_TRACKING_URI

    try:
        sections = judge_store(tracking_uri, experiments)
    except LookupError as error:
        errors.print(f"[bold red]error[/]: no scenario run {escape(str(error))} in "
                     f"{tracking_uri or DEFAULT_TRACKING_URI}", highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    for text in sections:
        console.print(text, markup=False, highlight=False)
    if not sections:
        errors.print("no scenario run of the papers' scenarios found; run scenarios/paper/ first")
        raise typer.Exit(EXIT_BAD_INPUT)
    if output is not None:
        output.write_text("\n".join(sections))
        errors.print(f"claims written to {output}")


@cli.command()
def schema(output: Annotated[Path | None, typer.Option(
        help="Write the schema to this file instead of printing it.")] = None) -> None:
    """Print the JSON Schema of scenario files, for editors."""
    from decentral_bench.scenario.export import schema_text

    if output is None:
        print(schema_text(), end="")
    else:
        output.write_text(schema_text())
        errors.print(f"schema written to {output}")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """Console-script entry point.

    SIGTERM (and SIGINT, even where a shell started us in the background with it ignored)
    stops a run the way Ctrl-C does: the running child and its parent end KILLED.
    Third-party warnings stay off the console. A failure of the environment is one
    line; an internal error one line and a file holding its traceback (`--debug`
    prints it).
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    own_warnings_only()
    try:
        cli()
    except Exception as error:
        from decentral_bench.errors import environment_problem, failure_line

        if debug_mode["on"] and environment_problem(error) is None:
            raise
        code, line = failure_line(error)
        errors.print(escape(line), style="bold red", highlight=False, soft_wrap=True)
        sys.exit(code)
