"""The intent label set every classifier, dialplan and grade rule shares."""

from __future__ import annotations

from enum import StrEnum


class Intent(StrEnum):
    AFFIRM = "affirm"
    DENY = "deny"
    NOT_INTERESTED = "not_interested"
    BUSY_CALLBACK = "busy_callback"
    STOP_CALLING = "stop_calling"
    COMPLAINT = "complaint"
    ASK_PRICE = "ask_price"
    ASK_IDENTITY = "ask_identity"
    ASK_DETAIL = "ask_detail"
    REPEAT = "repeat"
    WRONG_PERSON = "wrong_person"
    ALREADY_DONE = "already_done"
    HUMAN_AGENT = "human_agent"
    THINKING = "thinking"
    OTHER = "other"


class Emotion(StrEnum):
    NEUTRAL = "neutral"
    POSITIVE = "positive"
    NEGATIVE = "negative"
    ANGRY = "angry"


BASE_INTENTS: tuple[str, ...] = tuple(i.value for i in Intent)
#: Intents that count as a positive answer / a refusal / a business question for grading.
POSITIVE: frozenset[str] = frozenset({Intent.AFFIRM})
REFUSAL: frozenset[str] = frozenset(
    {Intent.DENY, Intent.NOT_INTERESTED, Intent.STOP_CALLING, Intent.COMPLAINT}
)
BUSINESS_QUESTION: frozenset[str] = frozenset({Intent.ASK_PRICE, Intent.ASK_DETAIL})
