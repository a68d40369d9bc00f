"""A stop asked for by a signal (Ctrl-C, SIGTERM, the sweep's process ending), kept for
the whole process.

The signal handler raises `KeyboardInterrupt` where the main thread happens to be, and
also records the stop here. A library that catches the exception where it lands (or turns
it into another one) cannot lose the stop then: the engines look here at every round
(`check`), a run that ended in an error while a stop was asked for is KILLED, not FAILED,
and no further run of the sweep starts.
"""

from __future__ import annotations

_asked: list[str] = []


def request(reason: str) -> None:
    """Record that the process was asked to stop, and why (the first reason stays)."""
    if not _asked:
        _asked.append(reason)


def requested() -> str | None:
    """Why the process was asked to stop, or None while it was not."""
    return _asked[0] if _asked else None


def check() -> None:
    """Raise `KeyboardInterrupt` (with the reason) when a stop was asked for."""
    if _asked:
        raise KeyboardInterrupt(_asked[0])


def clear() -> None:
    """Forget a stop (a process that goes on with other work after one, such as a test)."""
    _asked.clear()
