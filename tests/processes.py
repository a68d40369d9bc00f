"""What the tests that start real servers share: a free loopback port, and stopping a
process started in a session of its own, with its children, by its id."""

from __future__ import annotations

import os
import signal
import socket
import subprocess


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
