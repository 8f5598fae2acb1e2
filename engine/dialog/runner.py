"""Walks a dialplan given turn events. Pure and deterministic: no I/O, no clock, no randomness."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.dialog.grading import ConversationStats
from engine.dialog.schema import (
    AskNode,
    Branch,
    Dialplan,
    GlobalHandler,
    HangupNode,
    SayNode,
    TransferNode,
)
from engine.dialog.templating import render
from engine.dispositions import Disposition
from engine.intents import Intent
from engine.ports import Prediction


@dataclass(frozen=True)
class Say:
    text: str
    node: str | None
    interruptible: bool = True
    wav: str | None = None
    kind: str = "prompt"  # prompt | preamble | reprompt | global


@dataclass(frozen=True)
class Listen:
    node: str
    timeout_s: float
    expects: str = "open"


@dataclass(frozen=True)
class Hangup:
    disposition: Disposition
    node: str | None
    reason: str


@dataclass(frozen=True)
class Transfer:
    queue: str
    node: str


Action = Say | Listen | Hangup | Transfer


@dataclass
class RunnerState:
    node: str | None = None
    variables: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    path: list[str] = field(default_factory=list)
    stats: ConversationStats = field(default_factory=lambda: ConversationStats(connected=True))
    no_input_count: int = 0
    no_match_count: int = 0
    ended: bool = False
    end_reason: str | None = None
    grade_override: str | None = None


class Runner:
    def __init__(self, plan: Dialplan, variables: dict[str, Any] | None = None) -> None:
        self.plan = plan
        self.state = RunnerState(variables={**plan.variables, **(variables or {})})
        self._visits: dict[str, int] = {}

    # --- public events -------------------------------------------------------------------------------

    def start(self) -> list[Action]:
        pre = self.plan.preamble
        out: list[Action] = []
        for line in (pre.disclosure, pre.recording_notice if pre.recording else None):
            if line:
                out.append(Say(self._t(line), None, interruptible=False, kind="preamble"))
        return out + self._enter(self.plan.start)

    def on_reply(self, text: str, prediction: Prediction | None, *, dtmf: str | None = None) -> list[Action]:
        node = self._ask()
        if node is None:
            return []
        name = self.state.node or ""
        intent = prediction.intent if prediction else Intent.OTHER.value
        self.state.no_input_count = 0
        self.state.stats.count(intent)
        if self.state.stats.rounds > self.plan.max_turns:
            return self._end(Disposition.ANSWERED, "max_turns")
        branch = self._match(node, text, intent, dtmf)
        if branch is not None:
            self.state.no_match_count = 0
            if branch.tag:
                self._tag(branch.tag)
            self.state.variables.update(branch.set)
            return self._enter(branch.goto)
        handler = self._global(intent)
        if handler is not None:
            return self._run_global(handler, name)
        self.state.no_match_count += 1
        if self.state.no_match_count <= node.no_match.retries:
            text_ = node.no_match.reprompt or self._variant(node.texts(), name)
            return [Say(self._t(text_), name, node.interruptible, kind="reprompt"), self._listen(node, name)]
        self.state.no_match_count = 0
        return self._enter(node.no_match.goto or node.default)

    def on_no_input(self) -> list[Action]:
        node = self._ask()
        if node is None:
            return []
        name = self.state.node or ""
        self.state.no_input_count += 1
        if self.state.no_input_count <= node.no_input.retries:
            text = node.no_input.reprompt or self._variant(node.texts(), name)
            return [Say(self._t(text), name, node.interruptible, kind="reprompt"), self._listen(node, name)]
        self.state.no_input_count = 0
        return self._enter(node.no_input.goto or node.default)

    def on_transfer_failed(self) -> list[Action]:
        node = self.plan.nodes.get(self.state.node or "")
        if isinstance(node, TransferNode):
            return self._enter(node.fallback)
        return self._end(Disposition.TRANSFER_FAILED, "transfer_failed")

    # --- internals -----------------------------------------------------------------------------------

    def _t(self, text: str) -> str:
        return render(text, self.state.variables)

    def _ask(self) -> AskNode | None:
        if self.state.ended or self.state.node is None:
            return None
        node = self.plan.nodes.get(self.state.node)
        return node if isinstance(node, AskNode) else None

    def _variant(self, texts: list[str], name: str) -> str:
        if not texts:
            return ""
        return texts[(self._visits.get(name, 1) - 1) % len(texts)]

    def _tag(self, tag: str) -> None:
        if tag not in self.state.tags:
            self.state.tags.append(tag)

    def _listen(self, node: AskNode, name: str) -> Listen:
        return Listen(name, node.no_input.timeout_s, node.expects)

    def _end(self, disposition: Disposition, reason: str, node: str | None = None) -> list[Action]:
        self.state.ended = True
        self.state.end_reason = reason
        return [Hangup(disposition, node, reason)]

    def _enter(self, name: str) -> list[Action]:
        out: list[Action] = []
        for _ in range(len(self.plan.nodes) + 1):  # say-chains are finite; guard against loops
            node = self.plan.nodes[name]
            self.state.node = name
            self.state.path.append(name)
            self._visits[name] = self._visits.get(name, 0) + 1
            for t in node.tags():
                self._tag(t)
            self.state.variables.update(node.set)
            text = self._variant(node.texts(), name)
            if text or node.wav:
                out.append(Say(self._t(text), name, node.interruptible, wav=node.wav))
            if isinstance(node, SayNode):
                name = node.next
                continue
            if isinstance(node, AskNode):
                out.append(self._listen(node, name))
            elif isinstance(node, HangupNode):
                out += self._end(node.disposition, "hangup_node", name)
            elif isinstance(node, TransferNode):
                out.append(Transfer(node.queue, name))
            return out
        return out + self._end(Disposition.ANSWERED, "say_loop", name)

    def _match(self, node: AskNode, text: str, intent: str, dtmf: str | None) -> Branch | None:
        if dtmf is not None:
            for b in node.branches:
                if b.dtmf is not None and b.dtmf == dtmf:
                    return b
        lowered = text.lower()
        for b in node.branches:
            if b.keywords and any(k.lower() in lowered for k in b.keywords):
                return b
        for b in node.branches:
            if intent in b.intents():
                return b
        return None

    def _global(self, intent: str) -> GlobalHandler | None:
        for g in self.plan.globals:
            if g.intent == intent:
                return g
        return None

    def _run_global(self, g: GlobalHandler, here: str) -> list[Action]:
        out: list[Action] = []
        if g.tag:
            self._tag(g.tag)
        texts = [g.say] if isinstance(g.say, str) else list(g.say or [])
        if texts:
            out.append(Say(self._t(self._variant(texts, here)), here, kind="global"))
        if g.then == "hangup":
            return out + self._end(g.disposition, f"global:{g.intent}", here)
        if g.then == "goto" and g.goto:
            return out + self._enter(g.goto)
        node = self._ask()
        if node is not None:
            out.append(self._listen(node, here))
        return out
