"""The dialplan language's core (pydantic). Later features extend these models; nothing here is thrown away.

A dialplan is a graph of nodes. `say` speaks and moves on, `ask` speaks and branches on what the callee
answers, `hangup` speaks a last line and ends with a disposition/tags, `transfer` hands the call to a human.
Global handlers (标准问题) match at any ask node and then return to it (or end the call).
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from engine.dispositions import Disposition
from engine.intents import BASE_INTENTS

Language = Literal["zh-CN", "en-US"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


GradeLetter = Literal["A", "B", "C", "D", "E"]


class FollowUp(_Strict):
    """A message sent after the call by the campaign's channels (template names, not texts)."""

    sms: str | None = Field(None, description="SMS template name, e.g. trial_address")
    wecom: str | None = Field(None, description="WeCom (企业微信) template / advisor hand-off name")


class Callback(_Strict):
    """Schedule a call back. The time the callee named (晚上七点) wins; otherwise `after_min` from now.
    Either way the time is clamped into the campaign's calling window."""

    after_min: int = Field(120, ge=1)


class _Effects(_Strict):
    """What happens when a node is entered, a branch is taken, or a global handler fires."""

    tag: str | list[str] | None = Field(None, description="outcome tag(s), e.g. booked, dnc")
    set: dict[str, Any] = Field(default_factory=dict, description="variables to set")
    callback: Callback | bool | None = Field(None, description="schedule a call back (callback_time)")
    follow_up: FollowUp | None = None
    grade: GradeLetter | None = Field(None, description="grade override (wins over the grading rules)")

    def tags(self) -> list[str]:
        if self.tag is None:
            return []
        return [self.tag] if isinstance(self.tag, str) else list(self.tag)


class Branch(_Effects):
    """One way out of an ask node. Matches when any listed matcher matches (intent, keywords, regex, dtmf,
    emotion), and `when` (a variable condition) holds. A branch with only `when` matches on any reply for
    which the condition holds (e.g. after `capture`)."""

    intent: str | list[str] | None = None
    keywords: list[str] = Field(default_factory=list, description="substrings of the callee's words")
    regex: str | None = Field(None, description="a regular expression searched in the callee's words")
    dtmf: str | list[str] | None = Field(None, description="keypad digit(s) that select this branch")
    emotion: str | list[str] | None = Field(None, description="neutral, positive, negative, angry")
    when: str | None = Field(None, description="variable condition, e.g. `score >= 9`")
    goto: str

    def intents(self) -> list[str]:
        if self.intent is None:
            return []
        return [self.intent] if isinstance(self.intent, str) else list(self.intent)

    def digits(self) -> list[str]:
        if self.dtmf is None:
            return []
        return [self.dtmf] if isinstance(self.dtmf, str) else list(self.dtmf)

    def emotions(self) -> list[str]:
        if self.emotion is None:
            return []
        return [self.emotion] if isinstance(self.emotion, str) else list(self.emotion)

    def has_matcher(self) -> bool:
        return bool(self.intents() or self.keywords or self.regex or self.digits() or self.emotions())


class Capture(_Strict):
    """Store a value from the reply in a variable before the branches are tried: `number` (a score said
    or keyed: 九分, 9, nine; `min`/`max` bound it), `time` (明天下午三点, tomorrow morning: an ISO time
    clamped into the calling window, plus `<var>_when` in words and `<var>_days` from today), or `text`
    (the words as said). Nothing captured leaves the variable unset."""

    var: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    kind: Literal["number", "time", "text"] = "number"
    min: float | None = None
    max: float | None = None
    dtmf_map: dict[str, Any] = Field(default_factory=dict, description="keypad key -> value, e.g. '*': 10")


class NoInput(_Strict):
    """Silence after the prompt: reprompt `retries` times, then go to `goto` (default: the ask's default)."""

    timeout_s: float = Field(4.0, gt=0)
    retries: int = Field(1, ge=0)
    reprompt: str | list[str] | None = None
    goto: str | None = Field(None, description="node after the retries; default: the ask's default")

    def texts(self) -> list[str]:
        return _as_list(self.reprompt)


class NoMatch(_Strict):
    """Words that match no branch nor global: a rephrased reprompt (`retries` times; 1 when a reprompt is
    given, else 0), then `goto` (default: the ask's default). Every such reply is kept for the designers'
    inbox (outcome variables `no_match`)."""

    retries: int | None = Field(None, ge=0)
    reprompt: str | list[str] | None = None
    goto: str | None = None

    def texts(self) -> list[str]:
        return _as_list(self.reprompt)

    def max_retries(self) -> int:
        if self.retries is not None:
            return self.retries
        return 1 if self.reprompt else 0


def _as_list(v: str | list[str] | None) -> list[str]:
    if v is None:
        return []
    return [v] if isinstance(v, str) else list(v)


class _Node(_Effects):
    say: str | list[str] | None = Field(None, description="text (with {{var}}), or variants spoken in turn")
    wav: str | list[str] | None = Field(
        None,
        description="recorded prompt(s) (WAV, relative to the dialplan file) played instead of synthesis",
    )
    interruptible: bool = True
    min_play_s: float = Field(0.0, ge=0, description="seconds played before barge-in is allowed")
    legal: bool = Field(False, description="a legal disclosure: never interruptible")

    def texts(self) -> list[str]:
        return _as_list(self.say)

    def wavs(self) -> list[str]:
        return _as_list(self.wav)

    def can_interrupt(self) -> bool:
        return self.interruptible and not self.legal


