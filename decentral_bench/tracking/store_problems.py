"""What a failing MLflow store's errors mean: a concurrent schema migration to wait out, or
a problem of the store (lost server, unwritable file, full disk) told in one line."""

from __future__ import annotations

import traceback
from collections.abc import Iterator

from decentral_bench.tracking.view import is_server

# What opening a store fails with while another process migrates it (MLflow 3.17, sqlite),
# besides any error raised inside the migration itself.
MIGRATION_RACE = ("already exists", "duplicate column", "Online migration expected",
                  "database is locked", "no such table", "no such column",
                  "Circular dependency")
MIGRATION_CODE = ("/alembic/", "/mlflow/store/db_migrations/")
STORE_PROBLEMS = {  # sqlite message → what it means for the user
    "unable to open database file": "cannot create or open the database file",
    "readonly database": "the database is read-only",
    "database or disk is full": "the disk is full",
    "disk I/O error": "the disk failed to write",
}



def causes(error: BaseException) -> Iterator[BaseException]:
    """The error and the errors it came from or was raised while handling."""
    seen: BaseException | None = error
    while seen is not None:
        yield seen
        seen = seen.__cause__ or seen.__context__


def messages(error: BaseException) -> str:
    """The messages of the error and of the errors it came from, in one line."""
    return " ".join(str(seen) for seen in causes(error))


def migration_race(error: BaseException) -> bool:
    """Whether opening a store failed the way a concurrent schema migration makes it."""
    if any(race in messages(error) for race in MIGRATION_RACE):
        return True
    return any(part in frame.f_code.co_filename for seen in causes(error)
               for frame, _ in traceback.walk_tb(seen.__traceback__) for part in MIGRATION_CODE)


def store_problem(error: BaseException, uri: str) -> str | None:
    """A failure of the store at `uri` as one line naming it and what to do, or None if
    the error is not the store's."""
    text = messages(error)
    if is_server(uri) and ("Max retries exceeded" in text or "Connection refused" in text
                           or "API request to" in text):
        return (f"lost the MLflow tracking server at {uri} ({text[:160]}); check that it "
                "runs and re-run: finished runs are kept and skipped")
    for found, meaning in STORE_PROBLEMS.items():
        if found in text:
            return (f"cannot write the MLflow store {uri}: {meaning}; check its folder "
                    "(exists, writable, free space) or choose another --tracking-uri")
    return None
