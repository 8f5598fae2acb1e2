"""Call-list import: CSV (UTF-8, UTF-8 with BOM, GBK/GB18030) and XLSX (python-calamine), streamed.

Columns are mapped by header (phone, name, time zone, consent; every other column becomes a dialplan
variable) or by an explicit mapping. Numbers are normalised to E.164 with `phonenumbers` (default region
CN: mobiles, +86/0086, spaces, dashes, landlines with area codes); plain Chinese mobiles take a fast
path. Duplicates within the list and against the campaign are counted, bad rows are reported with their
row number (the spreadsheet's, header = row 1) and reason, and every good row is imported.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import phonenumbers

from engine.campaign.calendar import zone
from engine.campaign.contacts import Contact, assign_variant
from engine.errors import ConfigError
from gateway.store.campaigns import CampaignStore

PHONE_HEADERS = (
    "phone",
    "mobile",
    "tel",
    "telephone",
    "number",
    "phone_number",
    "手机",
    "手机号",
    "手机号码",
    "电话",
    "电话号码",
    "号码",
    "联系电话",
)
NAME_HEADERS = ("name", "full_name", "姓名", "名字", "客户姓名", "客户")
TZ_HEADERS = ("timezone", "time_zone", "tz", "时区")
CONSENT_HEADERS = ("consent", "opt_in", "同意", "授权", "是否同意")
TRUE = frozenset({"1", "y", "yes", "true", "t", "是", "同意", "已同意", "有"})
FALSE = frozenset({"0", "n", "no", "false", "f", "否", "不同意", "无", ""})
_MOBILE = re.compile(r"^(?:\+?86|0086)?(1[3-9]\d{9})$")
_STRIP = str.maketrans("", "", " -().\u3000\t")
MAX_LISTED_INVALID = 10_000


@dataclass
class ImportReport:
    imported: int = 0
    duplicates: int = 0
    invalid: list[dict[str, Any]] = field(default_factory=list)
    invalid_count: int = 0
    rows: int = 0

    def bad(self, row: int, reason: str) -> None:
        self.invalid_count += 1
        if len(self.invalid) < MAX_LISTED_INVALID:
            self.invalid.append({"row": row, "reason": reason})

    def as_dict(self) -> dict[str, Any]:
        return {
            "imported": self.imported,
            "duplicates": self.duplicates,
            "invalid": self.invalid,
            "invalid_count": self.invalid_count,
            "rows": self.rows,
        }


def detect_encoding(sample: bytes) -> str:
    """utf-8-sig for a BOM, utf-8 when the sample decodes, else gb18030 (a superset of GBK/GB2312)."""
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        return "gb18030"


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))  # spreadsheets store phone numbers as floats
    return str(v).strip()


def iter_rows(path: Path) -> Iterator[list[str]]:
    """Rows of the first sheet / the CSV, header first, as strings."""
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm", ".xls", ".ods"):
        from python_calamine import CalamineWorkbook

        try:
            wb = CalamineWorkbook.from_path(str(path))
            sheet = wb.get_sheet_by_index(0)
        except Exception as e:  # calamine raises its own error types
            raise ConfigError(f"{path}: cannot read spreadsheet: {e}", hint="save it as .xlsx or .csv") from e
        for r in sheet.iter_rows():
            yield [_cell(v) for v in r]
        return
    try:
        with path.open("rb") as fb:
            enc = detect_encoding(fb.read(256 * 1024))
        with path.open("r", encoding=enc, errors="strict", newline="") as f:
            sample = f.read(64 * 1024)
            try:
                dialect: Any = csv.Sniffer().sniff(sample, delimiters=",;\t|")
            except csv.Error:
                dialect = csv.excel
            f.seek(0)
            for line in csv.reader(f, dialect):
                yield [c.strip() for c in line]
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{path}: text is neither UTF-8 nor GBK ({e})", hint="re-save the file as UTF-8 CSV"
        ) from e
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e}") from e


def map_columns(header: list[str], mapping: Mapping[str, str] | None = None) -> dict[str, int]:
    """Field -> column index. `mapping` (field -> header) overrides the automatic guesses."""
    norm = [h.strip().lower().lstrip("\ufeff") for h in header]
    out: dict[str, int] = {}
    for fld, names in (
        ("phone", PHONE_HEADERS),
        ("name", NAME_HEADERS),
        ("timezone", TZ_HEADERS),
        ("consent", CONSENT_HEADERS),
    ):
        for i, h in enumerate(norm):
            if h in names:
                out[fld] = i
                break
    for fld, col in (mapping or {}).items():
        if col.lower() not in norm:
            raise ConfigError(f"column {col!r} (for {fld}) is not in the header", hint=f"header: {header}")
        out[fld] = norm.index(col.lower())
    if "phone" not in out:
        raise ConfigError(
            f"no phone column in header {header}",
            hint="name a column phone/手机号/电话, or map it: --map phone=COLUMN",
        )
    return out


def normalise_phone(raw: str, region: str = "CN") -> tuple[str | None, str]:
    """(E.164, '') or (None, reason)."""
    s = raw.translate(_STRIP)
    if not s:
        return None, "empty phone number"
    m = _MOBILE.match(s)
    if m and region == "CN":
        return "+86" + m.group(1), ""
    try:
        n = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as e:
        return None, f"not a phone number: {raw!r} ({e})"
    if not phonenumbers.is_valid_number(n):
        return None, f"invalid phone number: {raw!r}"
    return phonenumbers.format_number(n, phonenumbers.PhoneNumberFormat.E164), ""


def parse_consent(v: str) -> bool | None:
    s = v.strip().lower()
    if s in TRUE:
        return True
    if s in FALSE:
        return None if s == "" else False
    raise ValueError(f"consent {v!r} is not yes/no (是/否, 1/0)")


def import_contacts(
    store: CampaignStore,
    campaign: str,
    path: str | Path,
    *,
    mapping: Mapping[str, str] | None = None,
    region: str = "CN",
    batch: int = 5000,
    now: float | None = None,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Stream a file into a campaign. Blocking: call it in a worker thread from async code."""
    config, _status = store.get_campaign_sync(campaign)
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"no such file: {p}")
    ts = now if now is not None else datetime.now(UTC).timestamp()
    rows = iter_rows(p)
    header = next(rows, None)
    if header is None:
        raise ConfigError(f"{p} is empty", hint="the first row must name the columns (phone, name, ...)")
    cols = map_columns(header, mapping)
    var_cols = [(i, h.strip().lstrip("\ufeff")) for i, h in enumerate(header) if i not in cols.values() and h]
    rep = ImportReport()
    seen: set[str] = set()
    pending: list[Contact] = []
    tz_ok: dict[str, bool] = {}

    def flush() -> None:
        ins, dup = store.add_contacts_sync(campaign, pending, now=ts)
        rep.imported += ins
        rep.duplicates += dup
        pending.clear()

    ip, iname, itz, icons = cols["phone"], cols.get("name"), cols.get("timezone"), cols.get("consent")
    for rowno, r in enumerate(rows, start=2):
        if not any(r):
            continue
        rep.rows += 1
        raw = r[ip] if ip < len(r) else ""
        phone, why = normalise_phone(raw, region)
        if phone is None:
            rep.bad(rowno, why)
            continue
        tz = r[itz] if itz is not None and itz < len(r) and r[itz] else None
        if tz is not None:
            if tz not in tz_ok:
                try:
                    zone(tz)
                    tz_ok[tz] = True
                except ConfigError:
                    tz_ok[tz] = False
            if not tz_ok[tz]:
                rep.bad(rowno, f"unknown time zone {tz!r}")
                continue
        try:
            consent = parse_consent(r[icons]) if icons is not None and icons < len(r) else None
        except ValueError as e:
            rep.bad(rowno, str(e))
            continue
        if phone in seen:
            rep.duplicates += 1
            continue
        seen.add(phone)
        variables = {h: r[i] for i, h in var_cols if i < len(r) and r[i] != ""}
        pending.append(
            Contact.model_construct(
                campaign=campaign,
                phone=phone,
                name=(r[iname] or None) if iname is not None and iname < len(r) else None,
                timezone=tz,
                consent=consent,
                variables=variables,
                priority=0,
                variant=assign_variant(phone, config.variants) if config.variants else None,
                id=None,
                attempts=0,
                first_attempt_at=None,
            )
        )
        if len(pending) >= batch:
            flush()
            if progress is not None:
                progress(rep.rows)
    if pending:
        flush()
    if progress is not None:
        progress(rep.rows)
    return rep
