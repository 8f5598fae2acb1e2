"""Outcome export: CSV with a UTF-8 BOM (Excel), XLSX, zh/en headers, numbers masked unless allowed."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from openpyxl import load_workbook

from engine.dispositions import Disposition
from engine.outcome import CallOutcome
from gateway.export import export_outcomes, headers, mask_phone
from gateway.store.sqlite import SqliteStore

T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)


def outcome(i: int, campaign: str = "spring") -> CallOutcome:
    return CallOutcome(
        call_id=f"call-{i}",
        campaign=campaign,
        to=f"+86138{i:08d}",
        disposition=Disposition.ANSWERED,
        grade="A",
        started_at=T0 + timedelta(seconds=i),
        answered_at=T0 + timedelta(seconds=i + 2),
        ended_at=T0 + timedelta(seconds=i + 40),
        variables={"回电时间": "明天上午"},
        tags=["意向", "回访"],
    )


@pytest.mark.parametrize(
    ("phone", "masked"),
    [
        ("+8613812345678", "+86138****5678"),
        ("13812345678", "138****5678"),
        ("010-12345678", "010-****5678"),
        ("sip:1001@127.0.0.1", "sip:****@127.0.0.1"),
        ("1234", "****"),
    ],
)
def test_mask_phone(phone: str, masked: str) -> None:
    assert mask_phone(phone) == masked


def test_csv_has_bom_chinese_headers_and_masked_numbers(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "o.db")
    for i in range(3):
        store.save_outcome_sync(outcome(i, "spring" if i < 2 else "autumn"))
    out = tmp_path / "o.csv"
    n = export_outcomes(store.iter_outcomes_sync("spring", batch=1), out, "csv")
    assert n == 2
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf"), "Excel needs the BOM to read UTF-8"
    rows = list(csv.reader(out.open(encoding="utf-8-sig")))
    assert rows[0] == headers("zh") and rows[0][3] == "号码"
    assert [r[3] for r in rows[1:]] == ["+86138****0000", "+86138****0001"]
    assert "13800000001" not in raw.decode("utf-8-sig")
    assert rows[1][5] == "已接通" and "明天上午" in rows[1][20] and rows[1][19] == "意向,回访"


def test_unmasked_xlsx_with_english_headers(tmp_path: Path) -> None:
    out = tmp_path / "o.xlsx"
    assert export_outcomes([outcome(5)], out, "xlsx", lang="en", unmasked=True) == 1
    ws = load_workbook(out).active
    assert ws is not None
    values = list(ws.values)
    assert list(values[0]) == headers("en") and values[0][3] == "phone"
    assert values[1][3] == "+8613800000005"
    assert values[1][15] == 38.0  # talk seconds stay numbers
