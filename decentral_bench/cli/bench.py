"""The `bench` command: the engines timed against loops doing the same maths."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from decentral_bench.cli.base import (
    EXIT_BAD_INPUT,
    console,
    errors,
)


def bench(
    workloads: Annotated[list[str] | None, typer.Argument(
        help="Workloads to run (default: the digits ones). `all` runs every one.")] = None,
    rounds: Annotated[int | None, typer.Option(help="Rounds per workload.")] = None,
    train_samples: Annotated[int | None, typer.Option(
        help="Fashion-MNIST: a class-stratified training subset, for shorter runs.")] = None,
    cpus_per_agent: Annotated[int, typer.Option(
        help="resources.cpus_per_agent of the Flower path (actors × threads).")] = 1,
    paths: Annotated[str | None, typer.Option(
        help="Comma-separated paths to time: flower, plain, vectorized, deterministic (the "
             "vectorized engine under training.deterministic), funcloop (default: all each "
             "workload lists).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    output: Annotated[Path, typer.Option(help="JSON file of the figures.")] = Path(
        "bench.json"),
) -> None:
    """Time the engines against loops doing the identical computation: the Flower engine,
    the vectorized engine, a plain per-agent PyTorch loop and a hand-written torch.func
    loop (the minimal program), each in its own process, taking turns round by round. All
    must end with the same parameters. Each path's round time is also given against the
    least time the machine's measured bandwidth and FLOP rate allow (× limit), its peak
    memory per agent and in stacks (every agent's copy of the model's parameters)."""
    from decentral_bench.engines.benchmark import (
        DEFAULT,
        PATHS,
        TABLE_COLUMNS,
        WORKLOADS,
        environment,
        measure_rates,
        run_workload,
        write_json,
    )
    from decentral_bench.experiment.training import select_device

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
    rates = measure_rates(select_device(device))
    console.print(f"this machine now: {rates.bandwidth_gb_s:.1f} GB/s (a copy), "
                  f"{rates.gflop_s:.0f} GFLOP/s (a float32 matmul); each path measures "
                  f"them again just before it runs")
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
    for result in results:
        for line in result.notes():
            console.print(line, highlight=False)
    write_json(results, output)
    console.print(f"figures written to {output}")
