"""Import of messy call lists: encodings, spreadsheets, bad rows, duplicates."""

from __future__ import annotations

from pathlib import Path

import openpyxl
import pytest

from engine.campaign.scheduler import CampaignConfig
from engine.errors import ConfigError
from gateway.store.sqlite import SqliteStore
from outcall.contacts_import import detect_encoding, import_contacts, normalise_phone

ROWS = [
    ["手机号", "姓名", "时区", "同意", "课程"],
    ["138 1234 5678", "张三", "", "是", "数学"],
    ["+86-139-0000-0001", "李四", "Asia/Shanghai", "1", "英语"],
    ["0086 13700000002", "王五", "", "否", ""],
    ["010-62345678", "赵六", "", "", "物理"],
    ["12345", "坏号", "", "", ""],
    ["", "没号码", "", "", ""],
    ["13812345678", "张三重复", "", "", ""],
    ["13600000003", "时区错", "Mars/Base", "", ""],
    ["13600000004", "同意错", "", "maybe", ""],
]


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    s = SqliteStore(tmp_path / "o.db")
    s.create_campaign_sync(CampaignConfig(name="c", dialplan="trial-class-zh"))
    return s


def write_csv(path: Path, rows: list[list[str]], encoding: str) -> Path:
    text = "\r\n".join(",".join(r) for r in rows) + "\r\n"
    path.write_bytes(text.encode(encoding))
    return path


def check(rep: dict[str, object], store: SqliteStore) -> None:
    assert rep["imported"] == 4
    assert rep["duplicates"] == 1
    assert [(x["row"], x["reason"].split(":")[0]) for x in rep["invalid"]] == [  # type: ignore[attr-defined]
        (6, "invalid phone number"),
        (7, "empty phone number"),
        (9, "unknown time zone 'Mars/Base'"),
        (10, "consent 'maybe' is not yes/no (是/否, 1/0)"),
    ]
    rows = {r["phone"]: r for r in store.iter_contacts_sync("c")}
    assert set(rows) == {"+8613812345678", "+8613900000001", "+8613700000002", "+861062345678"}
    z = rows["+8613812345678"]
    assert z["name"] == "张三" and z["consent"] is True and z["variables"] == {"课程": "数学"}
    assert rows["+8613700000002"]["consent"] is False
    assert rows["+861062345678"]["consent"] is None
    assert rows["+8613900000001"]["timezone"] == "Asia/Shanghai"


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk"])
def test_csv_encodings(tmp_path: Path, store: SqliteStore, encoding: str) -> None:
    f = write_csv(tmp_path / "list.csv", ROWS, encoding)
    check(import_contacts(store, "c", f).as_dict(), store)


def test_xlsx_with_numeric_phones(tmp_path: Path, store: SqliteStore) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    for r in ROWS:
        ws.append([int(r[0]) if r[0].isdigit() and len(r[0]) == 11 else r[0], *r[1:]])
    f = tmp_path / "list.xlsx"
    wb.save(f)
    check(import_contacts(store, "c", f).as_dict(), store)


def test_reimport_counts_duplicates_against_campaign(tmp_path: Path, store: SqliteStore) -> None:
    f = write_csv(tmp_path / "list.csv", ROWS, "utf-8")
    import_contacts(store, "c", f)
    rep = import_contacts(store, "c", f)
    assert rep.imported == 0 and rep.duplicates == 5


def test_semicolon_csv_and_explicit_mapping(tmp_path: Path, store: SqliteStore) -> None:
    f = tmp_path / "x.csv"
    f.write_text("Kunde;Nummer\nA;13800000009\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="no phone column"):
        import_contacts(store, "c", f)
    rep = import_contacts(store, "c", f, mapping={"phone": "Nummer", "name": "Kunde"})
    assert rep.imported == 1
    assert next(iter(store.iter_contacts_sync("c")))["name"] == "A"


def test_detect_encoding() -> None:
    assert detect_encoding("手机号".encode("gbk")) == "gb18030"
    assert detect_encoding(b"\xef\xbb\xbfphone") == "utf-8-sig"
    assert detect_encoding("手机号".encode()[:-1]) == "utf-8"  # a multibyte char cut by the sample


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("13812345678", "+8613812345678"),
        ("(021) 6234-5678", "+862162345678"),
        ("0755 8765 4321", "+8675587654321"),
        ("+1 650 253 0000", "+16502530000"),
        ("110", None),
    ],
)
def test_normalise_phone(raw: str, e164: str | None) -> None:
    assert normalise_phone(raw)[0] == e164
