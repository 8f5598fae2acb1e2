"""A–E intent grades. Rules are evaluated in order; the first that matches wins and is recorded."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.dialog.conditions import parse_condition
from engine.intents import BUSINESS_QUESTION, POSITIVE, REFUSAL


@dataclass
class ConversationStats:
    connected: bool = False
    rounds: int = 0  # callee turns that produced words or digits
    positives: int = 0
    refusals: int = 0
    business_questions: int = 0
    negatives: int = 0

    def count(self, intent: str) -> None:
        self.rounds += 1
        if intent in POSITIVE:
            self.positives += 1
        if intent in REFUSAL:
            self.refusals += 1
            self.negatives += 1
        if intent in BUSINESS_QUESTION:
            self.business_questions += 1


@dataclass(frozen=True)
class GradeRule:
    grade: str
    name: str
    test: Callable[[ConversationStats], bool]


DEFAULT_RULES: tuple[GradeRule, ...] = (
    GradeRule("E", "E: not connected", lambda s: not s.connected),
    GradeRule(
        "A",
        "A: >=2 business questions or >=2 positive answers, and no refusal",
        lambda s: (s.business_questions >= 2 or s.positives >= 2) and s.refusals == 0,
    ),
    GradeRule("B", "B: >=1 positive answer and <=1 refusal", lambda s: s.positives >= 1 and s.refusals <= 1),
    GradeRule(
        "C",
        "C: all answers negative, >=2 refusals, or <=2 rounds",
        lambda s: (s.rounds > 0 and s.negatives == s.rounds) or s.refusals >= 2 or s.rounds <= 2,
    ),
    GradeRule("D", "D: connected", lambda s: True),
)


def grade(stats: ConversationStats, rules: tuple[GradeRule, ...] = DEFAULT_RULES) -> tuple[str, str]:
    for rule in rules:
        if rule.test(stats):
            return rule.grade, rule.name
    return "D", "D: connected"


def grade_call(
    stats: ConversationStats,
    *,
    rules: Sequence[tuple[str, str, str]] = (),
    defaults: bool = True,
    tags: Sequence[str] = (),
    intents: Sequence[str] = (),
    variables: Mapping[str, Any] | None = None,
    override: str | None = None,
    override_at: str | None = None,
) -> tuple[str, str]:
    """The grade and the rule that fired: a dialplan's grade override (set by a node/branch, only for
    connected calls), then its own rules (grade, name, condition) in order, then the A-E defaults."""
    if not stats.connected:
        return "E", "E: not connected"
    if override is not None:
        return override, f"{override}: override at {override_at or 'dialplan'}"
    env: dict[str, Any] = {
        **(variables or {}),
        "connected": stats.connected,
        "rounds": stats.rounds,
        "positives": stats.positives,
        "refusals": stats.refusals,
        "business_questions": stats.business_questions,
        "negatives": stats.negatives,
        "tags": list(tags),
        "intents": list(intents),
    }
    for letter, name, when in rules:
        if parse_condition(when)(env):
            return letter, f"{letter}: {name}"
    if defaults:
        return grade(stats)
    return "D", "D: connected"
