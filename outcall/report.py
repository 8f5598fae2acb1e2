"""Human-readable renderings of outcomes (terminal)."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

from engine.outcome import CallOutcome


def _width(s: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in s)


def _pad(s: str, w: int) -> str:
    return s + " " * max(0, w - _width(s))


def _cut(s: str, w: int) -> str:
    out, n = "", 0
    for c in s:
        cw = 2 if unicodedata.east_asian_width(c) in "WF" else 1
        if n + cw > w - 1:
            return out + "…"
        out += c
        n += cw
    return out


def format_outcome(o: CallOutcome) -> str:
    lines = [
        f"call {o.call_id} to {o.to}: {o.disposition.value} ({o.carrier_status.value})"
        f" sip={o.sip_code} grade={o.grade} talk={o.talk_s:.1f}s hangup_by={o.hangup_by}",
        f"  dialplan {o.dialplan} v{o.dialplan_version}; grade rule: {o.grade_rule};"
        f" tags: {', '.join(o.tags)}",
    ]
    for t in o.turns:
        who = "bot   " if t.speaker == "bot" else "callee"
        extra = f"  [{t.intent} {t.confidence:.2f}]" if t.intent and t.confidence is not None else ""
        if t.dtmf:
            extra = f"  [dtmf {t.dtmf}]"
        cut = " (interrupted)" if t.interrupted else ""
        lines.append(f"  {t.start_s:6.1f}s {who} {t.text}{extra}{cut}")
    if o.error:
        lines.append(f"  error: {o.error}")
    return "\n".join(lines)


def results_table(rows: Sequence[tuple[str, CallOutcome]]) -> str:
    """One line per call: scenario, disposition, status, grade, talk time, tags, last callee words."""
    head = ("scenario", "disposition", "状态", "sip", "grade", "talk_s", "tags", "callee said")
    widths = (14, 15, 8, 4, 5, 6, 22, 36)
    out = ["  ".join(_pad(h, w) for h, w in zip(head, widths, strict=True))]
    out.append("  ".join("-" * w for w in widths))
    for name, o in rows:
        said = " / ".join(t.text for t in o.turns if t.speaker == "callee" and t.text) or "-"
        cells = (
            name,
            o.disposition.value,
            o.carrier_status.value,
            str(o.sip_code or "-"),
            o.grade,
            f"{o.talk_s:.1f}",
            ",".join(o.tags) or "-",
            said,
        )
        out.append("  ".join(_pad(_cut(c, w), w) for c, w in zip(cells, widths, strict=True)))
    return "\n".join(out)
