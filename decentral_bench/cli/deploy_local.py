"""The `decentral-bench deploy-local` command: one method of a scenario on a real Flower
deployment on this machine (see `decentral_bench.engines.flower.deploy`).

`cli` registers it and hands over what every command shares: how a scenario's
problems are printed, the consoles and the exit code of bad input.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from decentral_bench.cli.base import print_warnings
from decentral_bench.scenario import ScenarioError


def deploy_local_command(print_problems: Callable[[ScenarioError], None],
                         console: Console, errors: Console,
                         bad_input: int) -> Callable[..., None]:
    """The command, as a function whose signature Typer reads its options from."""

    def deploy_local(
        scenario: Annotated[Path, typer.Argument(help="Scenario YAML file.")],
        method: Annotated[str, typer.Option(help="The method of the scenario to run.")],
        tls: Annotated[bool, typer.Option(help="TLS and SuperNode authentication.")] = False,
        tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI.")] = None,
        wait_for_nodes: Annotated[float, typer.Option(help="Seconds to wait for nodes.")] = 60.0,
        timeout: Annotated[float, typer.Option(help="Seconds before the run is stopped.")
                           ] = 3600.0,
        workdir: Annotated[Path | None, typer.Option(help="Folder for the logs.")] = None,
    ) -> None:
        """Run one method of a scenario on a real Flower deployment on this machine.

        A SuperLink and one SuperNode per agent, on 127.0.0.1 only; the run is recorded
        in MLflow. Exit 0 if it completed, 1 if not, 2 for a scenario it cannot run."""
        from decentral_bench.engines.flower.deploy import DeploymentError, deployable, run_locally
        from decentral_bench.run.checks import check_scenario

        try:
            checked, _, warnings = check_scenario(scenario)
            parsed = deployable(checked, str(scenario), method, tracking_uri)
        except ScenarioError as error:
            print_problems(error)
            raise typer.Exit(bad_input) from None
        print_warnings(scenario, warnings)
        try:
            outcome = run_locally(parsed, method, workdir, tls, wait_for_nodes=wait_for_nodes,
                                  timeout=timeout)
        except (DeploymentError, KeyboardInterrupt) as error:  # the federation is stopped
            errors.print(f"[bold red]error[/]: {escape(str(error) or 'interrupted')}")
            raise typer.Exit(130 if isinstance(error, KeyboardInterrupt) else 1) from None
        console.print(f"Flower run {outcome.run_id}: {outcome.status} "
                      f"(MLflow: {parsed.tracking.uri})")
        if not outcome.completed:
            errors.print(f"{outcome.details}; logs: {outcome.folder}")
            raise typer.Exit(1)

    return deploy_local
