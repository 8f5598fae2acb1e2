"""/api/v1/dialplans: list, get, PUT (validated; errors as file:line:col), run conversation tests."""

from __future__ import annotations

import asyncio
import json
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from fastapi import APIRouter, Request

from engine.errors import DialplanError
from engine.reporting import FunnelStep, daily_report
from gateway.store.reports import CallFilter
from outcall.api.deps import Context, CtxDep, Designer, Page, Paging, Reader, page
from outcall.api.problems import Problem
from outcall.api.schemas import (
    DialplanPublic,
    DialplanSummary,
    DialplanTestResult,
    DialplanTestRun,
    DialplanValidation,
    SimulationResult,
    SimulationRun,
)
from outcall.dialplan_library import bump_version
from outcall.dialplan_tools import (
    Simulator,
    classifier_id,
    graph_data,
    inbox_rows,
    run_test_file,
    runtime_classifier,
    tests_dir,
)

router = APIRouter(prefix="/api/v1/dialplans", tags=["dialplans"])

MAX_YAML = 1 << 20
_YAML_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/yaml": {"schema": {"type": "string"}},
            "text/plain": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "object", "properties": {"yaml": {"type": "string"}}}},
        },
    }
}


def _summary(c: Context, name: str, source: str) -> dict[str, Any]:
    try:
        plan = c.library.get(name)
    except DialplanError as e:
        return {"name": name, "source": source, "error": str(e)}
    return {"name": name, "source": source, "version": plan.version, "language": plan.language}


@router.get("", response_model=Page[DialplanSummary])
def list_dialplans(request: Request, c: CtxDep, who: Reader, p: Paging) -> Page[Any]:
    names = c.library.names()
    items = [_summary(c, n, s) for n, s in names[p.offset : p.offset + p.limit]]
    return page(request, items, len(names), p)


def _resolve(c: Context, name: str) -> Path:
    try:
        return c.library.resolve(name)
    except DialplanError as e:
        raise Problem(404, str(e.args[0]), kind="not-found", hint=e.hint) from e


@router.get("/{name}", response_model=DialplanPublic)
def read_dialplan(name: str, c: CtxDep, who: Reader) -> dict[str, Any]:
    path = _resolve(c, name)
    text = path.read_text(encoding="utf-8")
    _plan, problems = c.library.check(name, text)
    return {
        **_summary(c, name, c.library.source(name)),
        "yaml": text,
        "warnings": [str(p) for p in problems if not p.is_error],
    }


