"""HTTP API against a real SQLite file: roles, masking, problem+json, pagination, uploads, dialplans,
audit, token hashing, metrics."""

from __future__ import annotations

import hashlib
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from engine.dispositions import Disposition
from tests.outcall.api.conftest import Api, outcome

PROBLEM_KEYS = {"type", "title", "status", "detail", "instance"}


def assert_problem(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body.keys() >= PROBLEM_KEYS
    assert body["status"] == status and body["type"].startswith("https://")
    return body


def make_campaign(api: Api, name: str = "spring", **extra: Any) -> dict[str, Any]:
    r = api.client.post(
        "/api/v1/campaigns",
        json={"name": name, "dialplan": "trial-class-zh", **extra},
        headers=api.h("manager"),
    )
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


# ---- auth and roles


def test_healthz_open_everything_else_needs_a_token(api: Api) -> None:
    r = api.client.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    for path in ("/api/v1/campaigns", "/api/v1/calls", "/metrics", "/api/v1/audit"):
        body = assert_problem(api.client.get(path), 401)
        assert body["instance"] == path
    assert_problem(api.client.get("/api/v1/campaigns", headers={"Authorization": "Bearer nope"}), 401)
    assert api.client.get("/api/v1/campaigns", headers=api.h("env")).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body", "allowed"),
    [
        ("get", "/api/v1/campaigns", None, {"admin", "manager", "designer", "viewer"}),
        ("get", "/api/v1/calls", None, {"admin", "manager", "designer", "viewer"}),
        ("get", "/metrics", None, {"admin", "manager", "designer", "viewer"}),
        (
            "post",
            "/api/v1/campaigns",
            {"name": "c-{role}", "dialplan": "trial-class-zh"},
            {"admin", "manager"},
        ),
        ("post", "/api/v1/dnc", {"phone": "13800000009"}, {"admin", "manager"}),
        ("post", "/api/v1/dialplans/trial-class-zh/tests", None, {"admin", "designer"}),
        ("get", "/api/v1/audit", None, {"admin"}),
        ("get", "/api/v1/tokens", None, {"admin"}),
        ("post", "/api/v1/tokens", {"role": "viewer"}, {"admin"}),
    ],
)
def test_roles(api: Api, method: str, path: str, body: dict[str, Any] | None, allowed: set[str]) -> None:
    for role in ("admin", "manager", "designer", "viewer"):
        payload = {k: v.format(role=role) if isinstance(v, str) else v for k, v in (body or {}).items()}
        r = api.client.request(method, path, json=payload if body else None, headers=api.h(role))
        if role in allowed:
            assert r.status_code in (200, 201), (role, path, r.text)
        else:
            problem = assert_problem(r, 403)
            assert role in problem["detail"]


def test_tokens_are_hashed_at_rest_and_revocable(api: Api) -> None:
    r = api.client.post("/api/v1/tokens", json={"role": "viewer", "name": "grafana"}, headers=api.h("admin"))
    assert r.status_code == 201
    created = r.json()
    token = created["token"]
    assert created["role"] == "viewer" and token.startswith("oc_")
    with sqlite3.connect(api.db) as db:
        rows = db.execute("SELECT token_sha256 FROM api_tokens").fetchall()
        dump = "\n".join(db.iterdump())
    assert hashlib.sha256(token.encode()).hexdigest() in {r[0] for r in rows}
    for t in [token, *api.tokens.values()]:
        assert t not in dump
    listed = api.client.get("/api/v1/tokens", headers=api.h("admin")).json()
    assert "token" not in listed["items"][0] and listed["total"] == 5
    hv = {"Authorization": f"Bearer {token}"}
    assert api.client.get("/api/v1/campaigns", headers=hv).status_code == 200
    assert api.client.delete(f"/api/v1/tokens/{created['id']}", headers=api.h("admin")).status_code == 204
    assert_problem(api.client.get("/api/v1/campaigns", headers=hv), 401)


