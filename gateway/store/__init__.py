"""Persistence adapters (SQLite default, Postgres for several nodes)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.store.postgres import PostgresStore
    from gateway.store.sqlite import SqliteStore


def open_store(db: str, *, node: str = "local") -> SqliteStore | PostgresStore:
    """A SQLite file path, or a postgresql:// URL (several nodes)."""
    if db.startswith(("postgresql://", "postgres://")):
        from gateway.store.postgres import PostgresStore

        return PostgresStore(db, node=node)
    from gateway.store.sqlite import SqliteStore

    return SqliteStore(db, node=node)
