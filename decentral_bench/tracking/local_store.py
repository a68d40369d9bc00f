"""A tracking store's files on this machine: the sqlite database and its folder, the
lock beside it, and where a new experiment keeps its artifacts.

No MLflow here: `tracking` opens the store; this module prepares the ground and
says, in one line, what is wrong with it.
"""

from __future__ import annotations

import fcntl
import os
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class StoreError(RuntimeError):
    """The tracking store cannot be used; the message names it and what to do."""


def sqlite_file(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI (relative to the working folder; absolute
    with four slashes); None for other stores."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri.removeprefix("sqlite:///").split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def artifact_location(uri: str, experiment: str) -> str | None:
    """Where a new experiment keeps its artifacts: `mlruns/<experiment>` beside a sqlite
    store (MLflow's default is ./mlruns in whatever folder the process runs in), the
    server's choice otherwise."""
    database = sqlite_file(uri)
    if database is None:
        return None
    return str(database.resolve().parent / "mlruns" / re.sub(r"[^\w.\-]", "_", experiment))


def prepare_sqlite(uri: str) -> None:
    """Create a sqlite store's folder (as MLflow would), or raise `StoreError` at once
    where the database cannot be created or written (MLflow retries for minutes)."""
    database = sqlite_file(uri)
    if database is None:
        return
    database = database.resolve()
    try:
        database.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StoreError(f"cannot create the folder of the MLflow store {uri} "
                         f"({error.strerror}: {error.filename}); set --tracking-uri") from None
    if database.exists() and not database.is_file():
        raise StoreError(f"the MLflow store {uri} names {database}, which is not a file; "
                         "set --tracking-uri to a database file")
    if not os.access(database if database.exists() else database.parent, os.W_OK):
        raise StoreError(f"the MLflow store {uri} is not writable here; check the "
                         "permissions of its folder or set --tracking-uri")


@contextmanager
def creation_lock(uri: str) -> Iterator[None]:
    """Processes of this project take turns opening a sqlite store (`<file>.lock` beside
    it): opening a new one runs MLflow's schema migration, which fails when two run it
    at once. Other stores need no lock."""
    database = sqlite_file(uri)
    if database is None:
        yield
        return
    with open(f"{database}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def drop_leftover_migration_tables(uri: str) -> list[str]:
    """Drop the `_alembic_tmp_*` tables a schema migration that died half-way left in a
    sqlite store (SQLite's batch migrations copy a table into one, then rename it): while
    one is there, every later migration fails with "table _alembic_tmp_... already exists".
    Call it only once the migration that made them has had time to finish. Returns the
    tables dropped."""
    database = sqlite_file(uri)
    if database is None or not database.exists():
        return []
    with sqlite3.connect(database, timeout=30) as connection:
        names = [row[0] for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE '_alembic_tmp_%'")]
        for name in names:
            connection.execute(f'DROP TABLE IF EXISTS "{name}"')
    return names
