"""What the tests that start real processes share: a free loopback port, stopping a
process started in a session of its own, with its children, by its id, and what a
child forked by the parallel sweep's fork server sees as it starts."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from multiprocessing.connection import Connection
from typing import Any


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stop_session(process: subprocess.Popen, patience_s: float = 30) -> None:
    """End a process started in a session of its own, and that session, by its id: SIGTERM,
    then SIGKILL after `patience_s`."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=patience_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def report_origin(origin: Any, channel: Connection) -> None:
    """In a forked child: whether torch and what a run loads lazily (scikit-learn's split,
    the partitioners, torch's compiler stack, MLflow's SQL store) were loaded before it
    started, then, having taken the sweep's `origin`, its folder, a probe variable and the
    process that forked it."""
    preloaded = all(name in sys.modules for name in (
        "torch", "sklearn.model_selection", "flwr_datasets.partitioner", "torch._dynamo",
        "mlflow.store.tracking.sqlalchemy_store"))
    origin.enter()
    channel.send((preloaded, os.getcwd(), os.environ.get("DECENTRAL_BENCH_PROBE"),
                  os.getppid()))
    channel.close()
