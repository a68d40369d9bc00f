"""A sqlite store that a dead schema migration left half-done is repaired, not given up on."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from decentral_bench.tracking.local_store import drop_leftover_migration_tables
from decentral_bench.tracking.store import connect


def test_leftover_migration_tables_are_dropped_and_nothing_else(tmp_path: Path) -> None:
    database = tmp_path / "store.db"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE experiments (experiment_id INTEGER)")
        connection.execute("CREATE TABLE _alembic_tmp_experiments (experiment_id INTEGER)")
        connection.execute("CREATE TABLE _alembic_tmp_runs (run_uuid TEXT)")
    dropped = drop_leftover_migration_tables(f"sqlite:///{database}")
    assert sorted(dropped) == ["_alembic_tmp_experiments", "_alembic_tmp_runs"]
    with sqlite3.connect(database) as connection:
        tables = [row[0] for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")]
    assert tables == ["experiments"]
    assert drop_leftover_migration_tables(f"sqlite:///{tmp_path / 'absent.db'}") == []


def test_a_store_opens_after_a_migration_died_half_way(tmp_path: Path) -> None:
    """A new store whose first migration left its temporary copy of `experiments` behind
    (as a migration killed between its CREATE and its RENAME does): opening it drops the
    leftover after a third of the patience and migrates."""
    database = tmp_path / "store.db"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE _alembic_tmp_experiments (experiment_id INTEGER)")
    client = connect(f"sqlite:///{database}", patience_s=30.0)
    assert [e.name for e in client.search_experiments()] == ["Default"]
