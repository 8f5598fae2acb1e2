"""`outcall call` as a user runs it: a subprocess, real SIP to real peers, JSON out, stored in the DB."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from peers import Baresip, SippServer, tts_wav

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
KEYS = [
    "call_id",
    "to",
    "disposition",
    "sip_code",
    "grade",
    "started_at",
    "answered_at",
    "ended_at",
    "duration_s",
    "talk_s",
    "hangup_by",
    "turns",
    "variables",
    "tags",
    "dialplan",
]


def outcall(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {
        **os.environ,
        "OUTCALL_DB": str(tmp_path / "calls.db"),
        "OUTCALL_CONFIG": str(tmp_path / "none.toml"),
        "OUTCALL_LOG_LEVEL": "WARNING",
        "OUTCALL_MODELS_DIR": os.environ.get("OUTCALL_MODELS_DIR", str(ROOT / "var" / "models")),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "outcall", *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_call_busy_line_prints_outcome_and_exits_0(
    tmp_path: Path, sipp_server: Callable[..., SippServer]
) -> None:
    uas = sipp_server("ua_busy_486.xml", timeout_s=120)  # a cold prompt cache renders before dialing
    r = outcall(["call", uas.uri("13812345678"), "--dialplan", "trial-class-zh", "--json"], tmp_path)
    assert r.returncode == 0, r.stderr
    out: dict[str, Any] = json.loads(r.stdout)
    assert set(KEYS) <= set(out)
    assert out["disposition"] == "busy" and out["sip_code"] == 486 and out["carrier_status"] == "占线"
    assert out["grade"] == "E" and out["answered_at"] is None and out["q850_cause"] == 17
    rows = (
        sqlite3.connect(tmp_path / "calls.db").execute("SELECT call_id, disposition FROM outcomes").fetchall()
    )
    assert rows == [(out["call_id"], "busy")]


def test_call_answered_by_baresip_converses(tmp_path: Path, baresip: Callable[..., Baresip]) -> None:
    wav = tts_wav("好的，可以。", tmp_path / "reply.wav")
    # disclosure + greeting of trial-class-zh last ~9 s with Kokoro; reply after them, keep the line up
    callee = baresip(audio=wav, delay_s=10.5, tail_s=12)
    r = outcall(
        ["call", callee.uri, "--dialplan", "trial-class-zh", "--var", "brand=星火教育", "--json"], tmp_path
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["disposition"] == "answered" and out["sip_code"] == 200
    assert out["answered_at"] and out["talk_s"] > 5
    assert out["variables"]["brand"] == "星火教育"
    bot = [t for t in out["turns"] if t["speaker"] == "bot"]
    assert "星火教育" in bot[0]["text"]  # the --var reached the disclosure
    assert any(t["node"] == "greet" for t in bot)
    assert out["hangup_by"] in ("robot", "callee")


def test_usage_and_config_errors_exit_2(tmp_path: Path) -> None:
    r = outcall(["call", "sip:x@127.0.0.1:9", "--dialplan", "no-such-plan"], tmp_path)
    assert r.returncode == 2 and "no dialplan named 'no-such-plan'" in r.stderr
    r = outcall(["call", "sip:x@127.0.0.1:9", "--dialplan", "trial-class-zh", "--trunk", "zz"], tmp_path)
    assert r.returncode == 2 and "no trunk named 'zz'" in r.stderr
    r = outcall(["call", "13812345678", "--dialplan", "trial-class-zh"], tmp_path)
    assert r.returncode == 2 and "OUTCALL_SIP_PROXY" in r.stderr
    r = outcall(
        ["call", "sip:x@127.0.0.1:9", "--dialplan", "trial-class-zh"], tmp_path, OUTCALL_MODELS_DIR="/nope"
    )
    assert r.returncode == 2 and "make models" in r.stderr
