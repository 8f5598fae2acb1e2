"""Structured logs: one JSON object per line (or readable text on a terminal), call_id carried along."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from outcall.masking import PHONE_KEYS, mask_phone, mask_text

_RESERVED = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class MaskPhones(logging.Filter):
    """Masks phone numbers in every record's message and phone-like extras (138****5678), so logs that
    leave the box (shipped to ELK, pasted into tickets) carry no callee numbers."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        masked = mask_text(msg)
        if masked != msg:
            record.msg, record.args = masked, None
        for k in PHONE_KEYS:
            v = record.__dict__.get(k)
            if isinstance(v, str):
                record.__dict__[k] = mask_phone(v)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in record.__dict__.items():
            if k not in _RESERVED and not k.startswith("_"):
                data[k] = v
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        call_id = getattr(record, "call_id", None)
        msg = record.getMessage()
        prefix = f"[{call_id}] " if call_id and str(call_id) not in msg else ""
        base = f"{record.levelname[0]} {record.name}: {prefix}{msg}"
        if record.exc_info:
            base += "\n" + self.formatException(record.exc_info)
        return base


def setup(level: str = "INFO", *, json_lines: bool | None = None, mask_phones: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if mask_phones:
        handler.addFilter(MaskPhones())
    use_json = (not sys.stderr.isatty()) if json_lines is None else json_lines
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
