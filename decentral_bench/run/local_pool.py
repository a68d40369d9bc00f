"""Child runs as processes of this machine, each with its share of it (`share`).

A child is started with `spawn` (a fresh interpreter, not a fork of the sweep's
threads) and talks to the sweep through a pipe of its own. It leads a process group
of its own, so that a Ctrl-C at the terminal reaches the sweep alone, which stops
each child with SIGTERM and waits for it to mark its run KILLED. It ends with the
sweep's process (Linux's parent-death signal): a sweep killed with -9 leaves its
children to mark their runs KILLED, and where they cannot, the next sweep marks
them (`runner.mark_lost_children`).
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import warnings
from dataclasses import dataclass
from multiprocessing import connection
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from types import FrameType

from decentral_bench.engines import stopping
from decentral_bench.experiment.sweep import RunSpec
from decentral_bench.run.child import STOPS
from decentral_bench.run.remote import ChildTask, Message, run_child
from decentral_bench.run.share import (
    DeviceShares,
    Share,
    cuda_devices,
    gpus_per_run,
    local_share,
    uses_gpu,
)
from decentral_bench.tracking.store import configure_mlflow

PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent ends
STOP_REASONS = {signal.SIGINT: "interrupted by the user",
                signal.SIGTERM: "stopped by a signal (SIGTERM)",
                signal.SIGHUP: "the process running the sweep ended"}


def exit_description(code: int | None) -> str:
    """How a child's process ended, in words, from its exit code."""
    if code is None or code == 0:
        return "it exited"
    if code < 0:
        killer = " (as the out-of-memory killer does)" if -code == signal.SIGKILL else ""
        return f"killed by {signal.Signals(-code).name}{killer}"
    return f"exit code {code}"


def _stop(signum: int, frame: FrameType | None) -> None:
    """The first stop signal ends the child's run as KILLED; later ones may not interrupt
    the marking."""
    for stop in STOP_REASONS:
        signal.signal(stop, signal.SIG_IGN)
    stopping.request(STOP_REASONS[signal.Signals(signum)])
    raise KeyboardInterrupt(STOP_REASONS[signal.Signals(signum)])


def _end_with_parent(parent_pid: int) -> None:
    """Get SIGHUP when the sweep's process ends (Linux; elsewhere nothing)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGHUP)
    except (AttributeError, OSError):
        return
    if os.getppid() != parent_pid:  # it ended before the signal was asked for
        raise KeyboardInterrupt(STOP_REASONS[signal.SIGHUP])


def child_process(task: ChildTask, channel: Connection, parent_pid: int) -> None:
    """The body of a child's process: take its share, record its run, report on `channel`."""
    os.setpgrp()
    for stop in STOP_REASONS:
        signal.signal(stop, _stop)
    try:
        _end_with_parent(parent_pid)
        if not task.verbose:
            warnings.simplefilter("ignore")
        configure_mlflow(task.verbose)
        task.share.apply()
        run_child(task, channel.send)
    except STOPS:
        pass  # the run is marked KILLED, or its sweep marks it
    finally:
        channel.close()


@dataclass
class LocalChild:
    process: BaseProcess
    channel: Connection

    def drain(self) -> list[Message]:
        """Every message waiting in the child's pipe."""
        messages = []
        try:
            while self.channel.poll():
                messages.append(self.channel.recv())
        except (EOFError, OSError, ValueError):  # ended; or cut off mid-message by a kill
            pass
        return messages


class LocalPool:
    """Child runs as processes of this machine: `jobs` at once share its CPUs and memory;
    those that compute on CUDA take devices, or shares of one, as they start."""

    claims = True

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs
        self.context = multiprocessing.get_context("spawn")
        self.children: dict[int, LocalChild] = {}
        self.devices = cuda_devices()
        self.device_shares = DeviceShares.of(self.devices)
        self.leases: dict[int, tuple[tuple[int, ...], float]] = {}

    def share_for(self, spec: RunSpec) -> Share | None:
        """A run's share: its CPUs and memory, and its devices (None while none are free)."""
        share = local_share(self.jobs)
        if not uses_gpu(spec.scenario, self.devices) or not self.devices:
            return share
        gpus = gpus_per_run(spec.scenario, self.devices, self.jobs)
        devices = self.device_shares.take(gpus)
        if devices is None:
            return None
        return Share(share.cpus, min(gpus, 1.0), devices)

    def start(self, task: ChildTask) -> None:
        channel, child_end = self.context.Pipe(duplex=False)
        process = self.context.Process(target=child_process, args=(task, child_end, os.getpid()),
                                       name=f"decentral-bench child {task.index}")
        process.start()
        child_end.close()
        self.children[task.index] = LocalChild(process, channel)
        if task.share.devices is not None:
            self.leases[task.index] = (task.share.devices, task.share.memory)

    def receive(self, timeout: float) -> tuple[list[Message], dict[int, str]]:
        """The messages that came within `timeout` seconds, and the children whose
        process ended (index → how), their devices given back."""
        waitable = [child.channel for child in self.children.values()] + \
            [child.process.sentinel for child in self.children.values()]
        if waitable:
            connection.wait(waitable, timeout)
        messages: list[Message] = []
        ended: dict[int, str] = {}
        for index, child in list(self.children.items()):
            messages += child.drain()
            if child.process.exitcode is not None:
                messages += child.drain()
                child.channel.close()
                ended[index] = exit_description(child.process.exitcode)
                del self.children[index]
                if index in self.leases:
                    self.device_shares.give_back(*self.leases.pop(index))
        return messages, ended

    def stop(self, index: int) -> None:
        child = self.children.get(index)
        if child is not None and child.process.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.process.pid, signal.SIGTERM)

    def kill(self, index: int) -> None:
        child = self.children.get(index)
        if child is not None:
            child.process.kill()
            child.process.join(10)

    def close(self) -> None:
        """Kill what is left (the sweep marked or will mark its runs)."""
        for index in list(self.children):
            self.kill(index)
            self.children.pop(index).channel.close()
