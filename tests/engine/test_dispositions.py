import pytest

from engine.dispositions import (
    CarrierStatus,
    Disposition,
    carrier_status,
    from_q850,
    from_sip,
    parse_q850_cause,
)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (486, Disposition.BUSY),
        (600, Disposition.BUSY),
        (480, Disposition.NO_ANSWER),
        (408, Disposition.NO_ANSWER),
        (404, Disposition.INVALID_NUMBER),
        (603, Disposition.REJECTED),
        (403, Disposition.CARRIER_BLOCKED),
        (487, Disposition.CANCELLED),
        (503, Disposition.FAILED),
        (488, Disposition.FAILED),
        (200, Disposition.ANSWERED),
    ],
)
def test_sip_codes(code: int, expected: Disposition) -> None:
    assert from_sip(code) is expected


def test_q850_in_reason_header_wins() -> None:
    # a 480 whose Reason says "subscriber absent" is a powered-off phone, not a no-answer
    assert from_sip(480, 'Q.850;cause=20;text="Subscriber absent"') is Disposition.POWERED_OFF
    assert from_sip(404, "Q.850 ; cause=1") is Disposition.INVALID_NUMBER
    assert from_sip(486, "SIP;cause=486, Q.850;cause=17") is Disposition.BUSY
    assert parse_q850_cause("SIP;cause=200") is None
    assert parse_q850_cause(None) is None


def test_q850_table() -> None:
    assert from_q850(17) is Disposition.BUSY
    assert from_q850(21) is Disposition.REJECTED
    assert from_q850(54) is Disposition.SUSPENDED
    assert from_q850(999) is Disposition.FAILED


def test_every_disposition_has_carrier_status() -> None:
    for d in Disposition:
        assert isinstance(carrier_status(d), CarrierStatus)
    assert carrier_status(Disposition.POWERED_OFF).value == "关机"
    assert carrier_status(Disposition.INVALID_NUMBER).value == "空号"
    assert carrier_status(Disposition.SUSPENDED).value == "停机"
