"""YAML -> Dialplan with errors that name file:line:col and a hint."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from engine.dialog.schema import AskNode, Dialplan, SayNode, TransferNode
from engine.dialog.templating import variables_in
from engine.errors import DialplanError

BUILTIN_VARIABLES = frozenset({"phone", "callback_time", "agent"})


@dataclass(frozen=True)
class Problem:
    path: str
    line: int
    col: int
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        s = f"{self.path}:{self.line}:{self.col}: {self.message}"
        return f"{s} (hint: {self.hint})" if self.hint else s


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


def parse(text: str, path: str = "<dialplan>") -> tuple[Dialplan | None, list[Problem]]:
    """Parse and validate. Returns the plan (None on schema errors) and every problem found."""
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
    return plan, list(check(plan, marks, path))


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


def check(plan: Dialplan, marks: _Marks | None = None, path: str = "<dialplan>") -> Iterator[Problem]:
    """Semantic checks the schema cannot express."""
    m = marks or _Marks(None)

    def prob(loc: tuple[str | int, ...], msg: str, hint: str | None = None) -> Problem:
        line, col = m.at(loc)
        return Problem(path, line, col, msg, hint)

    names = set(plan.nodes)
    if plan.start not in names:
        yield prob(("start",), f"start node {plan.start!r} does not exist", f"one of: {sorted(names)}")
    for loc, target in _targets(plan):
        if target not in names:
            yield prob(loc, f"unknown node {target!r}", f"define nodes.{target} or fix the name")
    known = plan.known_intents()
    for name, node in plan.nodes.items():
        if isinstance(node, AskNode):
            for i, b in enumerate(node.branches):
                for intent in b.intents():
                    if intent not in known:
                        yield prob(
                            ("nodes", name, "branches", i, "intent"),
                            f"unknown intent {intent!r}",
                            "declare it under intents: with examples, or use a base intent",
                        )
                if not (b.intents() or b.keywords or b.dtmf):
                    yield prob(
                        ("nodes", name, "branches", i), "branch matches nothing", "add intent/keywords/dtmf"
                    )
    for i, g in enumerate(plan.globals):
        if g.intent not in known:
            yield prob(("globals", i, "intent"), f"unknown intent {g.intent!r}")
    declared = set(plan.variables) | BUILTIN_VARIABLES
    for loc, text in _texts(plan):
        for var in variables_in(text):
            if var not in declared:
                yield prob(loc, f"undeclared template variable {var!r}", f"add {var}: to variables:")
    reachable = _reachable(plan)
    for name in plan.nodes:
        if name not in reachable:
            yield prob(("nodes", name), f"node {name!r} is unreachable", "link it from a branch or remove it")
    if plan.start in names and not _can_end(plan):
        yield prob(("start",), "no path from start reaches a hangup or transfer node", "add a hangup node")


def _texts(plan: Dialplan) -> Iterator[tuple[tuple[str | int, ...], str]]:
    pre = plan.preamble
    for key in ("disclosure", "recording_notice"):
        v = getattr(pre, key)
        if v:
            yield ("preamble", key), v
    for name, node in plan.nodes.items():
        for t in node.texts():
            yield ("nodes", name, "say"), t
        if isinstance(node, AskNode):
            if node.no_input.reprompt:
                yield ("nodes", name, "no_input", "reprompt"), node.no_input.reprompt
            if node.no_match.reprompt:
                yield ("nodes", name, "no_match", "reprompt"), node.no_match.reprompt
    for i, g in enumerate(plan.globals):
        if isinstance(g.say, str):
            yield ("globals", i, "say"), g.say
        elif g.say:
            for t in g.say:
                yield ("globals", i, "say"), t


def _edges(plan: Dialplan, name: str) -> list[str]:
    node = plan.nodes.get(name)
    if isinstance(node, SayNode):
        return [node.next]
    if isinstance(node, AskNode):
        out = [b.goto for b in node.branches] + [node.default]
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
    from engine.dialog.schema import HangupNode

    return any(
        isinstance(plan.nodes[n], HangupNode | TransferNode) for n in _reachable(plan) if n in plan.nodes
    )


def load(path: str | Path) -> Dialplan:
    """Load a dialplan file; raise DialplanError listing every problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise DialplanError(f"dialplan file not found: {p}", path=str(p), hint="check the path") from e
    except UnicodeDecodeError as e:
        raise DialplanError(f"{p}: not UTF-8 text", path=str(p), hint="save the file as UTF-8") from e
    plan, problems = parse(text, str(p))
    if problems or plan is None:
        first = problems[0]
        raise DialplanError(
            "\n".join(str(x) for x in problems),
            path=str(p),
            line=first.line,
            col=first.col,
        )
    return plan