class SayNode(_Node):
    type: Literal["say"] = "say"
    next: str


class AskNode(_Node):
    type: Literal["ask"] = "ask"
    expects: Literal["yes_no", "open", "digits"] = "open"
    capture: Capture | None = None
    branches: list[Branch] = Field(default_factory=list)
    default: str | None = Field(None, description="node when nothing else matches (required)")
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


class GlobalHandler(_Effects):
    """Matches at any ask node when the classifier says `intent` (and no branch of that node took it).
    After speaking: `return` asks the interrupted node's question again (its `return_say` variant, or the
    node's text with `repeat: true`), `goto` moves on, `hangup` ends the call with `disposition`.
    `max_times`: after that many firings in one call the handler is skipped (the node's no_match applies)."""

    intent: str
    say: str | list[str] | None = None
    then: Literal["return", "goto", "hangup"] = "return"
    goto: str | None = None
    repeat: bool = Field(False, description="say the node's prompt again in full when returning")
    disposition: Disposition = Disposition.ANSWERED
    max_times: int = Field(2, ge=1)

    @model_validator(mode="after")
    def _goto_needed(self) -> GlobalHandler:
        if self.then == "goto" and not self.goto:
            raise ValueError("then: goto needs a goto node")
        return self

    def texts(self) -> list[str]:
        return _as_list(self.say)


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


class Voicemail(_Strict):
    """What to do when a voicemail or a phone AI assistant (机主的智能助理) answers: hang up (the default),
    or wait for the beep (or the greeting's end) and leave a short message, then hang up."""

    action: Literal["hangup", "leave_message"] = "hangup"
    say: str | None = Field(None, description="the message (with {{var}}); required for leave_message")
    wav: str | None = Field(None, description="a recorded message (8 kHz WAV), spoken instead of `say`")
    assistants: bool = Field(True, description="leave it with phone AI assistants too (they pass it on)")
    beep_wait_s: float = Field(8.0, gt=0, le=30, description="longest wait for the beep or a quiet line")
    quiet_s: float = Field(2.0, gt=0, le=5, description="a quiet line this long counts as recording")

    @model_validator(mode="after")
    def _message(self) -> Voicemail:
        if self.action == "leave_message" and not (self.say or self.wav):
            raise ValueError("action leave_message needs the message: say (or wav)")
        return self


class IntentDecl(_Strict):
    examples: list[str] = Field(min_length=1)
    description: str = ""


class GradeRuleDecl(_Strict):
    """A dialplan grading rule: `when` is a condition over the conversation: rounds, positives, refusals,
    business_questions, negatives, connected, tags (list), intents (list), and the variables."""

    grade: GradeLetter
    when: str
    name: str | None = None


class Grading(_Strict):
    rules: list[GradeRuleDecl] = Field(default_factory=list, description="tried first, in order")
    defaults: bool = Field(True, description="then the A-E vendor defaults")


class Variant(_Strict):
    """An A/B variant: overrides of variables and node fields (merged into the base plan)."""

    weight: float = Field(1.0, ge=0)
    variables: dict[str, Any] = Field(default_factory=dict)
    nodes: dict[str, dict[str, Any]] = Field(default_factory=dict)


class Dialplan(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    version: str = "1"
    language: Language = "zh-CN"
    voice: str | None = None
    description: str = ""
    variables: dict[str, Any] = Field(default_factory=dict, description="variables and their defaults")
    preamble: Preamble = Field(default_factory=Preamble)
    voicemail: Voicemail = Field(default_factory=Voicemail)
    start: str
    max_turns: int = Field(12, ge=1)
    max_duration_s: float = Field(300.0, gt=0)
    intents: dict[str, IntentDecl] = Field(default_factory=dict, description="extra intents")
    globals: list[GlobalHandler] = Field(default_factory=list)
    grading: Grading = Field(default_factory=Grading)
    variants: dict[str, Variant] = Field(default_factory=dict, description="A/B variants by name")
    nodes: dict[str, Node]

    def known_intents(self) -> set[str]:
        return set(BASE_INTENTS) | set(self.intents)

    def with_variant(self, name: str | None) -> Dialplan:
        """The plan with variant `name`'s overrides merged in (name None or unknown: the base plan).
        The variant name is recorded in the variables as `ab_variant`."""
        if not name or name not in self.variants:
            return self
        v = self.variants[name]
        data = self.model_dump(mode="python", exclude_unset=True, by_alias=True)
        nodes = data.get("nodes", {})
        for node_name, fields in v.nodes.items():
            nodes[node_name] = {**nodes.get(node_name, {}), **fields}
        data["variables"] = {**data.get("variables", {}), **v.variables, "ab_variant": name}
        data["variants"] = {}
        return Dialplan.model_validate(data)

    def choose_variant(self, key: str) -> str | None:
        """A stable weighted choice of variant for a contact key (same key, same variant)."""
        if not self.variants:
            return None
        total = sum(v.weight for v in self.variants.values())
        if total <= 0:
            return None
        digest = hashlib.sha256(f"{self.name}:{key}".encode()).digest()
        x = int.from_bytes(digest[:8], "big") / 2**64 * total
        for name, v in self.variants.items():
            if x < v.weight:
                return name
            x -= v.weight
        return next(iter(self.variants))
