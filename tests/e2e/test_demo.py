"""`outcall demo` (what `make demo` runs) keeps working: a reduced campaign, in process, over real SIP."""

from __future__ import annotations

from pathlib import Path

import pytest

from outcall import demo
from outcall.settings import load_settings

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


async def test_demo_runs_a_small_campaign(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    keep = {"interested", "voicemail", "busy_line"}
    monkeypatch.setattr(demo, "ZH", tuple(s for s in demo.ZH if s.name in keep))
    monkeypatch.setenv("OUTCALL_CONFIG", str(tmp_path / "none.toml"))
    settings = load_settings(db=str(tmp_path / "demo.db"))
    assert await demo.run_demo(settings) == 0
    out = capsys.readouterr().out
    assert "3 calls, 2 connected, 3/3 as the scenario expected" in out, out
    table = out[out.index("scenario") :]
    assert "interested,booked" in table and "voicemail" in table and "486" in table
    assert "兴趣" in table  # the robot heard the callee (我有兴趣) through ASR
