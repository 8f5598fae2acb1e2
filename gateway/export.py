"""Outcome export: CSV (UTF-8 with BOM, so Excel opens 中文 correctly) or XLSX, Chinese or English headers,
phone numbers masked (138****5678) unless the caller's role allows the full number."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

from engine.outcome import CallOutcome

Lang = Literal["zh", "en"]
Format = Literal["csv", "xlsx"]


def mask_phone(phone: str) -> str:
    """Keep the prefix and the last 4 digits: +8613812345678 -> +86138****5678, 13812345678 ->
    138****5678; SIP URIs mask their user part the same way."""
    if phone.startswith("sip:"):
        user, at, host = phone[4:].partition("@")
        return "sip:" + mask_phone(user) + at + host
    digits = [i for i, c in enumerate(phone) if c.isdigit()]
    if len(digits) <= 4:
        return "*" * len(phone)
    keep_tail = set(digits[-4:])
    head = 3 + (2 if phone.startswith("+86") else 0)
    keep_head = set(digits[: min(head, len(digits) - 4 - 1)]) if len(digits) > 8 else set()
    return "".join(
        c if (i in keep_tail or i in keep_head or not c.isdigit()) else "*" for i, c in enumerate(phone)
    )


def _ts(v: Any) -> str:
    return "" if v is None else v.isoformat(timespec="seconds")


COLUMNS: list[tuple[str, str, Callable[[CallOutcome], Any]]] = [
    ("outcome_id", "结果ID", lambda o: o.outcome_id),
    ("call_id", "通话ID", lambda o: o.call_id),
    ("campaign", "任务", lambda o: o.campaign or ""),
    ("phone", "号码", lambda o: o.to),
    ("attempt", "第几次呼叫", lambda o: o.attempt),
    ("carrier_status", "呼叫状态", lambda o: o.carrier_status.value),
    ("disposition", "结果", lambda o: o.disposition.value),
    ("grade", "意向等级", lambda o: o.grade),
    ("grade_rule", "定级规则", lambda o: o.grade_rule or ""),
    ("sip_code", "SIP码", lambda o: "" if o.sip_code is None else o.sip_code),
    ("q850_cause", "Q.850原因", lambda o: "" if o.q850_cause is None else o.q850_cause),
    ("started_at", "开始时间", lambda o: _ts(o.started_at)),
    ("answered_at", "接通时间", lambda o: _ts(o.answered_at)),
    ("ended_at", "结束时间", lambda o: _ts(o.ended_at)),
    ("duration_s", "总时长(秒)", lambda o: o.duration_s),
    ("talk_s", "通话时长(秒)", lambda o: o.talk_s),
    ("hangup_by", "挂断方", lambda o: o.hangup_by or ""),
    ("dialplan", "话术", lambda o: o.dialplan or ""),
    ("last_node", "最后节点", lambda o: o.last_node or ""),
    ("tags", "标签", lambda o: ",".join(o.tags)),
    ("variables", "采集变量", lambda o: json.dumps(o.variables, ensure_ascii=False) if o.variables else ""),
    ("turns", "对话轮数", lambda o: len(o.turns)),
    ("reason", "原因", lambda o: o.reason or ""),
]


_VARIABLES = [k for k, _z, _g in COLUMNS].index("variables")
PHONE_KEYS = frozenset({"phone", "to", "phone_number", "mobile", "callback_number"})


def headers(lang: Lang) -> list[str]:
    return [en if lang == "en" else zh for en, zh, _ in COLUMNS]


def row(o: CallOutcome, *, unmasked: bool = False) -> list[Any]:
    out = [get(o) for _k, _z, get in COLUMNS]
    if not unmasked:
        out[3] = mask_phone(str(out[3]))
        if o.variables:  # captured variables carry the number too (`phone`, a callback number)
            hidden = {
                k: mask_phone(v) if k in PHONE_KEYS and isinstance(v, str) else v
                for k, v in o.variables.items()
            }
            out[_VARIABLES] = json.dumps(hidden, ensure_ascii=False)
    return out


def export_outcomes(
    outcomes: Iterable[CallOutcome],
    path: Path,
    fmt: Format,
    *,
    lang: Lang = "zh",
    unmasked: bool = False,
    sheet: str = "outcomes",
) -> int:
    """Write outcomes to ``path``; returns how many. Blocking: run it in a thread from async code."""
    n = 0
    if fmt == "csv":
        with path.open("w", encoding="utf-8-sig", newline="") as f:
            w = csv.writer(f)
            w.writerow(headers(lang))
            for o in outcomes:
                w.writerow(row(o, unmasked=unmasked))
                n += 1
        return n
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws = wb.create_sheet(sheet[:31] or "outcomes")
    ws.append(headers(lang))
    for o in outcomes:
        ws.append(row(o, unmasked=unmasked))
        n += 1
    wb.save(path)
    return n
