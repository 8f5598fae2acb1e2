"""Persistence adapters (SQLite default, Postgres for several nodes)."""
