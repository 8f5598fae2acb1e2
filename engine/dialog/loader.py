"""YAML -> Dialplan with errors that name file:line:col and a hint."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ValidationError

from engine.dialog.conditions import ConditionError, parse_condition
from engine.dialog.schema import AskNode, Dialplan, HangupNode, SayNode, TransferNode
from engine.dialog.templating import render, variables_in
from engine.errors import DialplanError
from engine.intents import BASE_INTENTS

_CJK = re.compile(r"[\u4e00-\u9fff]")

BUILTIN_VARIABLES = frozenset({"phone", "callback_time", "callback_when", "agent", "ab_variant"})

#: Kokoro voices shipped by `make models`, and the espeak-ng voices for the two dialplan languages
KOKORO_VOICES: dict[str, str] = {
    **{v: "zh-CN" for v in ("zm_yunjian", "zm_yunxi", "zm_yunxia", "zm_yunyang")},
    **{v: "zh-CN" for v in ("zf_xiaobei", "zf_xiaoni", "zf_xiaoxiao", "zf_xiaoyi")},
    "af_heart": "en-US",
}
ESPEAK_VOICES: dict[str, str] = {
    **{v: "zh-CN" for v in ("cmn", "cmn-latn-pinyin", "zh", "yue", "hak")},
    **{
        v: "en-US"
        for v in (
            "en",
            "en-us",
            "en-us-nyc",
            "en-gb",
            "en-gb-x-rp",
            "en-gb-scotland",
            "en-029",
            "en-gb-x-gbclan",
        )
    },
}
EMOTIONS = frozenset({"neutral", "positive", "negative", "angry"})
#: spoken rate used for the "prompt longer than 8 s" warning
MAX_PROMPT_S = 8.0
ZH_CHARS_PER_S = 5.0
EN_WORDS_PER_S = 2.5


@dataclass(frozen=True)
class Problem:
    path: str
    line: int
    col: int
    message: str
    hint: str | None = None
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        level = "warning: " if self.severity == "warning" else ""
        s = f"{self.path}:{self.line}:{self.col}: {level}{self.message}"
        return f"{s} (hint: {self.hint})" if self.hint else s

    @property
    def is_error(self) -> bool:
        return self.severity == "error"


class _Marks:
    """Positions of every mapping key / sequence item in the YAML, by path of keys."""

    def __init__(self, root: yaml.Node | None) -> None:
        self._pos: dict[tuple[str | int, ...], tuple[int, int]] = {}
        if root is not None:
            self._walk(root, ())

    def _walk(self, node: yaml.Node, path: tuple[str | int, ...]) -> None:
        self._pos[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = k.value if isinstance(k, yaml.ScalarNode) else str(k)
                self._pos[(*path, key)] = (k.start_mark.line + 1, k.start_mark.column + 1)
                self._walk(v, (*path, key))
                self._pos[(*path, key)] = (k.start_mark.line + 1, k.start_mark.column + 1)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._walk(item, (*path, i))

    def at(self, path: tuple[str | int, ...]) -> tuple[int, int]:
        p = path
        while p:
            if p in self._pos:
                return self._pos[p]
            p = p[:-1]
        return self._pos.get((), (1, 1))


def _pydantic_path(loc: tuple[int | str, ...]) -> tuple[str | int, ...]:
    # discriminated unions insert the tag ("ask") into loc: drop entries that are not real keys
    out: list[str | int] = []
    for part in loc:
        if (
            isinstance(part, str)
            and part in ("say", "ask", "hangup", "transfer")
            and out
            and out[-2:-1] == ["nodes"]
        ):
            continue
        out.append(part)
    return tuple(out)


def parse(
    text: str, path: str = "<dialplan>", *, base_dir: Path | None = None
) -> tuple[Dialplan | None, list[Problem]]:
    """Parse and validate. Returns the plan (None on schema errors) and every problem found (errors and
    warnings: see Problem.severity). `base_dir` (the file's folder) enables the recorded-WAV check."""
    try:
        root = yaml.compose(text)
        data: Any = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        return None, [
            Problem(path, line, col, f"YAML syntax: {e.problem or e}", "check indentation and quoting")
        ]
    marks = _Marks(root)
    if not isinstance(data, dict):
        return None, [Problem(path, 1, 1, "a dialplan must be a YAML mapping", "start with `name:`")]
    try:
        plan = Dialplan.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            p = _pydantic_path(tuple(err["loc"]))
            line, col = marks.at(p)
            where = ".".join(str(x) for x in p) or "dialplan"
            problems.append(Problem(path, line, col, f"{where}: {err['msg']}", _hint(err["type"])))
        return None, problems
    return plan, list(check(plan, marks, path, base_dir=base_dir))


def errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.is_error]


