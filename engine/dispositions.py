"""Dispositions: how an attempt ended. One vocabulary for gateway, speech, outcomes and retry policy.

Each disposition maps to the carriers' Chinese 9-way call status (已接通 占线 无人接听 拒接 关机 停机 空号
无法接通 未知), and SIP response codes and Q.850 causes (from a Reason header) map onto dispositions.
"""

from __future__ import annotations

import re
from enum import StrEnum


class Disposition(StrEnum):
    ANSWERED = "answered"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    REJECTED = "rejected"
    POWERED_OFF = "powered_off"
    SUSPENDED = "suspended"
    INVALID_NUMBER = "invalid_number"
    UNREACHABLE = "unreachable"
    VOICEMAIL = "voicemail"
    CARRIER_BLOCKED = "carrier_blocked"
    MEDIA_TIMEOUT = "media_timeout"
    FAILED = "failed"
    CANCELLED = "cancelled"
    DNC_BLOCKED = "dnc_blocked"
    TRANSFER_FAILED = "transfer_failed"


class CarrierStatus(StrEnum):
    """The 9-way status Chinese carriers and call-centre reports use."""

    CONNECTED = "已接通"
    BUSY = "占线"
    NO_ANSWER = "无人接听"
    REJECTED = "拒接"
    POWERED_OFF = "关机"
    SUSPENDED = "停机"
    INVALID_NUMBER = "空号"
    UNREACHABLE = "无法接通"
    UNKNOWN = "未知"


CARRIER_STATUS: dict[Disposition, CarrierStatus] = {
    Disposition.ANSWERED: CarrierStatus.CONNECTED,
    Disposition.BUSY: CarrierStatus.BUSY,
    Disposition.NO_ANSWER: CarrierStatus.NO_ANSWER,
    Disposition.REJECTED: CarrierStatus.REJECTED,
    Disposition.POWERED_OFF: CarrierStatus.POWERED_OFF,
    Disposition.SUSPENDED: CarrierStatus.SUSPENDED,
    Disposition.INVALID_NUMBER: CarrierStatus.INVALID_NUMBER,
    Disposition.UNREACHABLE: CarrierStatus.UNREACHABLE,
    Disposition.VOICEMAIL: CarrierStatus.CONNECTED,
    Disposition.CARRIER_BLOCKED: CarrierStatus.UNREACHABLE,
    Disposition.MEDIA_TIMEOUT: CarrierStatus.CONNECTED,
    Disposition.FAILED: CarrierStatus.UNKNOWN,
    Disposition.CANCELLED: CarrierStatus.UNKNOWN,
    Disposition.DNC_BLOCKED: CarrierStatus.UNKNOWN,
    Disposition.TRANSFER_FAILED: CarrierStatus.CONNECTED,
}

#: Dispositions caused by our own infrastructure (trunk down, 5xx, no codec): they must not consume a
#: contact's attempts, and they feed the campaign circuit breaker.
INFRASTRUCTURE: frozenset[Disposition] = frozenset({Disposition.FAILED})

#: Dispositions where the callee's line was connected (talk time may be billed).
CONNECTED: frozenset[Disposition] = frozenset(
    d for d, s in CARRIER_STATUS.items() if s is CarrierStatus.CONNECTED
)


def carrier_status(disposition: Disposition) -> CarrierStatus:
    return CARRIER_STATUS[disposition]


_SIP_CODES: dict[int, Disposition] = {
    403: Disposition.CARRIER_BLOCKED,  # carriers answer 403 to numbers/caller IDs they block
    404: Disposition.INVALID_NUMBER,
    408: Disposition.NO_ANSWER,
    410: Disposition.INVALID_NUMBER,
    480: Disposition.NO_ANSWER,
    484: Disposition.INVALID_NUMBER,
    486: Disposition.BUSY,
    487: Disposition.CANCELLED,
    488: Disposition.FAILED,
    600: Disposition.BUSY,
    603: Disposition.REJECTED,
    604: Disposition.INVALID_NUMBER,
    606: Disposition.FAILED,
}

_Q850: dict[int, Disposition] = {
    1: Disposition.INVALID_NUMBER,  # unallocated number
    2: Disposition.INVALID_NUMBER,  # no route to network
    3: Disposition.UNREACHABLE,  # no route to destination
    16: Disposition.ANSWERED,  # normal clearing
    17: Disposition.BUSY,  # user busy
    18: Disposition.NO_ANSWER,  # no user responding
    19: Disposition.NO_ANSWER,  # no answer from user (user alerted)
    20: Disposition.POWERED_OFF,  # subscriber absent
    21: Disposition.REJECTED,  # call rejected
    22: Disposition.INVALID_NUMBER,  # number changed
    27: Disposition.UNREACHABLE,  # destination out of order
    28: Disposition.INVALID_NUMBER,  # invalid number format
    29: Disposition.CARRIER_BLOCKED,  # facility rejected
    31: Disposition.NO_ANSWER,  # normal, unspecified
    34: Disposition.FAILED,  # no circuit available
    38: Disposition.FAILED,  # network out of order
    41: Disposition.FAILED,  # temporary failure
    42: Disposition.FAILED,  # switching equipment congestion
    44: Disposition.FAILED,  # requested channel not available
    47: Disposition.FAILED,  # resource unavailable
    50: Disposition.SUSPENDED,  # requested facility not subscribed
    54: Disposition.SUSPENDED,  # incoming calls barred
    55: Disposition.SUSPENDED,  # incoming calls barred within CUG
    57: Disposition.SUSPENDED,  # bearer capability not authorised
    58: Disposition.FAILED,  # bearer capability not presently available
    65: Disposition.FAILED,  # bearer capability not implemented
    88: Disposition.FAILED,  # incompatible destination
    102: Disposition.NO_ANSWER,  # recovery on timer expiry
    111: Disposition.FAILED,  # protocol error
    127: Disposition.FAILED,  # interworking, unspecified
}

_REASON_Q850 = re.compile(r"Q\.850\s*;(?:[^,]*?;)?\s*cause\s*=\s*(\d+)", re.IGNORECASE)


def parse_q850_cause(reason_header: str | None) -> int | None:
    """Extract the Q.850 cause from a Reason header value, e.g. `Q.850;cause=17;text="User busy"`."""
    if not reason_header:
        return None
    m = _REASON_Q850.search(reason_header)
    return int(m.group(1)) if m else None


def from_q850(cause: int) -> Disposition:
    return _Q850.get(cause, Disposition.FAILED)


def from_sip(code: int, reason_header: str | None = None) -> Disposition:
    """Disposition of a failed INVITE. A Q.850 cause in the Reason header is more specific and wins."""
    cause = parse_q850_cause(reason_header)
    if cause is not None and cause != 16:
        return from_q850(cause)
    if 200 <= code < 300:
        return Disposition.ANSWERED
    if code in _SIP_CODES:
        return _SIP_CODES[code]
    if 500 <= code < 600 or code in (401, 407, 420, 421, 422, 423):
        return Disposition.FAILED
    if 400 <= code < 500:
        return Disposition.FAILED
    if code >= 600:
        return Disposition.REJECTED
    return Disposition.FAILED


def is_retryable_infrastructure(code: int) -> bool:
    """5xx (and 408 from a proxy's own timer) mean our path failed, not the callee's line."""
    return 500 <= code < 600 or code == 503
