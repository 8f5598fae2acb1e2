from datetime import UTC, datetime, timedelta

import pytest

from engine.dispositions import Disposition
from engine.errors import ConfigError
from engine.outcome import CallOutcome, outcome_json_schema
from engine.trunk import DialRules, Trunk


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+86 138-1234-5678", "13812345678"),
        ("008613812345678", "13812345678"),
        ("8613812345678", "13812345678"),
        ("(010) 6552-9988", "01065529988"),
        ("+86 10 6552 9988", "01065529988"),
    ],
)
def test_dial_rules_normalise(raw: str, expected: str) -> None:
    assert DialRules().apply(raw) == expected


def test_dial_rules_prefixes() -> None:
    r = DialRules(tech_prefix="9", mobile_prefix_zero=True, local_area_code="010")
    assert r.apply("13812345678", mobile_area_code="021") == "9013812345678"
    assert r.apply("13812345678", mobile_area_code="010") == "913812345678"
    assert r.apply("010 6552 9988") == "965529988"
    with pytest.raises(ConfigError, match="not digits"):
        r.apply("138-ABC")


def test_trunk_request_uri() -> None:
    t = Trunk(proxy="127.0.0.1:5070")
    assert t.request_uri("+8613812345678") == "sip:13812345678@127.0.0.1:5070"
    assert t.request_uri("sip:callee@127.0.0.1:5090") == "sip:callee@127.0.0.1:5090"
    with pytest.raises(ConfigError, match="no proxy"):
        Trunk().request_uri("13812345678")


def test_outcome_computed_fields_and_schema() -> None:
    t0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    o = CallOutcome(
        call_id="c1",
        to="13812345678",
        disposition=Disposition.ANSWERED,
        started_at=t0,
        answered_at=t0 + timedelta(seconds=3),
        ended_at=t0 + timedelta(seconds=33),
    )
    d = o.model_dump(mode="json")
    assert d["carrier_status"] == "已接通"
    assert d["duration_s"] == 33.0 and d["talk_s"] == 30.0
    schema = outcome_json_schema()
    for key in ("call_id", "to", "disposition", "sip_code", "grade", "turns", "talk_s"):
        assert key in schema["properties"]
    assert "transfer" in schema["properties"] and d["transfer"] is None  # optional: old records still load
    for key in ("agent", "queue", "wait_s", "bridged_s"):
        assert key in schema["$defs"]["TransferRecord"]["properties"]