def _hint(err_type: str) -> str | None:
    return {
        "extra_forbidden": "remove the key or fix its spelling",
        "missing": "add the required key",
        "union_tag_invalid": "type must be one of: say, ask, hangup, transfer",
        "union_tag_not_found": "give the node a type: say, ask, hangup or transfer",
        "string_type": "quote the text: YAML reads yes/no/on/off as booleans and bare digits as numbers",
    }.get(err_type)


def _targets(plan: Dialplan) -> Iterator[tuple[tuple[str | int, ...], str]]:
    for name, node in plan.nodes.items():
        if isinstance(node, SayNode):
            yield ("nodes", name, "next"), node.next
        elif isinstance(node, AskNode):
            for i, b in enumerate(node.branches):
                yield ("nodes", name, "branches", i, "goto"), b.goto
            if node.default:
                yield ("nodes", name, "default"), node.default
            if node.no_input.goto:
                yield ("nodes", name, "no_input", "goto"), node.no_input.goto
            if node.no_match.goto:
                yield ("nodes", name, "no_match", "goto"), node.no_match.goto
        elif isinstance(node, TransferNode):
            yield ("nodes", name, "fallback"), node.fallback
    for i, g in enumerate(plan.globals):
        if g.goto:
            yield ("globals", i, "goto"), g.goto


def check(
    plan: Dialplan, marks: _Marks | None = None, path: str = "<dialplan>", *, base_dir: Path | None = None
) -> Iterator[Problem]:
    """Semantic checks the schema cannot express."""
    m = marks or _Marks(None)

    def prob(loc: tuple[str | int, ...], msg: str, hint: str | None = None) -> Problem:
        line, col = m.at(loc)
        return Problem(path, line, col, msg, hint)

    def warn(loc: tuple[str | int, ...], msg: str, hint: str | None = None) -> Problem:
        line, col = m.at(loc)
        return Problem(path, line, col, msg, hint, "warning")

    names = set(plan.nodes)
    if plan.start not in names:
        yield prob(("start",), f"start node {plan.start!r} does not exist", f"one of: {sorted(names)}")
    for loc, target in _targets(plan):
        if target not in names:
            yield prob(loc, f"unknown node {target!r}", f"define nodes.{target} or fix the name")
    yield from _check_voice(plan, prob)
    known = plan.known_intents()
    declared = _declared_variables(plan)
    for name, node in plan.nodes.items():
        if not isinstance(node, AskNode):
            continue
        if not node.default:
            yield prob(
                ("nodes", name),
                f"ask node {name!r} has no default",
                "add `default: NODE`: where the call goes when nothing matches; no_input and no_match "
                "fall back to it",
            )
        for i, b in enumerate(node.branches):
            bloc: tuple[str | int, ...] = ("nodes", name, "branches", i)
            for intent in b.intents():
                if intent not in known:
                    yield prob(
                        (*bloc, "intent"),
                        f"unknown intent {intent!r}",
                        "declare it under intents: with examples, or use a base intent: "
                        + ", ".join(BASE_INTENTS),
                    )
            if not (b.has_matcher() or b.when):
                yield prob(bloc, "branch matches nothing", "add intent/keywords/regex/dtmf/emotion/when")
            for e in b.emotions():
                if e not in EMOTIONS:
                    yield prob((*bloc, "emotion"), f"unknown emotion {e!r}", f"one of: {sorted(EMOTIONS)}")
            if b.regex:
                try:
                    re.compile(b.regex)
                except re.error as err:
                    yield prob((*bloc, "regex"), f"bad regex: {err}", "test it with python -c 'import re'")
            if b.when:
                yield from _check_condition(b.when, declared | {"tags"}, (*bloc, "when"), prob)
    for i, g in enumerate(plan.globals):
        if g.intent not in known:
            yield prob(("globals", i, "intent"), f"unknown intent {g.intent!r}")
    stats_names = {
        "connected",
        "rounds",
        "positives",
        "refusals",
        "business_questions",
        "negatives",
        "tags",
        "intents",
    }
    for i, r in enumerate(plan.grading.rules):
        yield from _check_condition(r.when, declared | stats_names, ("grading", "rules", i, "when"), prob)
    for loc, text in _texts(plan):
        for var in variables_in(text):
            if var not in declared:
                yield prob(loc, f"undeclared template variable {var!r}", f"add {var}: to variables:")
        seconds = _spoken_s(render(text, plan.variables), plan.language)
        if seconds > MAX_PROMPT_S:
            yield warn(
                loc,
                f"prompt takes about {seconds:.0f} s to say (over {MAX_PROMPT_S:.0f} s)",
                "keep prompts to ~40 Chinese characters or ~20 English words; split it or cut words",
            )
    reachable = _reachable(plan)
    for name in plan.nodes:
        if name not in reachable:
            yield prob(("nodes", name), f"node {name!r} is unreachable", "link it from a branch or remove it")
    if plan.start in names:
        if not _can_end(plan):
            yield prob(
                ("start",), "no path from start reaches a hangup or transfer node", "add a hangup node"
            )
        else:
            stuck = _stuck(plan, reachable)
            if stuck:
                yield prob(
                    ("nodes", stuck[0]),
                    f"cycle with no exit: {', '.join(stuck)} never reach a hangup or transfer node",
                    "give one of them a branch, default or no_input.goto that leads to an end",
                )
        loop = _say_loop(plan)
        if loop:
            yield prob(
                ("nodes", loop[0]),
                f"say nodes loop without asking: {' -> '.join(loop)}",
                "end the chain at an ask, hangup or transfer node",
            )
    if base_dir is not None:
        for name, node in plan.nodes.items():
            for wav in node.wavs():
                if not (base_dir / wav).is_file():
                    yield prob(
                        ("nodes", name, "wav"),
                        f"recorded prompt {wav!r} not found",
                        f"paths are relative to {base_dir}",
                    )
        vm = plan.voicemail.wav
        if vm and not (base_dir / vm).is_file():
            yield prob(
                ("voicemail", "wav"),
                f"recorded message {vm!r} not found",
                f"paths are relative to {base_dir}",
            )
    yield from _check_variants(plan, m, path)


