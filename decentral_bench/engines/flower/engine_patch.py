"""Prompt message pick-up and reply hand-over in Flower's Simulation Engine (flwr 1.41).

The engine's fleet thread (`vce_api.add_messages_to_queue`) looks for new
messages, then sleeps 0.1 s, so every round waits on average 50 ms (up to
100 ms) before any ClientApp starts — for CDSGD, which communicates every
minibatch step, that wait dominates small models. The replacement below is
the same loop but wakes as soon as this project's `NetworkTap` pushes
messages; with nothing pushed it still looks every 0.1 s, so behaviour is
otherwise unchanged.

The other way round, `vce_api.put_message_into_state` stores each reply in
the link state, where the ServerApp must poll for it; the replacement also
counts the replies it stores (`replies_stored`), so the `NetworkTap` can
sleep until a round's replies are all in and pull them at once, instead of
polling while the clients still run (each pull competes with the engine's
threads for the interpreter).

Both are installed only around our own simulations, and only when the installed
flwr still has the two loops this module was written against (`patch_fits`):
the same flwr version, the same source of both functions, and `run_api` still
starting them by their module names. Otherwise one warning is logged and Flower
runs unpatched (each round up to 0.1 s slower), rather than the engine thread
dying on a changed signature or the patch silently not applying.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from queue import Empty, Queue
from typing import Any

import flwr
from flwr.app import Message
from flwr.server.superlink.fleet.vce import vce_api

# What the replacements were written against (flwr 1.41.0): a sha256 prefix of the
# source of each replaced function.
FLWR_VERSION = "1.41.0"
REPLACED_SOURCES = {
    "add_messages_to_queue": "953f4bd41a931a77",
    "put_message_into_state": "3622eb5bfcd9cd1a",
}
logger = logging.getLogger(__name__)


class ReplyCounter:
    """How many replies the engine has stored; waiters sleep until a count is reached."""

    def __init__(self) -> None:
        self._count = 0
        self._condition = threading.Condition()
        self.active = False  # True while `prompt_pickup` has the counting loop installed

    @property
    def count(self) -> int:
        with self._condition:
            return self._count

    def add(self) -> None:
        with self._condition:
            self._count += 1
            self._condition.notify_all()

    def wait_for(self, count: int, timeout: float) -> bool:
        """Sleep until `count` replies in all have been stored, at most `timeout` s."""
        with self._condition:
            return self._condition.wait_for(lambda: self._count >= count, timeout)


messages_pushed = threading.Event()
replies_stored = ReplyCounter()


def add_messages_to_queue(state: Any, queue: Queue[Message], nodes_mapping: dict[int, int],
                          f_stop: threading.Event) -> None:
    """`vce_api.add_messages_to_queue`, woken by `messages_pushed` instead of sleeping."""
    while not f_stop.is_set():
        messages_pushed.clear()
        for node_id in nodes_mapping:
            for message in state.get_message_ins(node_id=node_id, limit=1):
                queue.put(message)
        messages_pushed.wait(0.1)


def put_message_into_state(state: Any, queue: Queue[Message],
                           f_stop: threading.Event) -> None:
    """`vce_api.put_message_into_state`, counting each reply in `replies_stored`."""
    while not f_stop.is_set():
        try:
            reply = queue.get(timeout=1.0)
        except Empty:
            continue
        state.store_message_res(reply)
        replies_stored.add()


def patch_mismatches() -> list[str]:
    """Why the installed flwr does not fit the replacements (empty when it does)."""
    problems = []
    if flwr.__version__ != FLWR_VERSION:
        problems.append(f"flwr is {flwr.__version__}, the patch was written for {FLWR_VERSION}")
    for name, expected in REPLACED_SOURCES.items():
        original = getattr(vce_api, name, None)
        if original is None:
            problems.append(f"vce_api.{name} is gone")
            continue
        digest = hashlib.sha256(inspect.getsource(original).encode()).hexdigest()[:16]
        if digest != expected:
            problems.append(f"vce_api.{name} changed (source {digest}, expected {expected})")
        if f"target={name}" not in inspect.getsource(vce_api.run_api):
            problems.append(f"vce_api.run_api no longer starts {name} by its module name")
    return problems


_warned: list[str] = []


def patch_fits() -> bool:
    """Whether the replacements fit the installed flwr; logs why not, once."""
    problems = patch_mismatches()
    if problems and not _warned:
        _warned.extend(problems)
        logger.warning("running Flower's simulation engine unpatched (rounds up to 0.1 s "
                       "slower): %s", "; ".join(problems))
    return not problems


@contextmanager
def prompt_pickup() -> Iterator[None]:
    """Use the woken fleet loops for the simulations started inside this block, when
    they fit the installed flwr (`patch_fits`); otherwise leave Flower as it is."""
    if not patch_fits():
        yield
        return
    originals = vce_api.add_messages_to_queue, vce_api.put_message_into_state
    vce_api.add_messages_to_queue = add_messages_to_queue
    vce_api.put_message_into_state = put_message_into_state
    replies_stored.active = True
    try:
        yield
    finally:
        vce_api.add_messages_to_queue, vce_api.put_message_into_state = originals
        replies_stored.active = False
