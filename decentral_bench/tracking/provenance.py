"""Where a run came from: the source it ran, who ran it, the code's commit and versions.

Recorded on every MLflow run (see `tracking.provenance_tags`), so that a number
in the store can be traced to the code and libraries that produced it.
"""

from __future__ import annotations

import getpass
import os
import platform
import socket
import subprocess
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

# The checkout the project's code runs from, when it is one (an editable install).
CODE_ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"decentral_bench": "decentral-bench", "flwr": "flwr", "torch": "torch",
            "mlflow": "mlflow"}


@dataclass(frozen=True)
class Provenance:
    """What produced a run: `source` (the scenario file or name), the user, the git
    commit of the code (None outside a git checkout) and whether the checkout had
    uncommitted changes, the versions of Python and the key libraries, and the
    process (see `process_identity`)."""

    source: str
    user: str
    git_commit: str | None
    git_dirty: bool
    versions: dict[str, str] = field(default_factory=dict)
    process: str = ""


def _git(*arguments: str) -> str | None:
    """A git command's output in the code's folder, None if git or the checkout is absent."""
    try:
        done = subprocess.run(["git", "-C", str(CODE_ROOT), *arguments], capture_output=True,
                              text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_state() -> tuple[str | None, bool]:
    """The commit the code is at and whether tracked files differ from it; (None, False)
    unless the code's own folder is the top of a git checkout."""
    top = _git("rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != CODE_ROOT:
        return None, False
    changes = _git("status", "--porcelain", "--untracked-files=no")
    return _git("rev-parse", "HEAD"), bool(changes)


def versions() -> dict[str, str]:
    """Python's version and the installed versions of the project and its key libraries."""
    found = {"python": platform.python_version()}
    for key, distribution in PACKAGES.items():
        try:
            found[key] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            found[key] = "not installed"
    return found


def user() -> str:
    """The name of the user running this process ("unknown" where there is none)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _start_ticks(pid: int) -> str | None:
    """When process `pid` started, in clock ticks after boot (Linux /proc); None if
    there is no such process or no /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, after the command name


def process_identity(pid: int | None = None) -> str:
    """`host:pid:start` of a process (this one by default): unique on a host even after
    the pid is reused."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{_start_ticks(pid) or ''}"


def process_is_gone(identity: str) -> bool | None:
    """Whether the process `identity` names has ended: True or False on this host, None
    for another host's process (which cannot be looked at from here)."""
    parts = identity.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return True  # no identity recorded: a run from before identities were kept
    host, pid, start = parts[0], int(parts[1]), parts[2]
    if host != socket.gethostname():
        return None
    if start and Path("/proc").is_dir():
        return _start_ticks(pid) != start
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def collect(source: str) -> Provenance:
    """The provenance of runs started now from `source`, by this process."""
    commit, dirty = git_state()
    return Provenance(source=source, user=user(), git_commit=commit, git_dirty=dirty,
                      versions=versions(), process=process_identity())
