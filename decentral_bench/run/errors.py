"""How failures reach the person at the console.

A problem of the environment (the tracking store, a full disk, a file that cannot
be written, a Ray cluster that does not answer) is one line that names the thing and
what to do. Anything else is an internal error: one line, and the full traceback
written to a file (the CLI's `--debug` prints it instead).
"""

from __future__ import annotations

import errno
import os
import tempfile
import time
import traceback
from pathlib import Path

from decentral_bench.engines.flower.ray_cluster import ClusterUnreachable
from decentral_bench.tracking.local_store import StoreError
from decentral_bench.tracking.store_problems import causes, store_problem

EXIT_ENVIRONMENT = 3  # the store, the disk, a file or a Ray cluster failed: one line says which
EXIT_INTERNAL = 70  # a bug: one line, and the traceback in a file
NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
NO_ACCESS = {errno.EACCES, errno.EPERM, errno.EROFS}


def environment_problem(error: BaseException, uri: str | None = None) -> str | None:
    """What went wrong outside the program, as one line naming the thing and what to do
    (`uri`: the tracking store in use); None for an internal error."""
    for seen in causes(error):
        if isinstance(seen, StoreError | ClusterUnreachable):
            return str(seen)
        if isinstance(seen, OSError) and seen.errno in NO_SPACE:
            return (f"no space left writing {seen.filename or 'a file'} ({seen.strerror}): "
                    "free disk space and run again; finished runs are kept and skipped")
        if isinstance(seen, OSError) and seen.errno in NO_ACCESS:
            return (f"cannot write {seen.filename or 'a file'} ({seen.strerror}): check the "
                    "folder's permissions, or choose another --tracking-uri")
    return store_problem(error, uri) if uri is not None else None


def write_traceback(error: BaseException) -> Path:
    """The error's full traceback, written to a new file in the temporary folder."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(tempfile.gettempdir()) / f"decentral-bench-error-{stamp}-{os.getpid()}.txt"
    path.write_text("".join(traceback.format_exception(error)))
    return path


def failure_line(error: BaseException, uri: str | None = None) -> tuple[int, str]:
    """The exit status and the one line to print for an error that ended a command; an
    internal error's traceback is written to a file that the line names."""
    problem = environment_problem(error, uri)
    if problem is not None:
        return EXIT_ENVIRONMENT, f"error: {problem}"
    first = str(error).splitlines()[0] if str(error) else ""
    return EXIT_INTERNAL, (f"internal error: {type(error).__name__}: {first} (full traceback "
                           f"in {write_traceback(error)}; --debug prints it)")
