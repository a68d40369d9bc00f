"""Child runs as processes of this machine, each with its share of it (`share`).

A child is forked from a fork server (`fork_server`): a process started once, as `run`
begins, which imports torch, MLflow, Flower, the project and what they load lazily while
the sweep gets ready, and forks a child for each run in milliseconds instead of the
seconds a fresh interpreter takes to import them. The server is a fresh interpreter too,
so no child is a fork of the sweep's threads. A child takes the sweep's working folder
and environment as they are when it starts (`Origin`), not as they were when the server
started, and talks to the sweep through a pipe of its own. It leads a process group of
its own, so that a Ctrl-C at the terminal reaches the sweep alone, which stops each
child with SIGTERM and waits for it to mark its run KILLED. It ends with the sweep's
process: the server ends when the sweep does, and a child gets a signal when the server
ends (Linux's parent-death signal), so a sweep killed with -9 leaves its children to
mark their runs KILLED; where they cannot, the next sweep marks them
(`runner.mark_lost_children`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from multiprocessing import connection
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from types import FrameType

from decentral_bench.engines import stopping
from decentral_bench.experiment.sweep import RunSpec
from decentral_bench.run.child import STOPS
from decentral_bench.run.fork_server import fork_server
from decentral_bench.run.remote import ChildTask, Message, Send, run_child
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


@dataclass(frozen=True)
class Origin:
    """What a child takes from the sweep's process as it starts: the process that forks
    it (`parent_pid`: the fork server, which ends with the sweep), and the sweep's
    working folder and environment now (the server's are those of when it started)."""

    parent_pid: int
    folder: str = field(default_factory=os.getcwd)
    environment: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))

    def enter(self) -> None:
        """Take the sweep's folder and environment in this process."""
        os.chdir(self.folder)
        os.environ.clear()
        os.environ.update(self.environment)


def _end_with_parent(parent_pid: int) -> None:
    """Get SIGHUP when the process that forked this one ends (Linux; elsewhere nothing)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGHUP)
    except (AttributeError, OSError):
        return
    if os.getppid() != parent_pid:  # it ended before the signal was asked for
        raise KeyboardInterrupt(STOP_REASONS[signal.SIGHUP])


def _sender(channel: Connection) -> Send:
    """Send to the sweep through `channel`; a pipe the sweep no longer reads means the
    sweep's process ended (its signal, which comes by way of the fork server, may come
    after the pipe breaks): the run stops as it does on that signal."""

    def send(message: Message) -> None:
        try:
            channel.send(message)
        except OSError:  # BrokenPipeError, ConnectionResetError: the reader is gone
            reason = STOP_REASONS[signal.SIGHUP]
            stopping.request(reason)
            raise KeyboardInterrupt(reason) from None

    return send


def child_process(task: ChildTask, channel: Connection, origin: Origin) -> None:
    """The body of a child's process: take its share, record its run, report on `channel`."""
    os.setpgrp()
    for stop in STOP_REASONS:
        signal.signal(stop, _stop)
    try:
        _end_with_parent(origin.parent_pid)
        origin.enter()
        if not task.verbose:
            warnings.simplefilter("ignore")
        configure_mlflow(task.verbose)
        task.share.apply()
        run_child(task, _sender(channel))
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
        self.context, self.server_pid = fork_server()
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
        _, self.server_pid = fork_server()  # started again if it ended
        process = self.context.Process(target=child_process,
                                       args=(task, child_end, Origin(self.server_pid)),
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
