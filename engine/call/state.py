"""Call states and the one table of legal transitions."""

from __future__ import annotations

from enum import StrEnum


class CallState(StrEnum):
    QUEUED = "queued"
    DIALING = "dialing"
    RINGING = "ringing"
    EARLY_MEDIA = "early_media"
    ANSWERED = "answered"
    AMD = "amd"
    CONVERSING = "conversing"
    ENDING = "ending"
    DONE = "done"
    FAILED = "failed"


_PRE_ANSWER = {CallState.QUEUED, CallState.DIALING, CallState.RINGING, CallState.EARLY_MEDIA}

TRANSITIONS: dict[CallState, frozenset[CallState]] = {
    CallState.QUEUED: frozenset({CallState.DIALING, CallState.FAILED}),
    CallState.DIALING: frozenset(
        {CallState.RINGING, CallState.EARLY_MEDIA, CallState.ANSWERED, CallState.FAILED}
    ),
    CallState.RINGING: frozenset({CallState.EARLY_MEDIA, CallState.ANSWERED, CallState.FAILED}),
    CallState.EARLY_MEDIA: frozenset({CallState.RINGING, CallState.ANSWERED, CallState.FAILED}),
    CallState.ANSWERED: frozenset({CallState.AMD, CallState.CONVERSING, CallState.ENDING}),
    CallState.AMD: frozenset({CallState.CONVERSING, CallState.ENDING}),
    CallState.CONVERSING: frozenset({CallState.ENDING}),
    CallState.ENDING: frozenset({CallState.DONE}),
    CallState.DONE: frozenset(),
    CallState.FAILED: frozenset(),
}


class IllegalTransition(RuntimeError):
    pass


class CallStateMachine:
    def __init__(self, state: CallState = CallState.QUEUED) -> None:
        self.state = state
        self.history: list[CallState] = [state]

    def can(self, new: CallState) -> bool:
        return new == self.state or new in TRANSITIONS[self.state]

    def to(self, new: CallState) -> None:
        if new == self.state:
            return
        if new not in TRANSITIONS[self.state]:
            raise IllegalTransition(f"call state {self.state} -> {new} is not allowed")
        self.state = new
        self.history.append(new)

    @property
    def answered(self) -> bool:
        return self.state not in _PRE_ANSWER and self.state is not CallState.FAILED

    @property
    def finished(self) -> bool:
        return self.state in (CallState.DONE, CallState.FAILED)