def test_token_cli_prints_once_and_works(
    api: Api, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from outcall.cli import main

    monkeypatch.setenv("OUTCALL_DB", str(api.db))
    assert main(["token", "create", "--role", "designer", "--name", "alice", "--quiet"]) == 0
    token = capsys.readouterr().out.strip()
    r = api.client.put(
        "/api/v1/dialplans/trial-class-zh",
        content=(Path("dialplans") / "trial-class-zh.yaml").read_text(encoding="utf-8"),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/yaml"},
    )
    assert r.status_code == 200, r.text
    assert main(["token", "list"]) == 0
    out = capsys.readouterr().out
    assert "alice" in out and token not in out
    with pytest.raises(SystemExit) as exc:
        main(["token", "create", "--role", "root"])
    assert exc.value.code == 2 and "invalid choice: 'root'" in capsys.readouterr().err


# ---- problem+json and validation


def test_validation_errors_are_problem_json(api: Api) -> None:
    r = api.client.post("/api/v1/campaigns", json={"name": "x"}, headers=api.h("manager"))
    body = assert_problem(r, 422)
    assert body["errors"][0]["loc"] == ["body", "dialplan"] and "dialplan" in body["detail"]
    assert_problem(api.client.get("/api/v1/calls?limit=0", headers=api.h("viewer")), 422)
    assert_problem(api.client.get("/api/v1/campaigns/none", headers=api.h("viewer")), 404)
    assert_problem(api.client.get("/api/v1/nowhere", headers=api.h("viewer")), 404)
    r = api.client.post(
        "/api/v1/campaigns", json={"name": "y", "dialplan": "no-such-plan"}, headers=api.h("manager")
    )
    assert "no-such-plan" in assert_problem(r, 422)["detail"]


# ---- campaigns


def test_campaign_crud_and_transitions(api: Api) -> None:
    c = make_campaign(api, calls_per_second=2.0)
    assert c["status"] == "draft" and c["config"]["calls_per_second"] == 2.0
    assert_problem(
        api.client.post(
            "/api/v1/campaigns",
            json={"name": "spring", "dialplan": "trial-class-zh"},
            headers=api.h("manager"),
        ),
        409,
    )
    r = api.client.patch("/api/v1/campaigns/spring", json={"ai_capacity": 3}, headers=api.h("manager"))
    assert r.status_code == 200 and r.json()["config"]["ai_capacity"] == 3
    body = assert_problem(api.client.post("/api/v1/campaigns/spring/pause", headers=api.h("manager")), 409)
    assert "draft" in body["detail"]
    for verb, state in (("start", "running"), ("pause", "paused"), ("resume", "running")):
        r = api.client.post(f"/api/v1/campaigns/spring/{verb}", headers=api.h("manager"))
        assert r.status_code == 200 and r.json()["status"] == state
    assert_problem(api.client.delete("/api/v1/campaigns/spring", headers=api.h("manager")), 409)
    assert (
        api.client.post("/api/v1/campaigns/spring/stop", headers=api.h("manager")).json()["status"]
        == "stopped"
    )
    stats = api.client.get("/api/v1/campaigns/spring/stats", headers=api.h("viewer")).json()
    assert stats["status"] == "stopped" and "calls" in stats
    assert api.client.delete("/api/v1/campaigns/spring", headers=api.h("manager")).status_code == 204
    assert_problem(api.client.get("/api/v1/campaigns/spring", headers=api.h("viewer")), 404)


def test_pagination_with_total_and_next(api: Api) -> None:
    for i in range(5):
        make_campaign(api, f"c{i}")
    r = api.client.get("/api/v1/campaigns?limit=2&offset=0", headers=api.h("viewer")).json()
    assert [c["name"] for c in r["items"]] == ["c0", "c1"] and r["total"] == 5
    seen = []
    url: str | None = "/api/v1/campaigns?limit=2"
    while url:
        page = api.client.get(url, headers=api.h("viewer")).json()
        seen += [c["name"] for c in page["items"]]
        url = page["next"]
    assert seen == [f"c{i}" for i in range(5)]


# ---- contacts


def test_upload_reports_bad_rows_and_imports_good_ones(api: Api) -> None:
    make_campaign(api)
    csv_bytes = (
        "手机号,姓名,城市\n13800000001,张三,北京\n138-0000-0002,李四,上海\nabc,坏,\n13800000001,重复,\n"
    ).encode("gbk")
    r = api.client.post(
        "/api/v1/campaigns/spring/contacts/upload",
        files={"file": ("list.csv", csv_bytes, "text/csv")},
        headers=api.h("manager"),
    )
    assert r.status_code == 200, r.text
    rep = r.json()
    assert rep["imported"] == 2 and rep["duplicates"] == 1
    assert [b["row"] for b in rep["invalid"]] == [4] and "abc" in rep["invalid"][0]["reason"]
    listed = api.client.get("/api/v1/campaigns/spring/contacts", headers=api.h("manager")).json()
    assert [c["phone"] for c in listed["items"]] == ["+8613800000001", "+8613800000002"]
    assert listed["items"][0]["variables"] == {"城市": "北京"}
    bad = api.client.post(
        "/api/v1/campaigns/spring/contacts/upload",
        files={"file": ("list.csv", b"name\nx\n", "text/csv")},
        headers=api.h("manager"),
    )
    assert "phone" in assert_problem(bad, 422)["detail"]
    audit = api.client.get("/api/v1/audit?action=contacts.import", headers=api.h("admin")).json()
    assert audit["total"] == 1 and audit["items"][0]["detail"]["imported"] == 2


def test_add_contact_speed_to_lead_and_masking(api: Api) -> None:
    make_campaign(api)
    r = api.client.post(
        "/api/v1/campaigns/spring/contacts",
        json={"phone": "138 1234 5678", "name": "王五", "priority": "now"},
        headers=api.h("manager"),
    )
    assert r.status_code == 201, r.text
    assert r.json()["priority"] == 100 and r.json()["phone"] == "+8613812345678"
    assert r.json()["state"] == "pending"
    assert_problem(
        api.client.post(
            "/api/v1/campaigns/spring/contacts", json={"phone": "13812345678"}, headers=api.h("manager")
        ),
        409,
    )
    assert_problem(
        api.client.post("/api/v1/campaigns/spring/contacts", json={"phone": "12"}, headers=api.h("manager")),
        422,
    )
    # the speed-to-lead contact is claimed first
    api.client.post(
        "/api/v1/campaigns/spring/contacts", json={"phone": "13800000001"}, headers=api.h("manager")
    )
    api.client.post("/api/v1/campaigns/spring/start", headers=api.h("manager"))
    import time

    claims = api.store.claim_sync("spring", 1, time.time() + 1)
    assert claims[0].contact.phone == "+8613812345678"
    viewer = api.client.get("/api/v1/campaigns/spring/contacts", headers=api.h("viewer")).json()
    assert {c["phone"] for c in viewer["items"]} == {"138****5678", "138****0001"}
    export = api.client.get("/api/v1/campaigns/spring/contacts/export", headers=api.h("viewer"))
    assert export.status_code == 200 and "138****5678" in export.text and "13812345678" not in export.text
    full = api.client.get("/api/v1/campaigns/spring/contacts/export", headers=api.h("manager")).text
    assert "+8613812345678" in full
    audit = api.client.get("/api/v1/audit?action=contacts.export", headers=api.h("admin")).json()
    assert [(e["actor"], e["detail"]["masked"]) for e in audit["items"]] == [
        ("manager-bot", False),
        ("viewer-bot", True),
    ]


def test_dnc_add_list_remove_audited(api: Api) -> None:
    r = api.client.post(
        "/api/v1/dnc", json={"phone": "13800000009", "reason": "asked"}, headers=api.h("manager")
    )
    assert r.status_code == 201 and r.json()["phone"] == "+8613800000009"
    api.client.post(
        "/api/v1/dnc", json={"phone": "13800000008", "campaign": "spring"}, headers=api.h("manager")
    )
    lst = api.client.get("/api/v1/dnc?limit=1", headers=api.h("viewer")).json()
    assert lst["total"] == 2 and lst["items"][0]["phone"] == "138****0009" and lst["next"]
    glob = api.client.get("/api/v1/dnc?campaign=", headers=api.h("manager")).json()
    assert [d["phone"] for d in glob["items"]] == ["+8613800000009"]
    assert api.client.delete("/api/v1/dnc/+8613800000009", headers=api.h("manager")).status_code == 204
    assert_problem(api.client.delete("/api/v1/dnc/+8613800000009", headers=api.h("manager")), 404)
    audit = api.client.get("/api/v1/audit", headers=api.h("admin")).json()["items"]
    actions = [(e["action"], e["target"]) for e in audit if e["action"].startswith("dnc.")]
    assert actions == [
        ("dnc.remove", "+8613800000009"),
        ("dnc.add", "+8613800000008"),
        ("dnc.add", "+8613800000009"),
    ]
    uses = [e for e in audit if e["action"] == "token.use"]
    assert uses and uses[0]["actor"] == "manager-bot" and uses[0]["target"].startswith("DELETE /api/v1/dnc/")


# ---- dialplans


def test_dialplans_list_get_put_with_line_errors(api: Api) -> None:
    lst = api.client.get("/api/v1/dialplans", headers=api.h("viewer")).json()
    assert "trial-class-zh" in {d["name"] for d in lst["items"]} and lst["total"] >= 5
    got = api.client.get("/api/v1/dialplans/trial-class-zh", headers=api.h("viewer")).json()
    assert got["source"] == "shipped" and "\nname: trial-class-zh\n" in got["yaml"]
    bad = "name: mine\nstart: a\nnodes:\n  a: {type: say, say: hi, next: b}\n"
    r = api.client.put(
        "/api/v1/dialplans/mine",
        content=bad,
        headers={**api.h("designer"), "Content-Type": "application/yaml"},
    )
    body = assert_problem(r, 422)
    assert any(re.match(r"mine\.yaml:4:\d+: .*unknown node 'b'", e) for e in body["errors"]), body["errors"]
    assert not (api.dialplans_dir / "mine.yaml").exists()
    good = got["yaml"].replace("\nname: trial-class-zh\n", "\nname: mine\n", 1)
    r = api.client.put("/api/v1/dialplans/mine", json={"yaml": good}, headers=api.h("designer"))
    assert r.status_code == 200, r.text
    assert r.json()["source"] == "custom" and (api.dialplans_dir / "mine.yaml").is_file()
    assert_problem(
        api.client.put("/api/v1/dialplans/other", content=good, headers=api.h("designer")), 422
    )  # name mismatch
    # a campaign can use it, and its tests run against the saved plan
    make_campaign(api, "c-mine", dialplan="mine")
    shipped_tests = (Path("dialplans") / "tests" / "trial-class-zh.yaml").read_text(encoding="utf-8")
    r = api.client.post(
        "/api/v1/dialplans/mine/tests", json={"tests_yaml": shipped_tests}, headers=api.h("designer")
    )
    res = r.json()
    assert r.status_code == 200 and res["dialplan"] == "mine" and res["total"] >= 1
    assert res["passed"] == res["total"] and res["ok"], res


def test_dialplan_tests_report_failures(api: Api) -> None:
    r = api.client.post("/api/v1/dialplans/trial-class-zh/tests", headers=api.h("designer"))
    assert r.status_code == 200 and r.json()["ok"]
    failing = (
        "dialplan: x\ncases:\n  - name: wrong\n    turns:\n      - callee: 好的\n"
        "    expect: {says: [绝对不会说的话]}\n"
    )
    res = api.client.post(
        "/api/v1/dialplans/trial-class-zh/tests", json={"tests_yaml": failing}, headers=api.h("designer")
    ).json()
    assert not res["ok"] and "绝对不会说的话" in res["cases"][0]["failures"][0]
    assert_problem(api.client.post("/api/v1/dialplans/nope/tests", headers=api.h("designer")), 404)


# ---- calls and stats


def seed_calls(api: Api, tmp_path: Path) -> None:
    rec = tmp_path / "rec.wav"
    rec.write_bytes(b"RIFF....WAVE")
    outcomes = [
        outcome(1, recording=str(rec)),
        outcome(2, grade="A", dialplan="trial-class-en", hour=1),
        outcome(3, Disposition.NO_ANSWER),
        outcome(4, Disposition.BUSY, campaign="autumn"),
        outcome(5, Disposition.FAILED),
    ]
    for o in outcomes:
        api.store.save_outcome_sync(o)


def test_calls_filters_masking_transcript_recording(api: Api, tmp_path: Path) -> None:
    seed_calls(api, tmp_path)
    all_calls = api.client.get("/api/v1/calls", headers=api.h("manager")).json()
    assert all_calls["total"] == 5
    f = api.client.get("/api/v1/calls?campaign=spring&disposition=answered", headers=api.h("manager")).json()
    assert {c["call_id"] for c in f["items"]} == {"call-1", "call-2"}
    assert api.client.get("/api/v1/calls?grade=A", headers=api.h("manager")).json()["total"] == 1
    t = api.client.get(
        "/api/v1/calls?since=2026-03-02T02:03:00Z&until=2026-03-02T03:00:00Z", headers=api.h("manager")
    ).json()
    assert {c["call_id"] for c in t["items"]} == {"call-3", "call-4", "call-5"}
    assert_problem(api.client.get("/api/v1/calls?disposition=nope", headers=api.h("manager")), 422)
    v = api.client.get("/api/v1/calls?limit=1&grade=A", headers=api.h("viewer")).json()
    assert v["items"][0]["phone"] == "138****0002"
    full = api.client.get("/api/v1/calls/call-1", headers=api.h("viewer")).json()
    assert full["to"] == "138****0001" and full["variables"]["phone"] == "138****0001"
    tr = api.client.get("/api/v1/calls/call-1/transcript", headers=api.h("viewer")).json()
    assert tr["turns"][1]["text"] == "好的，我的电话是139****5678" and tr["turns"][1]["intent"] == "affirm"
    tr_m = api.client.get("/api/v1/calls/call-1/transcript", headers=api.h("manager")).json()
    assert "13912345678" in tr_m["turns"][1]["text"]
    r = api.client.get("/api/v1/calls/call-1/recording", headers=api.h("manager"))
    assert r.status_code == 200 and r.content == b"RIFF....WAVE"
    assert_problem(api.client.get("/api/v1/calls/call-2/recording", headers=api.h("manager")), 404)
    assert_problem(api.client.get("/api/v1/calls/call-1/recording", headers=api.h("viewer")), 403)
    assert_problem(api.client.get("/api/v1/calls/none", headers=api.h("viewer")), 404)
    audit = api.client.get("/api/v1/audit?action=recording.download", headers=api.h("admin")).json()
    assert [(e["actor"], e["target"]) for e in audit["items"]] == [("manager-bot", "call-1")]


def test_stats(api: Api, tmp_path: Path) -> None:
    seed_calls(api, tmp_path)
    s = api.client.get("/api/v1/stats?campaign=spring", headers=api.h("viewer")).json()
    assert s["calls"] == 4 and s["attempts"] == 3 and s["answered"] == 2
    assert s["connect_rate"] == pytest.approx(2 / 3, abs=1e-4)
    assert s["dispositions"] == {"answered": 2, "no_answer": 1, "failed": 1}
    assert s["grades"] == {"B": 1, "A": 1, "E": 2}
    assert s["intents"] == {"affirm": 2}
    assert s["talk_time_s"] == {"total": 120.0, "avg_answered": 60.0}
    assert s["per_variant"]["trial-class-en"]["attempts"] == 1
    assert s["per_variant"]["trial-class-zh"] == {
        "attempts": 2,
        "answered": 1,
        "success": 1,
        "connect_rate": 0.5,
        "success_rate": 0.5,
        "p_value": None,
    }
    assert s["per_hour"]["02"]["attempts"] == 2 and s["per_hour"]["03"]["answered"] == 1
    assert s["per_caller_id"]["02161234567"]["attempts"] == 3


def test_metrics_prometheus_text(api: Api, tmp_path: Path) -> None:
    seed_calls(api, tmp_path)
    make_campaign(api)
    r = api.client.get("/metrics", headers=api.h("viewer"))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = r.text
    assert 'outcall_calls_total{campaign="spring",disposition="answered"} 2' in text
    assert 'outcall_calls_total{campaign="autumn",disposition="busy"} 1' in text
    assert 'outcall_campaigns{status="draft"} 1' in text
    assert "outcall_active_calls 0" in text
    assert "# TYPE outcall_calls_total counter" in text
    sample = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_]\w*="([^"\\]|\\.)*",?)*\})? -?[0-9.e+]+$')
    for line in text.strip().splitlines():
        assert line.startswith("# HELP ") or line.startswith("# TYPE ") or sample.match(line), line


