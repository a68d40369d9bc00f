"""Keep a simulation's private Ray off the network: give it a network namespace of its own.

Ray 2.55 listens on every interface (`*:PORT`: its GCS server, raylets, object
manager, workers, the driver) even when started with `_node_ip_address` 127.0.0.1
(measured with `ss -ltnp` during a run) — an unauthenticated Ray, which runs any
code it is sent, reachable from the network for as long as a simulation lasts.

On Linux a thread can move itself into a new network namespace
(`unshare(CLONE_NEWNET)`, which needs CAP_SYS_ADMIN: root, or a container that
grants it); the threads and processes it starts afterwards are in it too. The new
namespace has only a loopback interface, brought up here, so whatever Ray binds
there, nothing outside the machine (or outside the run) can reach it. The
simulation engine's thread enters one before Flower starts Ray; the thread that
called the engine stays outside, which is where MLflow is written from
(`simulation.MainThreadCalls`), so a remote tracking server keeps working.

Where a namespace is not permitted (no CAP_SYS_ADMIN, not Linux), the reason is
logged once and Ray runs as it would: docs/deployment.md's "Network exposure" says what then
listens where.
"""

from __future__ import annotations

import ctypes
import fcntl
import logging
import os
import socket
import struct

CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
IFREQ = "16sH14x"  # struct ifreq: the interface name, then its flags
logger = logging.getLogger(__name__)
_told: list[str] = []


def _bring_up_loopback() -> None:
    """Set the `lo` interface of the current network namespace up (new ones start down)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        request = struct.pack(IFREQ, b"lo", 0)
        flags = struct.unpack(IFREQ, fcntl.ioctl(probe, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(probe, SIOCSIFFLAGS, struct.pack(IFREQ, b"lo", flags | IFF_UP))


def enter_private_network() -> str | None:
    """Move the calling thread (and what it starts from now on) into a new network
    namespace whose only interface is loopback. Returns None when it did, else why not
    (also logged, once per process)."""
    try:
        unshare = ctypes.CDLL(None, use_errno=True).unshare
    except AttributeError:
        return _not_confined("the system has no unshare(2) (not Linux)")
    if unshare(CLONE_NEWNET) != 0:
        return _not_confined(f"unshare(CLONE_NEWNET): {os.strerror(ctypes.get_errno())}")
    _bring_up_loopback()
    return None


def _not_confined(reason: str) -> str:
    if not _told:
        _told.append(reason)
        logger.warning("the simulation's Ray listens on all network interfaces (no private "
                       "network namespace: %s); see docs/deployment.md, Network exposure", reason)
    return reason
