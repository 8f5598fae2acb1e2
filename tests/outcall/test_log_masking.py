"""Callee numbers never reach the logs in clear; dates, IPs, ports and hex ids stay readable."""

from __future__ import annotations

import io
import json
import logging

import pytest

from outcall import logging as olog
from outcall.masking import mask_text


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("call to 13812345678 not placed", "call to 138****5678 not placed"),
        ("INVITE sip:+8613812345678@127.0.0.1:5060", "INVITE sip:138****5678@127.0.0.1:5060"),
        ("BYE sip:13812345678@10.0.0.1 SIP/2.0", "BYE sip:138****5678@10.0.0.1 SIP/2.0"),
        ("landline 010-6212 3456", "landline 010****3456"),
        ("at 2026-01-05 10:00 from 192.168.100.200:5060", "at 2026-01-05 10:00 from 192.168.100.200:5060"),
        ("call a1234567890b", "call a1234567890b"),
    ],
)
def test_mask_text(text: str, want: str) -> None:
    assert mask_text(text) == want


def test_log_records_are_masked_in_message_args_and_phone_extras() -> None:
    stream = io.StringIO()
    olog.setup("INFO", json_lines=True, mask_phones=True)
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    logging.getLogger("t").info(
        "dialing %s", "+8613912345678", extra={"call_id": "c1", "phone": "13912345678"}
    )
    rec = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert rec["msg"] == "dialing 139****5678" and rec["phone"] == "139****5678" and rec["call_id"] == "c1"
    assert "13912345678" not in stream.getvalue()


def test_masking_can_be_turned_off() -> None:
    stream = io.StringIO()
    olog.setup("INFO", json_lines=True, mask_phones=False)
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    logging.getLogger("t").info("dialing %s", "13912345678")
    assert "13912345678" in stream.getvalue()
