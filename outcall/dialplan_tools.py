"""Designer tools for dialplans: chat simulator, conversation tests, graph, prerender, inbox export.

All of them walk a dialplan with the real engine.dialog.Runner and a real classifier, so what a designer
sees here is what a call does (minus audio: barge-in is `/interrupt`, silence is `/silence`). The chat uses
the classifier calls use (`runtime`: e5-lora, or rules-v1 without the NLU model); a test file runs with the
classifier it names (`classifier: rules-v1` or `e5-lora`), or with `--classifier runtime|rules`.

Conversation tests live beside the plans, in dialplans/tests/<name>.yaml:

    dialplan: trial-class-zh
    classifier: rules-v1            # the classifier the expectations were written with
    now: "2026-01-05T10:00:00"      # the callee's clock, for call-back times (optional)
    cases:
      - name: happy path
        turns:
          - callee: 好的，可以            # or `silence: true`, `dtmf: "1"`, `interrupt: 好的`
            intent: affirm              # optional per-turn expectations: intent, node, says
            node: confirm
        expect: {nodes: [greet, confirm], says: [地址], disposition: answered, tags: [booked], grade: B}

`outcall dialplan test --pin` records, per turn, the intent and the node the classifier led to in
<name>.pin.json; a later run with another classifier version that changes one of those branches (the node
reached) fails; an intent that changed but led to the same node is reported as a note.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

import dialplans
from engine.dialog.runner import Action, Hangup, Listen, Runner, Say, Transfer
from engine.dialog.schema import AskNode, Dialplan, HangupNode, SayNode, TransferNode
from engine.dispositions import Disposition
from engine.errors import DialplanError
from engine.intents import Intent
from engine.ports import ClassifyContext, Prediction

_URGENT = frozenset({Intent.STOP_CALLING.value, Intent.COMPLAINT.value})


CLASSIFIERS = ("runtime", "rules")


def default_classifier() -> Any:
    """rules-v1: deterministic and model-free (unit tests, and test files written for it)."""
    from models.nlu.rules import RulesClassifier

    return RulesClassifier()


@functools.cache
def runtime_classifier() -> Any:
    """The classifier calls use (e5-lora, or rules-v1 when the NLU model is not installed), loaded once."""
    from outcall.runtime import build_classifier
    from outcall.settings import load_settings

    return build_classifier(Path(load_settings().models_dir), [])


def load_classifier(kind: str | None) -> Any:
    """`runtime` (what calls use), `rules` (rules-v1), or a test file's `classifier:` id (rules-v1 -> rules,
    anything else -> runtime). None -> runtime."""
    if kind in ("rules", "rules-v1") or (kind or "").startswith("rules-v1@"):
        return default_classifier()
    return runtime_classifier()


def classifier_id(classifier: Any) -> str:
    version = getattr(classifier, "version", None)
    name = str(getattr(classifier, "name", type(classifier).__name__))
    return f"{name}@{version}" if version else name


# --- the simulator ------------------------------------------------------------------------------------


@dataclass
class Line:
    speaker: str  # bot | callee | note
    text: str
    node: str | None = None
    kind: str = ""
    intent: str | None = None
    confidence: float | None = None
    emotion: str | None = None
    interrupted: bool = False


@dataclass
class Step:
    """What one callee turn produced."""

    intent: str | None
    node: str | None
    bot: list[str] = field(default_factory=list)


class Simulator:
    """A call without a phone: feeds the runner what a session would, keeps the transcript."""

    def __init__(
        self,
        plan: Dialplan,
        classifier: Any,
        *,
        variables: dict[str, Any] | None = None,
        now: datetime | None = None,
    ) -> None:
        self.plan = plan
        self.classifier = classifier
        self.variables = dict(variables or {})
        self.now = now or datetime.now().astimezone()
        self.restart()

    def restart(self) -> list[Line]:
        self.runner = Runner(self.plan, dict(self.variables), now=self.now)
        self.lines: list[Line] = []
        self.listen: Listen | None = None
        self.disposition: Disposition | None = None
        self.ended = False
        return self._run(self.runner.start())

    # --- callee events ----------------------------------------------------------------------------------

    def say(self, text: str) -> tuple[Step, list[Line]]:
        if self.ended:
            return Step(None, self.runner.state.node), []
        pred = self._classify(text)
        self.lines.append(
            Line(
                "callee",
                text,
                self.runner.state.node,
                intent=pred.intent,
                confidence=pred.confidence,
                emotion=pred.emotion,
            )
        )
        out = self._run(self.runner.on_reply(text, pred))
        return Step(pred.intent, self.runner.state.node, [x.text for x in out if x.speaker == "bot"]), out

    def silence(self) -> tuple[Step, list[Line]]:
        if self.ended:
            return Step(None, self.runner.state.node), []
        self.lines.append(Line("callee", "", self.runner.state.node, kind="silence"))
        out = self._run(self.runner.on_no_input())
        return Step(None, self.runner.state.node, [x.text for x in out if x.speaker == "bot"]), out

    def dtmf(self, digit: str) -> tuple[Step, list[Line]]:
        if self.ended:
            return Step(None, self.runner.state.node), []
        self.lines.append(Line("callee", f"[dtmf {digit}]", self.runner.state.node, kind="dtmf"))
        out = self._run(self.runner.on_reply("", None, dtmf=digit))
        return Step(f"dtmf:{digit}", self.runner.state.node, [x.text for x in out if x.speaker == "bot"]), out

    def interrupt(self, text: str, *, during: str = "prompt") -> tuple[Step, list[Line]]:
        """The callee speaks over the last prompt (`during: preamble`: over the compliance preamble).
        An interruptible prompt is cut and the words answer it; over a non-interruptible one (legal
        disclosures, the preamble) the words are heard but only stop-calling / complaint are acted on."""
        bots = [x for x in self.lines if x.speaker == "bot"]
        if during == "preamble":
            target = next((x for x in bots if x.kind == "preamble"), None)
        else:
            target = bots[-1] if bots else None
        interruptible = target is not None and target.kind != "preamble" and self._interruptible(target)
        if interruptible and target is not None:
            target.interrupted = True
            return self.say(text)
        pred = self._classify(text)
        self.lines.append(
            Line(
                "callee",
                text,
                self.runner.state.node,
                kind="over-prompt",
                intent=pred.intent,
                confidence=pred.confidence,
                emotion=pred.emotion,
            )
        )
        if pred.intent in _URGENT:
            out = self._run(self.runner.on_reply(text, pred))
            return Step(pred.intent, self.runner.state.node, [x.text for x in out if x.speaker == "bot"]), out
        note = Line("note", "the prompt is not interruptible: it plays on; the words are only kept")
        self.lines.append(note)
        return Step(pred.intent, self.runner.state.node), [note]

    # --- internals ------------------------------------------------------------------------------------

    def _interruptible(self, line: Line) -> bool:
        node = self.plan.nodes.get(line.node or "")
        if line.kind == "global":
            return True
        return node is not None and node.can_interrupt()

    def _classify(self, text: str) -> Prediction:
        ctx = ClassifyContext(
            question=next((x.text for x in reversed(self.lines) if x.speaker == "bot"), None),
            expects=self.listen.expects if self.listen else None,
            language=self.plan.language,
            extra_intents={k: v.examples for k, v in self.plan.intents.items()},
        )
        pred: Prediction = self.classifier.classify_one(text, ctx)
        return pred

    def _run(self, actions: list[Action]) -> list[Line]:
        out: list[Line] = []
        queue = list(actions)
        while queue:
            a = queue.pop(0)
            if isinstance(a, Say):
                line = Line("bot", a.text, a.node, kind=a.kind)
                out.append(line)
            elif isinstance(a, Listen):
                self.listen = a
            elif isinstance(a, Transfer):
                out.append(Line("note", f"transfer to queue {a.queue!r}: no agent in simulation, fallback"))
                queue = self.runner.on_transfer_failed() + queue
            elif isinstance(a, Hangup):
                self.ended = True
                self.listen = None
                self.disposition = a.disposition
                out.append(Line("note", f"hang up ({a.disposition.value}, {a.reason})"))
        self.lines += out
        return out

    def grade(self) -> tuple[str, str]:
        return self.runner.grade()

    def bot_text(self) -> str:
        return "\n".join(x.text for x in self.lines if x.speaker == "bot")


# --- chat -----------------------------------------------------------------------------------------------

_CHAT_HELP = (
    "/silence  /dtmf 1  /interrupt WORDS  /restart  /vars  /quit   (anything else: the callee says it)"
)


def chat(
    plan: Dialplan,
    *,
    variables: dict[str, Any] | None = None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    classifier: Any = None,
) -> int:
    """A terminal conversation with a dialplan. Reads callee lines from stdin (so it works with a pipe)."""
    inp = stdin or sys.stdin
    out = stdout or sys.stdout
    clf = classifier or runtime_classifier()
    sim = Simulator(plan, clf, variables=variables)

    def w(text: str) -> None:
        out.write(text + "\n")
        out.flush()

    def show(lines: Iterable[Line]) -> None:
        for x in lines:
            if x.speaker == "bot":
                tag = x.kind if x.kind in ("preamble", "reprompt", "global") else x.node
                w(f"bot[{tag}]: {x.text}")
            elif x.speaker == "note":
                w(f"  ({x.text})")

    def state(step: Step | None, before: dict[str, Any], lines: Iterable[Line] = ()) -> None:
        if step is not None and step.intent:
            last = next((x for x in reversed(sim.lines) if x.speaker == "callee"), None)
            conf = f" ({last.confidence:.2f}, {last.emotion})" if last and last.confidence is not None else ""
            w(f"  intent: {step.intent}{conf}")
        show(lines)
        vars_now = sim.runner.state.variables
        changed = {k: v for k, v in vars_now.items() if before.get(k) != v}
        where = "ended" if sim.ended else f"node: {sim.runner.state.node}"
        w(f"  {where}" + (f"  set: {json.dumps(changed, ensure_ascii=False)}" if changed else ""))
        if sim.ended:
            g, rule = sim.grade()
            w(f"  tags: {sim.runner.state.tags}  grade: {g} ({rule})  — /restart to start again")

    w(f"chat with {plan.name} v{plan.version} ({plan.language}, classifier {classifier_id(clf)}).")
    w(_CHAT_HELP)
    before: dict[str, Any] = {}
    show(sim.lines)
    state(None, dict(plan.variables))
    for raw in inp:
        text = raw.strip()
        if not text:
            continue
        w(f"you> {text}")
        before = dict(sim.runner.state.variables)
        cmd, _, arg = text.partition(" ")
        step: Step | None
        if cmd == "/quit":
            break
        if cmd == "/help":
            w(_CHAT_HELP)
            continue
        if cmd == "/vars":
            w(json.dumps(sim.runner.outcome_variables(), ensure_ascii=False, indent=1))
            continue
        if cmd == "/restart":
            sim.restart()
            show(sim.lines)
            state(None, dict(plan.variables))
            continue
        if sim.ended:
            w("  (the call has ended — /restart)")
            continue
        if cmd == "/silence":
            step, lines = sim.silence()
        elif cmd == "/dtmf":
            if not arg.strip():
                w("  usage: /dtmf 1")
                continue
            step, lines = sim.dtmf(arg.strip()[0])
        elif cmd == "/interrupt":
            step, lines = sim.interrupt(arg.strip() or "嗯")
        elif cmd.startswith("/"):
            w(f"  unknown command {cmd}: {_CHAT_HELP}")
            continue
        else:
            step, lines = sim.say(text)
        state(step, before, lines)
    return 0


# --- conversation tests --------------------------------------------------------------------------------


class _TestTurn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    callee: str | None = None
    silence: bool = False
    dtmf: str | None = None
    interrupt: str | None = None
    during: str = "prompt"
    intent: str | None = None
    node: str | None = None
    says: str | list[str] | None = None

    @model_validator(mode="before")
    @classmethod
    def _plain(cls, v: Any) -> Any:
        if isinstance(v, str):
            return {"silence": True} if v == "silence" else {"callee": v}
        return v

    @model_validator(mode="after")
    def _one(self) -> _TestTurn:
        n = sum(x is not None for x in (self.callee, self.dtmf, self.interrupt)) + self.silence
        if n != 1:
            raise ValueError("a turn is exactly one of: callee, silence, dtmf, interrupt")
        return self

    def label(self) -> str:
        if self.silence:
            return "(silence)"
        if self.dtmf is not None:
            return f"[dtmf {self.dtmf}]"
        if self.interrupt is not None:
            return f"[interrupt] {self.interrupt}"
        return self.callee or ""


class _Expect(BaseModel):
    model_config = ConfigDict(extra="forbid")

    nodes: list[str] = Field(
        default_factory=list, description="visited in this order (others may be between)"
    )
    says: list[str] = Field(default_factory=list, description="fragments the bot says")
    not_says: list[str] = Field(default_factory=list)
    disposition: str | None = None
    tags: list[str] = Field(default_factory=list)
    no_tags: list[str] = Field(default_factory=list)
    grade: str | None = None
    ended: bool | None = True
    variables: dict[str, Any] = Field(default_factory=dict)
    follow_up: list[str] = Field(default_factory=list, description="template names requested")


class _Case(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    variables: dict[str, Any] = Field(default_factory=dict)
    variant: str | None = None
    turns: list[_TestTurn] = Field(default_factory=list)
    expect: _Expect = Field(default_factory=_Expect)


class TestFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dialplan: str
    classifier: str | None = None
    now: datetime | None = None
    variables: dict[str, Any] = Field(default_factory=dict)
    cases: list[_Case] = Field(min_length=1)


@dataclass
class CaseResult:
    name: str
    ok: bool
    failures: list[str]
    turns: list[tuple[str, str | None, str | None]]  # label, intent, node after


@dataclass
class FileResult:
    path: Path
    plan: str
    version: str
    classifier: str
    pinned: str | None
    cases: list[CaseResult]
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.cases)


def tests_dir() -> Path:
    return dialplans.DIR / "tests"


def find_tests(target: str | None) -> list[Path]:
    """Test files for a dialplan name, a plan path (its tests/<stem>.yaml), a test file path, or all."""
    if target is None:
        return sorted(tests_dir().glob("*.yaml"))
    p = Path(target)
    if p.is_file():
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
        if isinstance(data, dict) and "cases" in data:
            return [p]
        beside = p.parent / "tests" / f"{p.stem}.yaml"
        if beside.is_file():
            return [beside]
        raise DialplanError(f"no conversation tests for {p}", hint=f"write them in {beside}")
    shipped = tests_dir() / f"{target}.yaml"
    if shipped.is_file():
        return [shipped]
    raise DialplanError(
        f"no conversation tests named {target!r}",
        hint=f"tests are dialplans/tests/<name>.yaml; have: {', '.join(p.stem for p in find_tests(None))}",
    )


def pin_path(test_path: Path) -> Path:
    return test_path.with_suffix(".pin.json")


def load_test_file(path: Path) -> TestFile:
    try:
        return TestFile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except yaml.YAMLError as e:
        raise DialplanError(f"{path}: YAML syntax: {e}", path=str(path)) from e
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise DialplanError(f"{path}: {where}: {err['msg']}", path=str(path)) from e


def _plan_for(tf: TestFile, test_path: Path) -> Dialplan:
    p = Path(tf.dialplan)
    if not p.is_absolute() and (test_path.parent / p).suffix in (".yaml", ".yml"):
        candidate = test_path.parent / p
        if candidate.is_file():
            return dialplans.get(str(candidate))
    return dialplans.get(tf.dialplan)


def run_case(plan: Dialplan, case: _Case, tf: TestFile, classifier: Any) -> CaseResult:
    if case.variant and case.variant not in plan.variants:
        return CaseResult(case.name, False, [f"unknown variant {case.variant!r}"], [])
    sim = Simulator(
        plan.with_variant(case.variant),
        classifier,
        variables={**tf.variables, **case.variables},
        now=tf.now or datetime(2026, 1, 5, 10, 0),
    )
    failures: list[str] = []
    turns: list[tuple[str, str | None, str | None]] = []
    for i, t in enumerate(case.turns, 1):
        if sim.ended:
            failures.append(f"turn {i} ({t.label()}): the call had already ended at {sim.runner.state.node}")
            break
        if t.silence:
            step, _ = sim.silence()
        elif t.dtmf is not None:
            step, _ = sim.dtmf(t.dtmf)
        elif t.interrupt is not None:
            step, _ = sim.interrupt(t.interrupt, during=t.during)
        else:
            step, _ = sim.say(t.callee or "")
        turns.append((t.label(), step.intent, step.node))
        if t.intent is not None and step.intent != t.intent:
            failures.append(f"turn {i} ({t.label()}): intent {step.intent!r}, expected {t.intent!r}")
        if t.node is not None and step.node != t.node:
            failures.append(f"turn {i} ({t.label()}): at node {step.node!r}, expected {t.node!r}")
        for frag in [t.says] if isinstance(t.says, str) else t.says or []:
            if not any(frag in b for b in step.bot):
                failures.append(f"turn {i} ({t.label()}): bot did not say {frag!r} (said {step.bot})")
    e = case.expect
    st = sim.runner.state
    path = st.path
    pos = 0
    for n in e.nodes:
        try:
            pos = path.index(n, pos) + 1
        except ValueError:
            failures.append(f"path {path} does not visit {e.nodes} in order (missing {n!r})")
            break
    text = sim.bot_text()
    failures += [f"bot never said {f!r}" for f in e.says if f not in text]
    failures += [f"bot said {f!r}" for f in e.not_says if f in text]
    if e.ended is not None and sim.ended != e.ended:
        failures.append(f"call ended={sim.ended}, expected {e.ended} (at {st.node})")
    if e.disposition is not None:
        got = sim.disposition.value if sim.disposition else None
        if got != e.disposition:
            failures.append(f"disposition {got!r}, expected {e.disposition!r}")
    failures += [f"tag {t!r} missing (tags {st.tags})" for t in e.tags if t not in st.tags]
    failures += [f"unexpected tag {t!r}" for t in e.no_tags if t in st.tags]
    if e.grade is not None:
        g, rule = sim.grade()
        if g != e.grade:
            failures.append(f"grade {g} ({rule}), expected {e.grade}")
    for k, v in e.variables.items():
        if st.variables.get(k) != v:
            failures.append(f"variable {k}={st.variables.get(k)!r}, expected {v!r}")
    templates = [f["template"] for f in st.follow_ups]
    failures += [f"follow-up {t!r} not requested ({templates})" for t in e.follow_up if t not in templates]
    return CaseResult(case.name, not failures, failures, turns)


def run_test_file(
    path: Path, classifier: Any = None, *, pin: bool = False, check_pin: bool = True
) -> FileResult:
    tf = load_test_file(path)
    plan = _plan_for(tf, path)
    clf = classifier or load_classifier(tf.classifier)
    cid = classifier_id(clf)
    results = [run_case(plan, c, tf, clf) for c in tf.cases]
    res = FileResult(path, plan.name, plan.version, cid, None, results)
    if tf.classifier and tf.classifier != cid:
        res.notes.append(f"tests were written with classifier {tf.classifier}; running {cid}")
    pp = pin_path(path)
    if pin:
        data = {
            "classifier": cid,
            "dialplan": f"{plan.name}@{plan.version}",
            "cases": {r.name: [[label, intent, node] for label, intent, node in r.turns] for r in results},
        }
        pp.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        res.notes.append(f"pinned {cid} branches to {pp}")
    elif pp.is_file() and check_pin:
        pinned = json.loads(pp.read_text(encoding="utf-8"))
        res.pinned = str(pinned.get("classifier"))
        for r in results:
            want = pinned.get("cases", {}).get(r.name)
            if want is None:
                continue
            for i, (got, exp) in enumerate(zip(r.turns, want, strict=False), 1):
                if got[2] != exp[2]:  # the branch taken is behaviour: a changed one fails
                    r.ok = False
                    r.failures.append(
                        f"turn {i} ({got[0]}): branch changed since the pin: {res.pinned} gave "
                        f"{exp[1]} -> {exp[2]}, {cid} gives {got[1]} -> {got[2]} "
                        "(check the dialplan, then re-pin with `outcall dialplan test --pin`)"
                    )
                elif got[1] != exp[1]:  # another label leading to the same node: worth knowing, not wrong
                    res.notes.append(
                        f"{r.name}, turn {i} ({got[0]}): intent {exp[1]} -> {got[1]}, same branch {got[2]}"
                    )
        if res.pinned != cid and res.ok:
            res.notes.append(f"classifier {cid} differs from the pin {res.pinned}; every branch is the same")
    return res


def format_results(results: Sequence[FileResult]) -> str:
    rows: list[tuple[str, str, str, str]] = []
    lines: list[str] = []
    for fr in results:
        for c in fr.cases:
            rows.append((f"{fr.plan}@{fr.version}", c.name, "PASS" if c.ok else "FAIL", str(len(c.turns))))
    w0 = max([len(r[0]) for r in rows] + [8])
    w1 = max([_width(r[1]) for r in rows] + [4])
    lines.append(f"{'dialplan':<{w0}}  {'case':<{w1}}  result  turns")
    for r in rows:
        lines.append(f"{r[0]:<{w0}}  {r[1]}{' ' * (w1 - _width(r[1]))}  {r[2]:<6}  {r[3]}")
    for fr in results:
        for c in fr.cases:
            for f in c.failures:
                lines.append(f"FAIL {fr.plan} / {c.name}: {f}")
        for n in fr.notes:
            lines.append(f"note {fr.plan}: {n}")
    passed = sum(c.ok for fr in results for c in fr.cases)
    total = sum(len(fr.cases) for fr in results)
    cids = sorted({fr.classifier for fr in results})
    lines.append(f"{passed}/{total} passed (classifier {', '.join(cids)})")
    return "\n".join(lines)


def _width(s: str) -> int:
    return sum(2 if ord(c) > 0x2E80 else 1 for c in s)


# --- graph ----------------------------------------------------------------------------------------------


def _edges(plan: Dialplan) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    for name, node in plan.nodes.items():
        if isinstance(node, SayNode):
            out.append((name, node.next, ""))
        elif isinstance(node, AskNode):
            for b in node.branches:
                label = "/".join(
                    b.intents()
                    + [f"'{k}'" for k in b.keywords[:2]]
                    + [f"#{d}" for d in b.digits()]
                    + ([f"/{b.regex}/"] if b.regex else [])
                    + b.emotions()
                    + ([b.when] if b.when else [])
                )
                out.append((name, b.goto, label))
            if node.default:
                out.append((name, node.default, "default"))
            if node.no_input.goto:
                out.append((name, node.no_input.goto, "silence"))
            if node.no_match.goto:
                out.append((name, node.no_match.goto, "no match"))
        elif isinstance(node, TransferNode):
            out.append((name, node.fallback, "no agent"))
    return out


def graph_data(plan: Dialplan) -> dict[str, Any]:
    """The tree for a client to draw: start, nodes (name, type, label), edges (from, to, label)."""
    return {
        "start": plan.start,
        "nodes": [
            {"name": n, "type": node.type, "label": _node_label(n, plan)} for n, node in plan.nodes.items()
        ],
        "edges": [{"from": a, "to": b, "label": lab} for a, b, lab in _edges(plan) if b in plan.nodes],
    }


def _node_label(name: str, plan: Dialplan) -> str:
    node = plan.nodes[name]
    extra = ""
    if isinstance(node, HangupNode):
        extra = " ■ " + ",".join(node.tags()) if node.tags() else " ■"
    elif isinstance(node, TransferNode):
        extra = f" → {node.queue}"
    return f"{name}{extra}"


def graph(plan: Dialplan, fmt: str = "mermaid") -> str:
    edges = _edges(plan)
    if fmt == "mermaid":
        out = ["flowchart TD"]
        for name, node in plan.nodes.items():
            label = _node_label(name, plan).replace('"', "'")
            if isinstance(node, AskNode):
                out.append(f'  {_id(name)}{{"{label}"}}')
            elif isinstance(node, HangupNode):
                out.append(f'  {_id(name)}(["{label}"])')
            else:
                out.append(f'  {_id(name)}["{label}"]')
        out.append(f"  START((start)) --> {_id(plan.start)}")
        for a, b, label in edges:
            lab = label.replace('"', "'").replace("|", "/")
            out.append(f"  {_id(a)} -->|{lab}| {_id(b)}" if lab else f"  {_id(a)} --> {_id(b)}")
        for g in plan.globals:
            target = g.goto if g.then == "goto" else g.then
            out.append(f"  %% global {g.intent}: {target}")
        return "\n".join(out)
    out = [f'digraph "{plan.name}" {{', "  rankdir=TB;", '  node [fontname="sans-serif"];']
    for name, node in plan.nodes.items():
        shape = (
            "diamond"
            if isinstance(node, AskNode)
            else "doublecircle"
            if isinstance(node, HangupNode)
            else "box"
        )
        out.append(f'  "{name}" [shape={shape}, label="{_node_label(name, plan)}"];')
    out.append(f'  "__start" [shape=point]; "__start" -> "{plan.start}";')
    for a, b, label in edges:
        out.append(f'  "{a}" -> "{b}" [label="{label.replace(chr(34), chr(39))}"];')
    globals_label = "\\n".join(f"{g.intent}: {g.goto if g.then == 'goto' else g.then}" for g in plan.globals)
    if globals_label:
        out.append(f'  "__globals" [shape=note, label="globals\\n{globals_label}"];')
    out.append("}")
    return "\n".join(out)


def _id(name: str) -> str:
    return "n_" + "".join(c if c.isalnum() else "_" for c in name)


def svg(dot_text: str) -> bytes:
    binary = shutil.which("dot")
    if binary is None:
        raise DialplanError(
            "`dot` (Graphviz) is not installed", hint="apt-get install graphviz, or use --format dot"
        )
    return subprocess.run([binary, "-Tsvg"], input=dot_text.encode(), capture_output=True, check=True).stdout


# --- inbox ----------------------------------------------------------------------------------------------


def inbox_rows(outcomes: Iterable[Any], plan_name: str) -> list[dict[str, Any]]:
    """Every no_match reply of stored outcomes of one dialplan: node, text, intent, confidence, call."""
    rows: list[dict[str, Any]] = []
    for o in outcomes:
        if o.dialplan != plan_name:
            continue
        for item in o.variables.get("no_match", []) or []:
            rows.append(
                {
                    "dialplan_version": o.dialplan_version,
                    "node": item.get("node"),
                    "text": item.get("text"),
                    "intent": item.get("intent"),
                    "confidence": item.get("confidence"),
                    "call_id": o.call_id,
                    "at": o.started_at.isoformat(),
                }
            )
    return rows


def build_synthesizer(settings: Any) -> Any:
    """The runtime's synthesizer (Kokoro or espeak-ng, behind the prompt cache), without the ASR."""
    from models.tts.cache import PromptCache

    models_dir = Path(settings.models_dir)
    if settings.tts == "kokoro":
        from models.tts.kokoro import KokoroSynthesizer

        synth: Any = KokoroSynthesizer(models_dir / "kokoro")
    else:
        from models.tts.espeak import EspeakSynthesizer

        synth = EspeakSynthesizer()
    return PromptCache(synth, models_dir / "cache")


async def prerender(plan: Dialplan, synthesizer: Any) -> int:
    """Render every static prompt (the A/B variants' too) through the synthesizer into its cache."""
    from engine.dialog.prompts import static_prompts

    texts = static_prompts(plan)
    for t in texts:
        await synthesizer.render(t, voice=plan.voice)
    return len(texts)
