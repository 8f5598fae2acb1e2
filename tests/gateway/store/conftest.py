"""Store fixtures: real SQLite files and a real throwaway PostgreSQL server (Debian postgresql)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """Start a throwaway postgres on a free loopback port; skip only when postgresql is not installed."""
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries absent (apt-get install postgresql)")
    tmp = Path(tempfile.mkdtemp(prefix="outcall-pg-"))
    data = tmp / "data"
    user = "postgres"
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root
        shutil.chown(tmp, user=user)
        as_user = ["runuser", "-u", user, "--"]
    port = _free_port()
    subprocess.run(
        [*as_user, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "outcall", "--no-sync"],
        check=True,
        capture_output=True,
        cwd=tmp,
    )
    subprocess.run(
        [
            *as_user,
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(tmp / "log"),
            "-w",
            "-o",
            f"-c listen_addresses=127.0.0.1 -p {port} -k {tmp} -c fsync=off",
            "start",
        ],
        check=True,
        capture_output=True,
        cwd=tmp,
    )
    try:
        yield f"postgresql://outcall@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
            cwd=tmp,
        )
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def pg_db(pg_url: str) -> str:
    """A fresh database per test."""
    import psycopg

    name = f"t{time.monotonic_ns()}"
    with psycopg.connect(pg_url, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}".encode())
    return pg_url.rsplit("/", 1)[0] + "/" + name
