"""Prompt message pick-up in Flower's Simulation Engine (flwr 1.41).

The engine's fleet thread (`vce_api.add_messages_to_queue`) looks for new
messages, then sleeps 0.1 s, so every round waits on average 50 ms (up to
100 ms) before any ClientApp starts — for CDSGD, which communicates every
minibatch step, that wait dominates small models. The replacement below is
the same loop but wakes as soon as this project's `NetworkTap` pushes
messages; with nothing pushed it still looks every 0.1 s, so behaviour is
otherwise unchanged. It is installed only around our own simulations.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from queue import Queue

from flwr.app import Message
from flwr.server.superlink.fleet.vce import vce_api

messages_pushed = threading.Event()


def add_messages_to_queue(state: object, queue: Queue[Message], nodes_mapping: dict[int, int],
                          f_stop: threading.Event) -> None:
    """`vce_api.add_messages_to_queue`, woken by `messages_pushed` instead of sleeping."""
    while not f_stop.is_set():
        messages_pushed.clear()
        for node_id in nodes_mapping:
            for message in state.get_message_ins(node_id=node_id, limit=1):
                queue.put(message)
        messages_pushed.wait(0.1)


@contextmanager
def prompt_pickup() -> Iterator[None]:
    """Use the woken fleet loop for the simulations started inside this block."""
    original = vce_api.add_messages_to_queue
    vce_api.add_messages_to_queue = add_messages_to_queue
    try:
        yield
    finally:
        vce_api.add_messages_to_queue = original
