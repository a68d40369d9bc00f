"""Whose a RUNNING run is: `process_is_gone` tells a sweep whether the process that started a
run has ended (its run is then marked KILLED and runs again) or is alive (left alone)."""

from __future__ import annotations

import socket
import subprocess
import sys

from decentral_bench.tracking.provenance import process_identity, process_is_gone


def test_a_live_process_is_not_gone_and_an_ended_one_is() -> None:
    assert process_is_gone(process_identity()) is False
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    identity = process_identity(ended.pid)
    ended.wait(timeout=60)
    assert process_is_gone(identity) is True


def test_a_reused_pid_is_told_apart_by_its_start_time() -> None:
    host, pid, start = process_identity().rsplit(":", 2)
    assert process_is_gone(f"{host}:{pid}:{int(start) + 1}") is True


def test_another_hosts_process_cannot_be_looked_at_and_no_identity_means_gone() -> None:
    assert process_is_gone(f"not-{socket.gethostname()}:1:100") is None
    assert process_is_gone("") is True
    assert process_is_gone("host:not-a-pid:0") is True
