"""A tiny, safe condition language for branch `when:` and grading rules.

    score >= 9                      comparisons: == != >= <= > <
    vip == true and not opted_out   and / or / not, parentheses
    'booked' in tags                membership (in / not in) of lists and strings
    city == "上海"                  strings in single or double quotes; numbers; true / false / null

Names are looked up in a mapping (dialplan variables, or conversation statistics for grading). A missing
name is null. Nothing is ever executed: the text is parsed into a small tree once and evaluated against
the mapping.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<num>-?\d+(?:\.\d+)?) |
        (?P<str>"[^"]*"|'[^']*') |
        (?P<op>==|!=|>=|<=|>|<|\(|\)) |
        (?P<name>[A-Za-z_][A-Za-z0-9_.]*)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "not", "in", "true", "false", "null"}


class ConditionError(ValueError):
    """A condition that does not parse; the message says where and what was expected."""


@dataclass(frozen=True)
class Condition:
    text: str
    _eval: Callable[[Mapping[str, Any]], Any]
    names: frozenset[str]

    def __call__(self, env: Mapping[str, Any]) -> bool:
        try:
            return bool(self._eval(env))
        except TypeError:  # comparing a string with a number, or null with a number: not a match
            return False


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise ConditionError(f"cannot read {text[pos:].strip()!r} in condition {text!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def parse_condition(text: str) -> Condition:
    toks = _tokens(text)
    names: set[str] = set()
    i = 0

    def peek() -> tuple[str, str] | None:
        return toks[i] if i < len(toks) else None

    def take() -> tuple[str, str]:
        nonlocal i
        if i >= len(toks):
            raise ConditionError(f"condition {text!r} ends too early")
        i += 1
        return toks[i - 1]

    def is_word(word: str) -> bool:
        t = peek()
        return t is not None and t[0] == "name" and t[1] == word

    Fn = Callable[[Mapping[str, Any]], Any]

    def atom() -> Fn:
        kind, val = take()
        if kind == "num":
            n: Any = float(val) if "." in val else int(val)
            return lambda env: n
        if kind == "str":
            s = val[1:-1]
            return lambda env: s
        if kind == "op" and val == "(":
            inner = disjunction()
            if take() != ("op", ")"):
                raise ConditionError(f"missing ')' in condition {text!r}")
            return inner
        if kind == "name":
            if val in ("true", "false", "null"):
                const = {"true": True, "false": False, "null": None}[val]
                return lambda env: const
            if val in _KEYWORDS:
                raise ConditionError(f"unexpected {val!r} in condition {text!r}")
            names.add(val)
            return lambda env: env.get(val)
        raise ConditionError(f"unexpected {val!r} in condition {text!r}")

    ops: dict[str, Callable[[Any, Any], bool]] = {
        "==": lambda a, b: a == b,
        "!=": lambda a, b: a != b,
        ">=": lambda a, b: a is not None and b is not None and a >= b,
        "<=": lambda a, b: a is not None and b is not None and a <= b,
        ">": lambda a, b: a is not None and b is not None and a > b,
        "<": lambda a, b: a is not None and b is not None and a < b,
    }

    def comparison() -> Fn:
        left = atom()
        t = peek()
        if t is not None and t[0] == "op" and t[1] in ops:
            take()
            op = ops[t[1]]
            right = atom()
            return lambda env: op(_num(left(env)), _num(right(env)))
        negate = False
        if is_word("not") and i + 1 < len(toks) and toks[i + 1] == ("name", "in"):
            take()
            negate = True
        if is_word("in"):
            take()
            right = atom()

            def member(env: Mapping[str, Any]) -> bool:
                hay = right(env)
                found = hay is not None and left(env) in hay
                return not found if negate else found

            return member
        if negate:
            raise ConditionError(f"expected 'in' after 'not' in condition {text!r}")
        return left

    def negation() -> Fn:
        if is_word("not"):
            take()
            inner = negation()
            return lambda env: not inner(env)
        return comparison()

    def conjunction() -> Fn:
        parts = [negation()]
        while is_word("and"):
            take()
            parts.append(negation())
        if len(parts) == 1:
            return parts[0]
        return lambda env: all(p(env) for p in parts)

    def disjunction() -> Fn:
        parts = [conjunction()]
        while is_word("or"):
            take()
            parts.append(conjunction())
        if len(parts) == 1:
            return parts[0]
        return lambda env: any(p(env) for p in parts)

    if not toks:
        raise ConditionError("empty condition")
    fn = disjunction()
    if i != len(toks):
        raise ConditionError(f"unexpected {toks[i][1]!r} in condition {text!r}")
    return Condition(text, fn, frozenset(names))


def _num(v: Any) -> Any:
    """Numbers captured from speech arrive as strings sometimes ("9"): compare them as numbers."""
    if isinstance(v, str) and re.fullmatch(r"-?\d+(?:\.\d+)?", v):
        return float(v) if "." in v else int(v)
    return v
