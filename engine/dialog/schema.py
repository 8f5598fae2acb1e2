"""The dialplan language's core (pydantic). Later features extend these models; nothing here is thrown away.

A dialplan is a graph of nodes. `say` speaks and moves on, `ask` speaks and branches on what the callee
answers, `hangup` speaks a last line and ends with a disposition/tags, `transfer` hands the call to a human.
Global handlers (标准问题) match at any ask node and then return to it (or end the call).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from engine.dispositions import Disposition
from engine.intents import BASE_INTENTS

Language = Literal["zh-CN", "en-US"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Branch(_Strict):
    """One way out of an ask node. Matches when any listed condition matches."""

    intent: str | list[str] | None = None
    keywords: list[str] = Field(default_factory=list, description="substrings of the callee's words")
    dtmf: str | None = Field(None, description="digits that select this branch")
    goto: str
    tag: str | None = None
    set: dict[str, Any] = Field(default_factory=dict, description="variables to set when taken")

    def intents(self) -> list[str]:
        if self.intent is None:
            return []
        return [self.intent] if isinstance(self.intent, str) else list(self.intent)


class NoInput(_Strict):
    timeout_s: float = Field(4.0, gt=0)
    retries: int = Field(1, ge=0)
    reprompt: str | None = None
    goto: str | None = Field(None, description="node after the retries; default: the ask's default")


class NoMatch(_Strict):
    retries: int = Field(1, ge=0)
    reprompt: str | None = None
    goto: str | None = None


class _Node(_Strict):
    say: str | list[str] | None = Field(None, description="text (with {{var}}), or variants")
    wav: str | None = Field(None, description="a recorded prompt used instead of synthesis")
    interruptible: bool = True
    tag: str | list[str] | None = None
    set: dict[str, Any] = Field(default_factory=dict)

    def texts(self) -> list[str]:
        if self.say is None:
            return []
        return [self.say] if isinstance(self.say, str) else list(self.say)

    def tags(self) -> list[str]:
        if self.tag is None:
            return []
        return [self.tag] if isinstance(self.tag, str) else list(self.tag)


class SayNode(_Node):
    type: Literal["say"] = "say"
    next: str


class AskNode(_Node):
    type: Literal["ask"] = "ask"
    expects: Literal["yes_no", "open", "digits"] = "open"
    branches: list[Branch] = Field(default_factory=list)
    default: str = Field(description="node when nothing else matches (after no_match retries)")
    no_input: NoInput = Field(default_factory=NoInput)
    no_match: NoMatch = Field(default_factory=lambda: NoMatch(retries=0))


class HangupNode(_Node):
    type: Literal["hangup"] = "hangup"
    disposition: Disposition = Disposition.ANSWERED
    interruptible: bool = False


class TransferNode(_Node):
    type: Literal["transfer"] = "transfer"
    queue: str = "default"
    fallback: str = Field(description="node when no agent takes the call")


Node = Annotated[SayNode | AskNode | HangupNode | TransferNode, Field(discriminator="type")]


class GlobalHandler(_Strict):
    """Matches at any ask node when the classifier says `intent`. After speaking, the call returns to the
    node it interrupted (`then: return`), or moves to `goto`."""

    intent: str
    say: str | list[str] | None = None
    then: Literal["return", "goto", "hangup"] = "return"
    goto: str | None = None
    tag: str | None = None
    disposition: Disposition = Disposition.ANSWERED

    @model_validator(mode="after")
    def _goto_needed(self) -> GlobalHandler:
        if self.then == "goto" and not self.goto:
            raise ValueError("then: goto needs a goto node")
        return self


class Preamble(_Strict):
    """Compliance lines spoken before the first node (not interruptible)."""

    disclosure: str | None = Field(None, description="AI disclosure, e.g. 我是XX的智能助理")
    recording: bool = False
    recording_notice: str | None = None

    @model_validator(mode="after")
    def _notice(self) -> Preamble:
        if self.recording and not self.recording_notice:
            raise ValueError("recording is on but there is no recording_notice to tell the callee")
        return self


class IntentDecl(_Strict):
    examples: list[str] = Field(min_length=1)


class Dialplan(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    version: str = "1"
    language: Language = "zh-CN"
    voice: str | None = None
    description: str = ""
    variables: dict[str, Any] = Field(default_factory=dict)
    preamble: Preamble = Field(default_factory=Preamble)
    start: str
    max_turns: int = Field(12, ge=1)
    max_duration_s: float = Field(300.0, gt=0)
    intents: dict[str, IntentDecl] = Field(default_factory=dict, description="extra intents")
    globals: list[GlobalHandler] = Field(default_factory=list)
    nodes: dict[str, Node]

    def known_intents(self) -> set[str]:
        return set(BASE_INTENTS) | set(self.intents)