@router.put("/{name}", response_model=DialplanPublic, openapi_extra=_YAML_BODY)
async def put_dialplan(name: str, request: Request, c: CtxDep, who: Designer) -> dict[str, Any]:
    """Save a dialplan (YAML body). Invalid plans are refused with 422 problem+json whose `errors`
    list `NAME.yaml:line:col: message (hint: ...)` like `outcall dialplan validate`."""
    raw = await request.body()
    if len(raw) > MAX_YAML:
        raise Problem(413, f"dialplan larger than {MAX_YAML} bytes", kind="too-large")
    try:
        text = raw.decode("utf-8")
        if request.headers.get("content-type", "").startswith("application/json"):
            text = str(json.loads(text)["yaml"])
    except (UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        raise Problem(400, f'body must be UTF-8 YAML (or JSON {{"yaml": ...}}): {e}', kind="bad-body") from e
    try:
        _plan, problems = await asyncio.to_thread(c.library.check, name, text)
    except DialplanError as e:
        raise Problem(422, str(e.args[0]), kind="invalid-dialplan", errors=[str(e)]) from e
    errors = [str(p) for p in problems if p.is_error]
    if errors:
        raise Problem(
            422,
            f"dialplan {name!r} has {len(errors)} error(s); nothing was saved",
            kind="invalid-dialplan",
            title="Dialplan validation failed",
            errors=errors,
            warnings=[str(p) for p in problems if not p.is_error],
        )
    text = await asyncio.to_thread(_next_version, c, name, text)
    try:
        await asyncio.to_thread(c.library.save, name, text)
    except OSError as e:
        raise Problem(
            500,
            f"cannot save dialplan {name!r} in {c.library.custom_dir}: {e}",
            kind="storage",
            hint="set OUTCALL_DIALPLANS_DIR to a writable folder (e.g. /data/dialplans in Docker)",
        ) from e
    await asyncio.to_thread(
        c.auth.audit, who.actor, who.role.value, "dialplan.put", name, {"bytes": len(raw)}
    )
    return await asyncio.to_thread(read_dialplan, name, c, who)


def _next_version(c: Context, name: str, text: str) -> str:
    """Save = a new version: an edited plan that still carries the version in use gets the next one, so
    outcomes (name + version) always tell which text a call ran."""
    try:
        path = c.library.resolve(name)
        current = c.library.get(name)
    except DialplanError:
        return text  # a new plan
    if path.read_text(encoding="utf-8") == text:
        return text
    plan, _ = c.library.check(name, text)
    if plan is None or plan.version != current.version:
        return text
    return bump_version(text, current.version)[0]


def _run_tests(c: Context, name: str, body: DialplanTestRun | None) -> dict[str, Any]:
    plan_path = _resolve(c, name)
    if body is not None and body.tests_yaml is not None:
        try:
            data = yaml.safe_load(body.tests_yaml)
        except yaml.YAMLError as e:
            raise Problem(422, f"tests_yaml: YAML syntax: {e}", kind="invalid-tests") from e
    else:
        shipped = tests_dir() / f"{name}.yaml"
        if not shipped.is_file():
            raise Problem(
                404,
                f"no conversation tests for {name!r}",
                kind="not-found",
                hint="send tests_yaml in the body (dialplans/tests format)",
            )
        data = yaml.safe_load(shipped.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise Problem(422, "tests must be a YAML mapping with `cases:`", kind="invalid-tests")
    data["dialplan"] = str(plan_path.resolve())  # run against the plan as saved (custom or shipped)
    with tempfile.TemporaryDirectory(prefix="outcall-tests-") as d:
        path = Path(d) / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        try:
            res = run_test_file(path)
        except DialplanError as e:
            raise Problem(422, str(e.args[0]).replace(str(path), "tests_yaml"), kind="invalid-tests") from e
    cases = [
        {
            "name": r.name,
            "ok": r.ok,
            "failures": r.failures,
            "turns": [{"turn": t[0], "intent": t[1], "node": t[2]} for t in r.turns],
        }
        for r in res.cases
    ]
    return {
        "dialplan": res.plan,
        "version": res.version,
        "classifier": res.classifier,
        "ok": res.ok,
        "passed": sum(r.ok for r in res.cases),
        "total": len(res.cases),
        "cases": cases,
        "notes": res.notes,
    }


@router.post("/{name}/tests", response_model=DialplanTestResult)
def run_dialplan_tests(
    name: str, c: CtxDep, who: Designer, body: DialplanTestRun | None = None
) -> dict[str, Any]:
    """Run conversation tests against the saved plan (no audio) with the classifier the tests name
    (`classifier: rules-v1` or `e5-lora`; none named: the one calls use)."""
    return _run_tests(c, name, body)


async def _yaml_body(request: Request) -> str:
    raw = await request.body()
    if len(raw) > MAX_YAML:
        raise Problem(413, f"dialplan larger than {MAX_YAML} bytes", kind="too-large")
    try:
        text = raw.decode("utf-8")
        if request.headers.get("content-type", "").startswith("application/json"):
            text = str(json.loads(text)["yaml"])
    except (UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        raise Problem(400, f'body must be UTF-8 YAML (or JSON {{"yaml": ...}}): {e}', kind="bad-body") from e
    return text


@router.post("/{name}/validate", response_model=DialplanValidation, openapi_extra=_YAML_BODY)
async def validate_dialplan(name: str, request: Request, c: CtxDep, who: Reader) -> dict[str, Any]:
    """Check a YAML text as if saved under NAME, without saving: each problem with its line and column
    (the editor marks them as you type)."""
    text = await _yaml_body(request)
    try:
        plan, problems = await asyncio.to_thread(c.library.check, name, text)
    except DialplanError as e:
        return {"ok": False, "problems": [{"line": 1, "col": 1, "message": str(e), "severity": "error"}]}
    ok = not any(p.is_error for p in problems)
    return {
        "ok": ok,
        "graph": graph_data(plan) if ok and plan is not None else None,
        "problems": [
            {
                "line": p.line,
                "col": p.col,
                "message": p.message + (f" (hint: {p.hint})" if p.hint else ""),
                "severity": p.severity,
            }
            for p in problems
        ],
    }


@router.post("/{name}/simulate", response_model=SimulationResult)
def simulate_dialplan(name: str, body: SimulationRun, c: CtxDep, who: Reader) -> dict[str, Any]:
    """Walk the saved plan with the real runner and the classifier calls use: each callee turn is text,
    `/silence`, `/dtmf N` or `/interrupt TEXT`. Returns the whole transcript (the console's chat panel
    replays the conversation so far on every turn, so the server keeps no state)."""
    _resolve(c, name)
    try:
        plan = c.library.get(name)
    except DialplanError as e:
        raise Problem(422, str(e.args[0]), kind="invalid-dialplan") from e
    sim = Simulator(plan.with_variant(body.variant), runtime_classifier(), variables=body.variables)
    for turn in body.turns:
        t = turn.strip()
        if t == "/silence":
            sim.silence()
        elif t.startswith("/dtmf"):
            sim.dtmf(t[5:].strip() or "1")
        elif t.startswith("/interrupt"):
            sim.interrupt(t[10:].strip())
        else:
            sim.say(t)
    grade, rule = sim.grade()
    st = sim.runner.state
    return {
        "lines": [
            {
                "speaker": x.speaker,
                "text": x.text,
                "node": x.node,
                "kind": x.kind,
                "intent": x.intent,
                "confidence": x.confidence,
                "emotion": x.emotion,
                "interrupted": x.interrupted,
            }
            for x in sim.lines
        ],
        "node": st.node,
        "ended": sim.ended,
        "disposition": sim.disposition.value if sim.disposition else None,
        "tags": list(st.tags),
        "variables": {k: v for k, v in st.variables.items() if isinstance(v, str | int | float | bool)},
        "grade": grade,
        "grade_rule": rule,
        "classifier": classifier_id(sim.classifier),
    }


def _recent(c: Context, name: str, days: int) -> Any:
    since = datetime.now(UTC) - timedelta(days=days)
    return c.reports.iter_outcomes(CallFilter(dialplan=name, since=since))


@router.get("/{name}/inbox")
def dialplan_inbox(
    name: str, c: CtxDep, who: Reader, days: int = 30, limit: int = 200
) -> list[dict[str, Any]]:
    """Replies no branch understood in the last `days`, newest first (the designers' inbox; the console
    turns one into an intent example with one click)."""
    _resolve(c, name)
    rows = inbox_rows(_recent(c, name, days), name)
    rows.sort(key=lambda r: str(r["at"]), reverse=True)
    out: list[dict[str, Any]] = who.view(rows[: max(1, min(limit, 2000))])
    return out


@router.get("/{name}/funnel", response_model=list[FunnelStep])
def dialplan_funnel(name: str, c: CtxDep, who: Reader, days: int = 30) -> list[FunnelStep]:
    """Per node: answered calls that reached it and calls that ended there (drop-off), last `days`."""
    _resolve(c, name)
    r = daily_report(_recent(c, name, days), campaign="", day=datetime.now(UTC).date(), timezone="UTC")
    return r.funnel
