import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from engine.errors import ConfigError
from gateway.store.sqlite import SqliteStore
from outcall.api.app import create_app
from outcall.cli import main
from outcall.settings import load_settings


def test_schema_outcome_prints_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "outcome"]) == 0
    schema = json.loads(capsys.readouterr().out)
    for key in ("call_id", "to", "disposition", "sip_code", "grade", "started_at", "answered_at", "ended_at"):
        assert key in schema["properties"]
    assert "已接通" in json.dumps(schema, ensure_ascii=False)


def test_dialplan_validate_reports_location(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nstart: a\nnodes:\n  a: {type: say, say: hi, next: b}\n", encoding="utf-8")
    assert main(["dialplan", "validate", "trial-class-zh", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "trial-class-zh.yaml: ok" in out
    assert f"{bad}:4:" in out and "unknown node 'b'" in out


def test_bad_var_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["call", "sip:x@127.0.0.1:9", "--dialplan", "trial-class-zh", "--var", "oops"]) == 2
    assert "key=value" in capsys.readouterr().err


def test_settings_env_and_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "outcall.toml"
    toml.write_text(
        '[[trunks]]\nname = "a"\nproxy = "127.0.0.1:5070"\nauth_user = "u1"\npassword = "s3cret"\n'
        'caller_id_mode = "pai"\n[trunks.dial]\ntech_prefix = "9"\n\n'
        '[[trunks]]\nname = "b"\nproxy = "127.0.0.1:5080"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("OUTCALL_CONFIG", str(toml))
    monkeypatch.setenv("OUTCALL_DB", str(tmp_path / "x.db"))
    s = load_settings()
    assert s.db.endswith("x.db")
    assert [t.name for t in s.all_trunks()] == ["a", "b"]
    a = s.trunk("a")
    assert a.caller_id_mode == "pai" and a.password is not None and a.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(a)
    assert a.request_uri("+8613812345678") == "sip:913812345678@127.0.0.1:5070"
    with pytest.raises(ConfigError, match="no trunk named 'zzz'"):
        s.trunk("zzz")


def test_settings_errors_name_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OUTCALL_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("OUTCALL_ASR", "nope")
    with pytest.raises(ConfigError, match="OUTCALL_ASR"):
        load_settings()
    monkeypatch.delenv("OUTCALL_ASR")
    broken = tmp_path / "broken.toml"
    broken.write_text("[[trunks]\n", encoding="utf-8")
    monkeypatch.setenv("OUTCALL_CONFIG", str(broken))
    with pytest.raises(ConfigError, match=r"broken\.toml"):
        load_settings()


def test_flat_env_builds_default_trunk(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OUTCALL_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("OUTCALL_SIP_PROXY", "127.0.0.1:5099")
    monkeypatch.setenv("OUTCALL_SIP_USER", "1001")
    monkeypatch.setenv("OUTCALL_SIP_PASSWORD", "pw")
    monkeypatch.setenv("OUTCALL_CALLER_ID", "02161234567")
    t = load_settings().trunk(None)
    assert (t.name, t.proxy, t.auth_user, t.caller_ids) == (
        "default",
        "127.0.0.1:5099",
        "1001",
        ["02161234567"],
    )


def test_api_needs_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTCALL_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("OUTCALL_API_TOKEN", "tok-123")
    app = create_app(load_settings(), SqliteStore(tmp_path / "a.db"))
    client = TestClient(app)
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/api/v1/calls").status_code == 401
    assert client.get("/api/v1/calls", headers={"Authorization": "Bearer wrong"}).status_code == 401
    r = client.get("/api/v1/calls", headers={"Authorization": "Bearer tok-123"})
    assert r.status_code == 200 and r.json()["items"] == [] and r.json()["total"] == 0


async def test_recorded_prompts_load_resampled_and_fail_clearly(tmp_path: Path) -> None:
    import wave

    import numpy as np

    from engine.errors import ModelError
    from outcall.runtime import wav_loader

    t = np.arange(16000) / 16000
    tone = (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2")
    with wave.open(str(tmp_path / "hello.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(tone.tobytes())
    load = wav_loader(tmp_path)
    pcm = await load("hello.wav")
    assert len(pcm) == 8000 and pcm.dtype == np.int16
    spectrum = np.abs(np.fft.rfft(pcm.astype(float)))
    assert abs(int(np.argmax(spectrum)) - 440) <= 2
    with pytest.raises(ModelError, match=r"missing\.wav"):
        await load("missing.wav")
