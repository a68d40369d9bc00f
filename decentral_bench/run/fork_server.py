"""The fork server that parallel children are forked from (`local_pool`), and its early start.

The server is a fresh interpreter that imports, once, what every child needs
(`PRELOAD`), then forks a child for each run in milliseconds. Its imports take about
5 s of one core; started as `run` begins (`start_early`), they overlap the sweep's own
imports, checks and parent run on the other core instead of delaying the first child.
This module imports only the standard library, so that starting the server costs the
command nothing.
"""

from __future__ import annotations

import multiprocessing
import os
from multiprocessing import forkserver
from multiprocessing.context import ForkServerContext

# What the server imports for every child (see `preload`), in the background.
PRELOAD = ["decentral_bench.run.preload"]


def fork_server() -> tuple[ForkServerContext, int]:
    """The fork server's context, the server started if it is not running (it imports
    `PRELOAD` in the background: the first fork waits for that), and its process id."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    forkserver.ensure_running()
    return context, forkserver._forkserver._forkserver_pid  # type: ignore[attr-defined]


def wants_children(jobs: str | None, parallel_runs: object) -> bool:
    """Whether a sweep asked for `jobs` (`--jobs`, else the scenario's
    `resources.parallel_runs`) will likely run children in processes of their own: a
    count above one, or auto on a machine with more than one core."""
    requested = jobs if jobs is not None else parallel_runs
    text = str(requested).strip().lower() if requested is not None else "1"
    if text == "auto":
        return len(os.sched_getaffinity(0)) > 1
    return text.isdigit() and int(text) > 1


def start_early(jobs: str | None, parallel_runs: object) -> None:
    """Start the fork server now where the sweep will likely want it (see
    `wants_children`); a server left unused ends with the command."""
    if wants_children(jobs, parallel_runs):
        fork_server()