def _check_voice(plan: Dialplan, prob: Any) -> Iterator[Problem]:
    if plan.voice is None:
        return
    voice = plan.voice.split("+", 1)[0]
    lang = KOKORO_VOICES.get(voice) or ESPEAK_VOICES.get(voice.lower())
    if lang is None:
        same = [v for v, lg in {**KOKORO_VOICES, **ESPEAK_VOICES}.items() if lg == plan.language]
        yield prob(
            ("voice",), f"unknown voice {plan.voice!r}", f"for {plan.language} use one of: {', '.join(same)}"
        )
    elif lang != plan.language:
        yield prob(
            ("voice",),
            f"voice {plan.voice!r} speaks {lang} but the dialplan's language is {plan.language}",
            "pick a voice of the dialplan's language",
        )


def _check_condition(text: str, names: set[str], loc: tuple[str | int, ...], prob: Any) -> Iterator[Problem]:
    try:
        cond = parse_condition(text)
    except ConditionError as e:
        yield prob(loc, f"bad condition: {e}", "e.g. `score >= 9 and 'vip' in tags`")
        return
    for n in sorted(cond.names - names):
        yield prob(
            loc, f"condition uses undeclared variable {n!r}", f"add {n}: to variables: (with a default)"
        )


def _declared_variables(plan: Dialplan) -> set[str]:
    out = set(plan.variables) | BUILTIN_VARIABLES
    for node in plan.nodes.values():
        out |= set(node.set)
        if isinstance(node, AskNode):
            if node.capture is not None:
                out.add(node.capture.var)
                if node.capture.kind == "time":
                    out |= {f"{node.capture.var}_when", f"{node.capture.var}_days"}
            for b in node.branches:
                out |= set(b.set)
    for g in plan.globals:
        out |= set(g.set)
    for v in plan.variants.values():
        out |= set(v.variables)
    return out


def _spoken_s(text: str, language: str) -> float:
    if language.startswith("zh"):
        chars = len(_CJK.findall(text)) + len(re.findall(r"[A-Za-z0-9]+", text))
        return chars / ZH_CHARS_PER_S
    return len(text.split()) / EN_WORDS_PER_S


