"""`flower-supernode` with prompt polling (flwr 1.41), for rounds that take milliseconds.

Flower's SuperNode (`flwr.supernode.start_client_internal`) waits with fixed
sleeps: 3 s after each look at the SuperLink that found no message, 0.5 s
between looks for the ClientApp's reply, and 1 s, then 2 s before it asks the
SuperLink again for a message's arrays that are still being uploaded. Every
round of a gossip method crosses all three, so a round that trains in 5 ms
takes 4–6 s. This launcher runs the same SuperNode, with the same arguments,
but with those pauses shortened:

- an idle look is followed by a pause that starts at `FIRST_IDLE_PAUSE_S` and
  doubles up to `LAST_IDLE_PAUSE_S` (back to the start once a message arrives);
- the waits for a reply and for a reply's arrays poll every `BUSY_PAUSE_S`;
- arrays still being uploaded are asked for again after 10 ms, doubling to 0.2 s.

It swaps the module's `time` and `pull_objects` for these and changes nothing
else, and only when the installed flwr is the one this was written against:
the same version and the same source of the three functions that sleep
(`patch_mismatches`). Otherwise it logs a warning and runs Flower's SuperNode
unchanged.

    python -m decentral_bench.engines.flower.supernode --insecure --superlink 127.0.0.1:9092 ...
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import time
from functools import partial

import flwr
from flwr.supernode import start_client_internal
from flwr.supernode.cli import flower_supernode

FLWR_VERSION = "1.41.0"
PATCHED_SOURCES = {  # a sha256 prefix of the source of each function whose pauses change
    "start_client_internal": "9e89a6eb68fbec68",
    "_pull_and_store_message": "eaf5d0e36dc34e4c",
    "_push_messages": "00bb86faffdec114",
}
FIRST_IDLE_PAUSE_S = 0.01
LAST_IDLE_PAUSE_S = 0.25
BUSY_PAUSE_S = 0.005
FLOWER_IDLE_SLEEP_S = 3  # the pause this replaces (`time.sleep(3)` after an idle look)
logger = logging.getLogger(__name__)


class PromptClock:
    """Stands in for the `time` module inside Flower's SuperNode loop: `sleep` is
    shortened as the module docstring says; everything else is `time`'s own."""

    def __init__(self) -> None:
        self.idle_pause = FIRST_IDLE_PAUSE_S

    def __getattr__(self, name: str) -> object:
        return getattr(time, name)

    def sleep(self, seconds: float) -> None:
        if seconds >= FLOWER_IDLE_SLEEP_S:  # nothing came: look again soon, then less often
            time.sleep(self.idle_pause)
            self.idle_pause = min(2 * self.idle_pause, LAST_IDLE_PAUSE_S)
        else:  # a message is being handled: its reply is due any moment
            self.idle_pause = FIRST_IDLE_PAUSE_S
            time.sleep(min(seconds, BUSY_PAUSE_S))


def source_digest(function: object) -> str:
    return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()[:16]  # type: ignore[arg-type]


def source_mismatches(owner: object, expected_sources: dict[str, str]) -> list[str]:
    """Why the installed flwr does not fit a patch written against flwr 1.41.0: another
    version, or a function of `owner` that is gone or whose source (a sha256 prefix of
    it, `expected_sources`) changed. Empty when it fits."""
    problems = []
    if flwr.__version__ != FLWR_VERSION:
        problems.append(f"flwr is {flwr.__version__}, the patch was written for {FLWR_VERSION}")
    name_of_owner = getattr(owner, "__name__", str(owner))
    for name, expected in expected_sources.items():
        function = getattr(owner, name, None)
        if function is None:
            problems.append(f"{name_of_owner}.{name} is gone")
        elif source_digest(function) != expected:
            problems.append(f"{name_of_owner}.{name} changed")
    return problems


def patch_mismatches() -> list[str]:
    """Why the installed flwr does not fit the prompt pauses (empty when it does)."""
    return source_mismatches(start_client_internal, PATCHED_SOURCES)


def make_prompt() -> bool:
    """Shorten the SuperNode's pauses if the installed flwr fits; says whether it did."""
    problems = patch_mismatches()
    if problems:
        logger.warning("running Flower's SuperNode with its own pauses (3 s per idle look): %s",
                       "; ".join(problems))
        return False
    start_client_internal.time = PromptClock()  # type: ignore[assignment]
    start_client_internal.pull_objects = partial(
        start_client_internal.pull_objects, initial_backoff=0.01, backoff_cap=0.2)
    return True


def main() -> None:
    """`flower-supernode`, with prompt pauses when they fit (same arguments)."""
    make_prompt()
    flower_supernode()


if __name__ == "__main__":
    main()
