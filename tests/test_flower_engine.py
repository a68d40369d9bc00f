"""The engine hooks: replies are counted as they are stored, and waiters wake on the count."""

from __future__ import annotations

import threading
import time
from queue import Queue

from flwr.server.superlink.fleet.vce import vce_api

from decentral_bench.engines.flower import engine_patch as flower_engine
from decentral_bench.engines.flower.engine_patch import (
    ReplyCounter,
    patch_mismatches,
    prompt_pickup,
)


def test_a_waiter_wakes_when_the_count_is_reached_not_before() -> None:
    """Events in the order they happen: the waiter wakes after the third reply is stored,
    and sees three (a waiter that woke on the second would log its wake before the third
    reply, which comes 0.2 s later; a loaded machine only delays the wake)."""
    counter = ReplyCounter()
    events: list[str] = []

    def wait() -> None:
        reached = counter.wait_for(3, timeout=300.0)
        events.append(f"woke with {counter.count}, reached: {reached}")

    waiter = threading.Thread(target=wait)
    waiter.start()
    for _ in range(2):
        counter.add()
    time.sleep(0.2)
    assert not counter.wait_for(3, timeout=0.0)  # two of three replies
    events.append("third reply")
    counter.add()
    waiter.join(300.0)
    assert events == ["third reply", "woke with 3, reached: True"]


def test_a_wait_for_a_count_never_reached_ends_at_its_timeout() -> None:
    """It returns False, not before its timeout (how much later is the machine's load)."""
    counter = ReplyCounter()
    started = time.monotonic()
    assert not counter.wait_for(1, timeout=0.05)
    assert time.monotonic() - started >= 0.05
    counter.add()
    assert counter.wait_for(1, timeout=0.0)  # reached: no wait at all


def test_the_hooks_are_installed_only_inside_prompt_pickup_and_count_stored_replies() -> None:
    class State:
        def __init__(self) -> None:
            self.stored: list[str] = []

        def store_message_res(self, message: str) -> None:
            self.stored.append(message)

    original = vce_api.put_message_into_state
    with prompt_pickup():
        assert vce_api.put_message_into_state is flower_engine.put_message_into_state
        assert flower_engine.replies_stored.active
        before = flower_engine.replies_stored.count
        state, queue, stop = State(), Queue(), threading.Event()
        injector = threading.Thread(target=vce_api.put_message_into_state,
                                    args=(state, queue, stop))
        injector.start()
        for reply in ("a", "b"):
            queue.put(reply)
        assert flower_engine.replies_stored.wait_for(before + 2, timeout=5.0)
        stop.set()
        injector.join(5.0)
        assert state.stored == ["a", "b"]
    assert vce_api.put_message_into_state is original
    assert not flower_engine.replies_stored.active


def test_the_patch_fits_the_installed_flwr() -> None:
    """Fails when flwr changes the two loops the patch replaces (or how the engine starts
    them): then the patch is skipped with a warning, and must be rewritten for the new flwr."""
    assert patch_mismatches() == []