def _check_variants(plan: Dialplan, m: _Marks, path: str) -> Iterator[Problem]:
    for vname, v in plan.variants.items():
        for node_name in v.nodes:
            if node_name not in plan.nodes:
                line, col = m.at(("variants", vname, "nodes", node_name))
                yield Problem(path, line, col, f"variant {vname!r} overrides unknown node {node_name!r}")
                return
        try:
            merged = plan.with_variant(vname)
        except ValidationError as e:
            for err in e.errors():
                line, col = m.at(("variants", vname))
                yield Problem(path, line, col, f"variant {vname!r}: {err['msg']} at {err['loc']}")
            continue
        for p in check(merged, None, path):
            if p.is_error and "unreachable" not in p.message:
                line, col = m.at(("variants", vname))
                yield Problem(path, line, col, f"variant {vname!r}: {p.message}", p.hint)


def _texts(plan: Dialplan) -> Iterator[tuple[tuple[str | int, ...], str]]:
    pre = plan.preamble
    for key in ("disclosure", "recording_notice"):
        v = getattr(pre, key)
        if v:
            yield ("preamble", key), v
    if plan.voicemail.say:
        yield ("voicemail", "say"), plan.voicemail.say
    for name, node in plan.nodes.items():
        for t in node.texts():
            yield ("nodes", name, "say"), t
        if isinstance(node, AskNode):
            for t in node.no_input.texts():
                yield ("nodes", name, "no_input", "reprompt"), t
            for t in node.no_match.texts():
                yield ("nodes", name, "no_match", "reprompt"), t
    for i, g in enumerate(plan.globals):
        for t in g.texts():
            yield ("globals", i, "say"), t


def _edges(plan: Dialplan, name: str) -> list[str]:
    node = plan.nodes.get(name)
    if isinstance(node, SayNode):
        return [node.next]
    if isinstance(node, AskNode):
        out = [b.goto for b in node.branches] + ([node.default] if node.default else [])
        out += [x for x in (node.no_input.goto, node.no_match.goto) if x]
        return out
    if isinstance(node, TransferNode):
        return [node.fallback]
    return []


def _reachable(plan: Dialplan) -> set[str]:
    seen: set[str] = set()
    stack = [plan.start] + [g.goto for g in plan.globals if g.goto]
    while stack:
        n = stack.pop()
        if n in seen or n not in plan.nodes:
            continue
        seen.add(n)
        stack.extend(_edges(plan, n))
    return seen


def _can_end(plan: Dialplan) -> bool:
    return any(
        isinstance(plan.nodes[n], HangupNode | TransferNode) for n in _reachable(plan) if n in plan.nodes
    )


def _stuck(plan: Dialplan, reachable: set[str]) -> list[str]:
    """Reachable nodes from which no path leads to a hangup/transfer node (a cycle with no exit).
    Global handlers that hang up do not count: the callee may never say those words."""
    ends = {n for n, node in plan.nodes.items() if isinstance(node, HangupNode | TransferNode)}
    good = set(ends)
    changed = True
    while changed:
        changed = False
        for n in plan.nodes:
            if n not in good and any(e in good for e in _edges(plan, n)):
                good.add(n)
                changed = True
    return [n for n in plan.nodes if n in reachable and n not in good]


def _say_loop(plan: Dialplan) -> list[str]:
    for start, node in plan.nodes.items():
        if not isinstance(node, SayNode):
            continue
        chain = [start]
        cur: Any = node
        while isinstance(cur, SayNode) and cur.next in plan.nodes:
            if cur.next in chain:
                return [*chain[chain.index(cur.next) :], cur.next]
            chain.append(cur.next)
            cur = plan.nodes[cur.next]
    return []


def load(path: str | Path) -> Dialplan:
    """Load a dialplan file; raise DialplanError listing every problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise DialplanError(f"dialplan file not found: {p}", path=str(p), hint="check the path") from e
    except UnicodeDecodeError as e:
        raise DialplanError(f"{p}: not UTF-8 text", path=str(p), hint="save the file as UTF-8") from e
    plan, problems = parse(text, str(p), base_dir=p.parent)
    problems = errors(problems)
    if problems or plan is None:
        first = problems[0]
        raise DialplanError(
            "\n".join(str(x) for x in problems),
            path=str(p),
            line=first.line,
            col=first.col,
        )
    return plan
