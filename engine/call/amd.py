"""Answering-machine and carrier-announcement decision from what the line said right after answer.

Runs in parallel with the greeting (a human's greeting is never delayed): utterances heard in the first
seconds are transcribed and matched here. The acoustic detector (beep, cadence) extends this later.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.dispositions import Disposition


@dataclass(frozen=True)
class AmdDecision:
    disposition: Disposition
    kind: str  # voicemail | assistant | announcement
    pattern: str


#: "您拨打的电话/用户/号码": only carrier announcements start like this. After it, ASR homophones of the
#: status words are accepted too (measured with whisper base on 8 kHz audio: 已关机 -> 已关节/与关机,
#: 已停机 -> 以情节, bench/results/amd.json)
_DIALED = r"(拨|播|波)打的(电话|用户|号码)"

_RULES: tuple[tuple[str, Disposition, str], ...] = (
    # definite carrier announcements first
    (r"(已|已经)关机|关机了", Disposition.POWERED_OFF, "announcement"),
    (_DIALED + r".{0,4}(关机|关节|关级)", Disposition.POWERED_OFF, "announcement"),
    (_DIALED + r".{0,4}(停机|情节|停即|停级)", Disposition.SUSPENDED, "announcement"),
    (r"是空号|号码不存在|不是有效号码", Disposition.INVALID_NUMBER, "announcement"),
    (r"(已|已经)停机|已欠费", Disposition.SUSPENDED, "announcement"),
    (r"switched off|powered off", Disposition.POWERED_OFF, "announcement"),
    (
        r"(number|call).{0,30}(not in service|does not exist|disconnected)",
        Disposition.INVALID_NUMBER,
        "announcement",
    ),
    # voicemail and phone assistants answering for the owner
    (r"留言|提示音后|语音信箱|嘀声后|滴声后", Disposition.VOICEMAIL, "voicemail"),
    (r"(提示|嘀|滴).{0,2}(音|您|声)后.{0,4}(留言|流言|留一)", Disposition.VOICEMAIL, "voicemail"),
    (
        r"(机主|基主|鸡主|机组).{0,6}(智能)?助理|智能助理.{0,8}(机主|代接)|我是.{0,6}(秘书|助理).{0,10}(机主|主人)",
        Disposition.VOICEMAIL,
        "assistant",
    ),
    (r"leave (a|your) message|after the (tone|beep)|voice ?mail|mailbox", Disposition.VOICEMAIL, "voicemail"),
    # weaker announcements
    (r"正在通话中|通话中.*稍后再拨", Disposition.BUSY, "announcement"),
    (r"暂时无法接通|无法接通|不在服务区", Disposition.UNREACHABLE, "announcement"),
    (r"暂时无人接听|无人接听", Disposition.NO_ANSWER, "announcement"),
    (r"cannot be (reached|connected)|is (currently )?unavailable", Disposition.UNREACHABLE, "announcement"),
)
_COMPILED = tuple((re.compile(p, re.IGNORECASE), d, k, p) for p, d, k in _RULES)


def decide(text: str) -> AmdDecision | None:
    """A decision when the words are a machine's; None for a human (or nothing recognisable)."""
    t = re.sub(r"\s+", " ", text).strip()
    if not t:
        return None
    for rx, disposition, kind, pattern in _COMPILED:
        if rx.search(t):
            return AmdDecision(disposition, kind, pattern)
    return None
