"""The `decentral-bench` command line: its commands, registered on the Typer app, and `main`."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

from rich.markup import escape

from decentral_bench.cli import bench, claims, init, report, run, schema, topology, validate
from decentral_bench.cli.base import (
    EXIT_BAD_INPUT,
    cli,
    console,
    debug_mode,
    errors,
    print_problems,
)
from decentral_bench.cli.console import own_warnings_only
from decentral_bench.cli.deploy_local import deploy_local_command
from decentral_bench.engines import stopping

cli.command("run")(run.run)
cli.command("report")(report.report)
cli.command("validate")(validate.validate)
cli.command("init")(init.init)
cli.command("topology")(topology.topology)
cli.command("bench")(bench.bench)
cli.command("claims")(claims.claims)
cli.command("schema")(schema.schema)
cli.command("deploy-local")(deploy_local_command(print_problems, console, errors,
                                                 EXIT_BAD_INPUT))

def leave_when_stopped(code: int, wait_s: float = 10.0) -> None:
    """End a stopped process now that its runs are marked, even where threads that an
    engine started (Flower's workers waiting on Ray) did not end: Python would wait for
    them for ever at exit. They get `wait_s` to end; Ray's own processes end with ours."""
    deadline = time.monotonic() + wait_s
    waited = [thread for thread in threading.enumerate()
              if thread is not threading.main_thread() and not thread.daemon]
    for thread in waited:
        thread.join(max(0.0, deadline - time.monotonic()))
    if any(thread.is_alive() for thread in waited):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _interrupt(signum: int, frame: object) -> None:
    stopping.request("interrupted by the user")
    raise KeyboardInterrupt


def main() -> None:
    """Console-script entry point.

    SIGTERM (and SIGINT, even where a shell started us in the background with it ignored)
    stops a run the way Ctrl-C does: the running child and its parent end KILLED, and the
    process ends even where an engine's threads did not (`leave_when_stopped`).
    Third-party warnings stay off the console. A failure of the environment is one
    line; an internal error one line and a file holding its traceback (`--debug`
    prints it).
    """
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    own_warnings_only()
    try:
        cli()
    except SystemExit as end:
        if stopping.requested() is not None:
            leave_when_stopped(end.code if isinstance(end.code, int) else 130)
        raise
    except Exception as error:
        from decentral_bench.run.errors import environment_problem, failure_line

        if debug_mode["on"] and environment_problem(error) is None:
            raise
        code, line = failure_line(error)
        errors.print(escape(line), style="bold red", highlight=False, soft_wrap=True)
        sys.exit(code)