def test_openapi_docs(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    for path in (
        "/api/v1/campaigns",
        "/api/v1/campaigns/{name}/contacts/upload",
        "/api/v1/dialplans/{name}",
        "/api/v1/calls/{call_id}/recording",
        "/api/v1/stats",
        "/api/v1/audit",
        "/metrics",
    ):
        assert path in spec["paths"], path
    assert api.client.get("/docs").status_code == 200


def test_crm_converted_stops_pending_attempts_and_is_audited(api: Api) -> None:
    make_campaign(api)
    for phone in ("13800000001", "13800000002"):
        api.client.post("/api/v1/campaigns/spring/contacts", json={"phone": phone}, headers=api.h("manager"))
    r = api.client.post("/api/v1/campaigns/spring/contacts/138 0000 0001/converted", headers=api.h("manager"))
    assert r.status_code == 200, r.text
    assert r.json() == {"campaign": "spring", "phone": "+8613800000001", "stopped": 1}
    again = api.client.post(
        "/api/v1/campaigns/spring/contacts/13800000001/converted", headers=api.h("manager")
    )
    assert again.json()["stopped"] == 0  # idempotent: nothing pending any more
    api.client.post("/api/v1/campaigns/spring/start", headers=api.h("manager"))
    import time

    claims = api.store.claim_sync("spring", 10, time.time() + 1)
    assert [c.contact.phone for c in claims] == ["+8613800000002"]  # the converted one is never dialed
    assert_problem(
        api.client.post("/api/v1/campaigns/spring/contacts/1/converted", headers=api.h("manager")), 422
    )
    assert_problem(
        api.client.post("/api/v1/campaigns/spring/contacts/13800000002/converted", headers=api.h("viewer")),
        403,
    )
    audit = api.client.get("/api/v1/audit?action=contact.converted", headers=api.h("admin")).json()
    assert audit["total"] == 2 and audit["items"][0]["detail"]["campaign"] == "spring"


def test_caller_id_health_endpoint(api: Api) -> None:
    r = api.client.get("/api/v1/caller-ids", headers=api.h("viewer"))
    assert r.status_code == 200 and isinstance(r.json(), dict)
    assert_problem(api.client.get("/api/v1/caller-ids"), 401)


def test_calls_export_csv_and_xlsx_masked_for_viewers(api: Api, tmp_path: Path) -> None:
    import io

    from python_calamine import CalamineWorkbook

    seed_calls(api, tmp_path)
    r = api.client.get("/api/v1/calls/export?campaign=spring&disposition=answered", headers=api.h("manager"))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    lines = r.content.decode("utf-8-sig").strip().splitlines()
    assert len(lines) == 3 and "13800000001" in r.text  # header + 2 answered calls, full numbers
    x = api.client.get("/api/v1/calls/export?format=xlsx&lang=en", headers=api.h("viewer"))
    assert x.status_code == 200 and x.headers["content-type"].startswith("application/vnd.openxml")
    rows = CalamineWorkbook.from_filelike(io.BytesIO(x.content)).get_sheet_by_index(0).to_python()
    assert len(rows) == 6 and "call_id" in [str(h) for h in rows[0]]
    assert not any("13800000001" in str(cell) for row in rows for cell in row)  # masked for viewers
    audit = api.client.get("/api/v1/audit?action=calls.export", headers=api.h("admin")).json()
    assert audit["total"] == 2


def test_daily_report_json_csv_markdown(api: Api, tmp_path: Path) -> None:
    make_campaign(api, budget=10)
    seed_calls(api, tmp_path)
    r = api.client.get("/api/v1/campaigns/spring/report?day=2026-03-02", headers=api.h("viewer"))
    assert r.status_code == 200, r.text
    rep = r.json()
    assert (rep["dialed"], rep["connected"], rep["budget"]) == (3, 2, 10.0)
    assert rep["dispositions"]["failed"] == 1 and rep["grades"]["A"] == 1
    other_day = api.client.get(
        "/api/v1/campaigns/spring/report?day=2026-03-03", headers=api.h("viewer")
    ).json()
    assert other_day["dialed"] == 0
    csv_text = api.client.get(
        "/api/v1/campaigns/spring/report?day=2026-03-02&format=csv", headers=api.h("viewer")
    )
    assert "summary,dialed,3" in csv_text.text
    md = api.client.get(
        "/api/v1/campaigns/spring/report?day=2026-03-02&format=md", headers=api.h("viewer")
    ).text
    assert md.startswith("### 外呼日报 · spring · 2026-03-02") and "接通 2 通" in md
    assert_problem(api.client.get("/api/v1/campaigns/nope/report", headers=api.h("viewer")), 404)
    up = api.client.patch("/api/v1/campaigns/spring", json={"budget": 20}, headers=api.h("manager"))
    assert up.status_code == 200 and up.json()["config"]["budget"] == 20


def test_dialplan_inbox_and_funnel(api: Api) -> None:
    from datetime import UTC, datetime, timedelta

    from engine.outcome import Turn

    now = datetime.now(UTC)
    for i, (path, unmatched) in enumerate([(["greet", "detail"], "那个什么来着"), (["greet"], None)]):
        o = outcome(100 + i).model_copy(
            update={
                "started_at": now - timedelta(minutes=5),
                "answered_at": now - timedelta(minutes=5),
                "ended_at": now,
                "turns": [Turn(speaker="bot", text=n, node=n, start_s=k) for k, n in enumerate(path)],
                "last_node": path[-1],
                "variables": {"no_match": [{"node": "greet", "text": unmatched, "intent": "other"}]}
                if unmatched
                else {},
            }
        )
        api.store.save_outcome_sync(o)
    inbox = api.client.get("/api/v1/dialplans/trial-class-zh/inbox", headers=api.h("designer")).json()
    assert [(r["node"], r["text"]) for r in inbox] == [("greet", "那个什么来着")]
    funnel = api.client.get("/api/v1/dialplans/trial-class-zh/funnel", headers=api.h("viewer")).json()
    assert [(f["node"], f["reached"], f["ended_here"]) for f in funnel] == [("greet", 2, 1), ("detail", 1, 1)]
    assert api.client.get("/api/v1/dialplans/nope/funnel", headers=api.h("viewer")).status_code == 404


def test_saving_an_edited_dialplan_makes_a_new_version(api: Api) -> None:
    h = {**api.h("designer"), "Content-Type": "application/yaml"}
    text = api.client.get("/api/v1/dialplans/trial-class-en", headers=h).json()["yaml"]
    edited = text.replace("Would you like to bring your child?", "Would you like to come along?", 1)
    assert edited != text
    r1 = api.client.put("/api/v1/dialplans/trial-class-en", content=edited.encode(), headers=h)
    assert r1.status_code == 200, r1.text
    assert r1.json()["version"] == "3"  # the shipped plan is "2": an edit is never saved under it
    again = api.client.put("/api/v1/dialplans/trial-class-en", content=r1.json()["yaml"].encode(), headers=h)
    assert again.json()["version"] == "3"  # unchanged text: same version
    r2 = api.client.put(
        "/api/v1/dialplans/trial-class-en",
        content=again.json()["yaml"].replace("come along", "join us").encode(),
        headers=h,
    )
    assert r2.json()["version"] == "4"
    (kept,) = (api.dialplans_dir / ".history" / "trial-class-en").glob("*.yaml")  # the version replaced
    assert 'version: "3"' in kept.read_text(encoding="utf-8")
