"""Walks a dialplan given turn events. Pure and deterministic: no I/O, no clock, no randomness.

The caller (engine.call.session, the `outcall dialplan chat/test` simulators) feeds it what the callee did
(`on_reply`, `on_no_input`, `on_transfer_failed`) and executes the actions it returns (Say, Listen,
Hangup, Transfer). Time enters only through `now` (the callee's local time at call start), used to turn
"晚上七点" into a call-back time inside the calling window.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any

from engine.dialog.capture import parse_number
from engine.dialog.conditions import parse_condition
from engine.dialog.grading import ConversationStats, grade_call
from engine.dialog.schema import (
    AskNode,
    Branch,
    Callback,
    Dialplan,
    GlobalHandler,
    HangupNode,
    SayNode,
    TransferNode,
    _Effects,
)
from engine.dialog.templating import render
from engine.dialog.timeparse import DEFAULT_WINDOW, clamp_to_window, describe, parse_when
from engine.dispositions import Disposition
from engine.intents import Intent
from engine.ports import Prediction

#: intents a global handler answers even when a keyword/emotion branch of the node also matches
_URGENT = frozenset({Intent.STOP_CALLING.value, Intent.COMPLAINT.value})


@dataclass(frozen=True)
class Say:
    text: str
    node: str | None
    interruptible: bool = True
    wav: str | None = None
    kind: str = "prompt"  # prompt | preamble | reprompt | global
    min_play_s: float = 0.0


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
    grade_override_at: str | None = None
    #: replies no branch nor global understood, for the designers' inbox
    no_match: list[dict[str, Any]] = field(default_factory=list)
    follow_ups: list[dict[str, str]] = field(default_factory=list)
    intents: list[str] = field(default_factory=list)
    globals_fired: dict[str, int] = field(default_factory=dict)


class Runner:
    def __init__(
        self,
        plan: Dialplan,
        variables: dict[str, Any] | None = None,
        *,
        now: datetime | None = None,
        calling_window: tuple[time, time] = DEFAULT_WINDOW,
    ) -> None:
        self.plan = plan
        self.now = now
        self.calling_window = calling_window
        self.state = RunnerState(variables={**plan.variables, **(variables or {})})
        self._visits: dict[str, int] = {}
        self._last_text: str = ""

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
        emotion = prediction.emotion if prediction else "neutral"
        self._last_text = text
        self.state.no_input_count = 0
        self.state.stats.count(intent)
        self.state.intents.append(intent if dtmf is None else f"dtmf:{dtmf}")
        if self.state.stats.rounds > self.plan.max_turns:
            return self._end(Disposition.ANSWERED, "max_turns")
        if intent == Intent.BUSY_CALLBACK.value:
            self._capture_time(text)
        if node.capture is not None:
            self._capture(node, text, dtmf)
        branch = self._match(node, text, intent, emotion, dtmf)
        if intent in _URGENT and branch is not None and intent not in branch.intents():
            # a do-not-call request or a complaint is never swallowed by a keyword/emotion branch
            urgent = self._global(intent)
            if urgent is not None:
                return self._run_global(urgent, name)
        if branch is not None:
            self.state.no_match_count = 0
            self._apply(branch, name)
            return self._enter(branch.goto)
        handler = self._global(intent) if dtmf is None else None
        if handler is not None:
            return self._run_global(handler, name)
        self.state.no_match.append(
            {
                "node": name,
                "text": text if dtmf is None else f"[dtmf {dtmf}]",
                "intent": intent,
                "confidence": round(prediction.confidence, 3) if prediction else None,
            }
        )
        self.state.no_match_count += 1
        if self.state.no_match_count <= node.no_match.max_retries():
            texts = node.no_match.texts() or node.texts()
            return [
                self._say_line(
                    self._variant(texts, name, self.state.no_match_count), node, name, kind="reprompt"
                ),
                self._listen(node, name),
            ]
        self.state.no_match_count = 0
        return self._enter(node.no_match.goto or node.default or name)

    def on_no_input(self) -> list[Action]:
        node = self._ask()
        if node is None:
            return []
        name = self.state.node or ""
        self.state.no_input_count += 1
        if self.state.no_input_count <= node.no_input.retries:
            texts = node.no_input.texts() or node.texts()
            return [
                self._say_line(
                    self._variant(texts, name, self.state.no_input_count), node, name, kind="reprompt"
                ),
                self._listen(node, name),
            ]
        self.state.no_input_count = 0
        return self._enter(node.no_input.goto or node.default or name)

    def on_transfer_failed(self) -> list[Action]:
        node = self.plan.nodes.get(self.state.node or "")
        if isinstance(node, TransferNode):
            return self._enter(node.fallback)
        return self._end(Disposition.TRANSFER_FAILED, "transfer_failed")

    def grade(self) -> tuple[str, str]:
        """A-E and the rule that fired (state.stats.connected says whether a person answered)."""
        st = self.state
        return grade_call(
            st.stats,
            rules=[(r.grade, r.name or r.when, r.when) for r in self.plan.grading.rules],
            defaults=self.plan.grading.defaults,
            tags=st.tags,
            intents=st.intents,
            variables=st.variables,
            override=st.grade_override,
            override_at=st.grade_override_at,
        )

    def outcome_variables(self) -> dict[str, Any]:
        """The variables an outcome records: the plan's and the call's, plus `no_match` (the designers'
        inbox), `follow_up` (sms/wecom templates to send) and `callback_time` when scheduled."""
        out = dict(self.state.variables)
        if self.state.no_match:
            out["no_match"] = list(self.state.no_match)
        if self.state.follow_ups:
            out["follow_up"] = list(self.state.follow_ups)
        return out

    def can_interrupt_now(self) -> bool:
        """Whether the current node's prompt may be barged in on."""
        node = self.plan.nodes.get(self.state.node or "")
        return node is not None and node.can_interrupt()

    # --- internals -----------------------------------------------------------------------------------

    def machine_message(self, kind: str) -> Say | None:
        """The message to leave when a machine answered (`kind` voicemail | assistant), per the plan's
        voicemail section; None: hang up without one."""
        vm = self.plan.voicemail
        if vm.action != "leave_message" or (kind == "assistant" and not vm.assistants):
            return None
        if kind not in ("voicemail", "assistant"):
            return None
        return Say(self._t(vm.say or ""), "voicemail", interruptible=False, wav=vm.wav, kind="voicemail")

    def _t(self, text: str) -> str:
        return render(text, self.state.variables)

    def _ask(self) -> AskNode | None:
        if self.state.ended or self.state.node is None:
            return None
        node = self.plan.nodes.get(self.state.node)
        return node if isinstance(node, AskNode) else None

    def _variant(self, texts: list[str], name: str, nth: int | None = None) -> str:
        if not texts:
            return ""
        i = (nth if nth is not None else self._visits.get(name, 1)) - 1
        return texts[i % len(texts)]

    def _say_line(self, text: str, node: AskNode, name: str, *, kind: str) -> Say:
        return Say(self._t(text), name, node.can_interrupt(), kind=kind, min_play_s=node.min_play_s)

    def _tag(self, tag: str) -> None:
        if tag not in self.state.tags:
            self.state.tags.append(tag)

    def _apply(self, fx: _Effects, here: str) -> None:
        for t in fx.tags():
            self._tag(t)
        self.state.variables.update(fx.set)
        if fx.callback:
            self._schedule_callback(fx.callback if isinstance(fx.callback, Callback) else Callback())
        if fx.follow_up is not None:
            for channel in ("sms", "wecom"):
                template = getattr(fx.follow_up, channel)
                entry = {"channel": channel, "template": template}
                if template and entry not in self.state.follow_ups:
                    self.state.follow_ups.append(entry)
        if fx.grade is not None:
            self.state.grade_override = fx.grade
            self.state.grade_override_at = here

    def _capture_time(self, text: str) -> None:
        if self.now is None or not text:
            return
        when = parse_when(text, self.now)
        if when is not None:
            self._set_callback(when)

    def _set_callback(self, when: datetime) -> None:
        assert self.now is not None
        when = clamp_to_window(when, self.calling_window)
        self.state.variables["callback_time"] = when.isoformat(timespec="minutes")
        self.state.variables["callback_when"] = describe(when, self.now, self.plan.language)

    def _schedule_callback(self, cb: Callback) -> None:
        self._tag("callback")
        if self.state.variables.get("callback_time") or self.now is None:
            return
        self._set_callback(self.now + timedelta(minutes=cb.after_min))

    def _capture(self, node: AskNode, text: str, dtmf: str | None) -> None:
        cap = node.capture
        assert cap is not None
        value: Any = None
        if dtmf is not None:
            value = cap.dtmf_map.get(dtmf, int(dtmf) if dtmf.isdigit() else None)
        elif cap.kind == "number":
            value = parse_number(text)
        elif cap.kind == "time":
            if self.now is not None:
                when = parse_when(text, self.now)
                if when is not None:
                    when = clamp_to_window(when, self.calling_window)
                    value = when.isoformat(timespec="minutes")
                    self.state.variables[f"{cap.var}_when"] = describe(when, self.now, self.plan.language)
                    self.state.variables[f"{cap.var}_days"] = (when.date() - self.now.date()).days
        else:
            value = text or None
        if isinstance(value, int | float) and (
            (cap.min is not None and value < cap.min) or (cap.max is not None and value > cap.max)
        ):
            value = None
        if value is not None:
            self.state.variables[cap.var] = value

    def _listen(self, node: AskNode, name: str) -> Listen:
        return Listen(name, node.no_input.timeout_s, node.expects)

    def _end(self, disposition: Disposition, reason: str, node: str | None = None) -> list[Action]:
        self.state.ended = True
        self.state.end_reason = reason
        return [Hangup(disposition, node, reason)]

    def _prompt(self, name: str) -> Say | None:
        node = self.plan.nodes[name]
        text = self._variant(node.texts(), name)
        wavs = node.wavs()
        wav = self._variant(wavs, name) if wavs else None
        if not (text or wav):
            return None
        return Say(self._t(text), name, node.can_interrupt(), wav=wav, min_play_s=node.min_play_s)

    def _enter(self, name: str) -> list[Action]:
        out: list[Action] = []
        for _ in range(len(self.plan.nodes) + 1):  # say-chains are finite; guard against loops
            node = self.plan.nodes[name]
            self.state.node = name
            self.state.path.append(name)
            self._visits[name] = self._visits.get(name, 0) + 1
            self._apply(node, name)
            say = self._prompt(name)
            if say is not None:
                out.append(say)
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

    def _when(self, b: Branch) -> bool:
        if b.when is None:
            return True
        env = {**self.state.variables, "tags": self.state.tags}
        return parse_condition(b.when)(env)

    def _match(self, node: AskNode, text: str, intent: str, emotion: str, dtmf: str | None) -> Branch | None:
        """Tried in passes, each in branch order: keypad digits; keywords / regex / emotion; intent;
        condition-only branches. Every pass also requires the branch's `when` to hold."""
        if dtmf is not None:
            for b in node.branches:
                if dtmf in b.digits() and self._when(b):
                    return b
            return next((b for b in node.branches if not b.has_matcher() and b.when and self._when(b)), None)
        lowered = text.lower()
        for b in node.branches:
            hit = (
                (b.keywords and any(k.lower() in lowered for k in b.keywords))
                or (b.regex and re.search(b.regex, text, re.IGNORECASE))
                or (emotion in b.emotions())
            )
            if hit and self._when(b):
                return b
        for b in node.branches:
            if intent in b.intents() and self._when(b):
                return b
        for b in node.branches:
            if not b.has_matcher() and b.when and self._when(b):
                return b
        return None

    def _global(self, intent: str) -> GlobalHandler | None:
        for g in self.plan.globals:
            if g.intent == intent and self.state.globals_fired.get(g.intent, 0) < g.max_times:
                return g
        return None

    def _run_global(self, g: GlobalHandler, here: str) -> list[Action]:
        out: list[Action] = []
        self.state.globals_fired[g.intent] = self.state.globals_fired.get(g.intent, 0) + 1
        self._apply(g, here)
        texts = g.texts()
        if texts:
            line = self._variant(texts, f"global:{g.intent}", self.state.globals_fired[g.intent])
            out.append(Say(self._t(line), here, kind="global"))
        if g.then == "hangup":
            return out + self._end(g.disposition, f"global:{g.intent}", here)
        if g.then == "goto" and g.goto:
            return out + self._enter(g.goto)
        node = self._ask()
        if node is not None:
            if g.repeat:
                say = self._prompt(here)
                if say is not None:
                    out.append(say)
            out.append(self._listen(node, here))
        return out
