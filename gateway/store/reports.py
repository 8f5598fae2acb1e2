"""Read-side queries for the HTTP API: paged listings with totals, call filters, stats and metrics, over
a CampaignStore's transactions (SQLite or Postgres). Every method blocks (SQL): call from a thread."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from engine.campaign.scheduler import CampaignConfig
from engine.outcome import CallOutcome
from gateway.store.campaigns import CampaignStore, contact_row
from gateway.store.outbox import load_outcome

CALL_COLS = (
    "call_id",
    "campaign",
    "phone",
    "disposition",
    "grade",
    "sip_code",
    "started_at",
    "answered_at",
    "ended_at",
    "talk_s",
    "dialplan",
)
ANSWERED = "answered"
SUCCESS_GRADES = ("A", "B")


@dataclass
class CallFilter:
    campaign: str | None = None
    disposition: str | None = None
    grade: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    dialplan: str | None = None

    def where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        for col, val in (
            ("campaign", self.campaign),
            ("disposition", self.disposition),
            ("grade", self.grade),
            ("dialplan", self.dialplan),
        ):
            if val is not None:
                clauses.append(f"{col}=?")
                params.append(val)
        # started_at is stored as UTC ISO-8601 text, so text comparison is time order
        if self.since is not None:
            clauses.append("started_at>=?")
            params.append(_utc_iso(self.since))
        if self.until is not None:
            clauses.append("started_at<?")
            params.append(_utc_iso(self.until))
        return (f" WHERE {' AND '.join(clauses)}" if clauses else ""), params


def _utc_iso(t: datetime) -> str:
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC).isoformat()


def two_proportion_p(s1: int, n1: int, s2: int, n2: int) -> float | None:
    """Two-sided p-value of a two-proportion z-test (None when it cannot be computed)."""
    if n1 == 0 or n2 == 0:
        return None
    p = (s1 + s2) / (n1 + n2)
    se = math.sqrt(p * (1 - p) * (1 / n1 + 1 / n2))
    if se == 0:
        return None
    z = (s1 / n1 - s2 / n2) / se
    return round(math.erfc(abs(z) / math.sqrt(2)), 6)


class Reports:
    def __init__(self, store: CampaignStore) -> None:
        self.store = store

    def _q(self, sql: str) -> str:
        return self.store._q(sql)

    def _one(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> Any:
        with self.store._tx(write=False) as cur:
            cur.execute(self._q(sql), tuple(params))
            return cur.fetchone()

    def _all(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[Any]:
        with self.store._tx(write=False) as cur:
            cur.execute(self._q(sql), tuple(params))
            return list(cur.fetchall())

    # ---- campaigns
    def campaigns(
        self, *, status: str | None = None, limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]:
        w, p = (" WHERE status=?", [status]) if status else ("", [])
        total = int(self._one(f"SELECT count(*) FROM campaigns{w}", p)[0])
        rows = self._all(
            f"SELECT name, status, config, created_at FROM campaigns{w} "
            "ORDER BY created_at, name LIMIT ? OFFSET ?",
            [*p, limit, offset],
        )
        return [self._campaign(r) for r in rows], total

    def campaign(self, name: str) -> dict[str, Any] | None:
        r = self._one("SELECT name, status, config, created_at FROM campaigns WHERE name=?", (name,))
        return self._campaign(r) if r else None

    @staticmethod
    def _campaign(r: Any) -> dict[str, Any]:
        return {
            "name": r[0],
            "status": r[1],
            "config": CampaignConfig.model_validate_json(r[2]),
            "created_at": datetime.fromtimestamp(r[3], UTC),
        }

    def running_campaigns(self) -> list[str]:
        return [r[0] for r in self._all("SELECT name FROM campaigns WHERE status='running' ORDER BY name")]

    # ---- contacts
    def contacts(
        self, campaign: str, *, state: str | None = None, limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]:
        w, p = " WHERE campaign=?", [campaign]
        if state is not None:
            w += " AND state=?"
            p.append(state)
        total = int(self._one(f"SELECT count(*) FROM contacts{w}", p)[0])
        rows = self._all(
            "SELECT id, phone, name, tz, consent, variables, priority, variant, state, attempts,"
            f" last_disposition, last_call_id, next_at FROM contacts{w} ORDER BY id LIMIT ? OFFSET ?",
            [*p, limit, offset],
        )
        return [contact_row(r) for r in rows], total

    def contact(self, campaign: str, phone: str) -> dict[str, Any] | None:
        r = self._one(
            "SELECT id, phone, name, tz, consent, variables, priority, variant, state, attempts,"
            " last_disposition, last_call_id, next_at FROM contacts WHERE campaign=? AND phone=?",
            (campaign, phone),
        )
        return contact_row(r) if r else None

    def dnc_count(self, campaign: str | None) -> int:
        if campaign is None:
            return int(self._one("SELECT count(*) FROM dnc")[0])
        return int(self._one("SELECT count(*) FROM dnc WHERE campaign=?", (campaign,))[0])

    # ---- calls
    def calls(self, f: CallFilter, *, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        w, p = f.where()
        total = int(self._one(f"SELECT count(*) FROM outcomes{w}", p)[0])
        rows = self._all(
            f"SELECT {', '.join(CALL_COLS)} FROM outcomes{w} "
            "ORDER BY started_at DESC, call_id LIMIT ? OFFSET ?",
            [*p, limit, offset],
        )
        return [dict(zip(CALL_COLS, r, strict=True)) for r in rows], total

    def iter_outcomes(self, f: CallFilter, *, batch: int = 2000) -> Iterator[CallOutcome]:
        """Every outcome matching the filter, oldest first, read in batches (exports)."""
        w, p = f.where()
        offset = 0
        while True:
            rows = self._all(
                f"SELECT body FROM outcomes{w} ORDER BY started_at, call_id LIMIT ? OFFSET ?",
                [*p, batch, offset],
            )
            if not rows:
                return
            offset += len(rows)
            for (body,) in rows:
                yield load_outcome(body)

    def outcome_body(self, call_id: str) -> str | None:
        r = self._one("SELECT body FROM outcomes WHERE call_id=?", (call_id,))
        return str(r[0]) if r else None

    # ---- stats
    def stats(self, f: CallFilter, *, batch: int = 2000) -> dict[str, Any]:
        """Connect rate, dispositions, grades, intents, talk time, per variant / hour / caller ID."""
        w, p = f.where()
        disp: Counter[str] = Counter()
        grades: Counter[str] = Counter()
        intents: Counter[str] = Counter()
        talk = 0.0
        hours: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        variants: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # attempts, answered, success
        callers: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        offset = 0
        while True:
            rows = self._all(
                f"SELECT body FROM outcomes{w} ORDER BY call_id LIMIT ? OFFSET ?", [*p, batch, offset]
            )
            if not rows:
                break
            offset += len(rows)
            for (body,) in rows:
                o = load_outcome(body)
                d = o.disposition.value
                disp[d] += 1
                grades[o.grade] += 1
                answered = d == ANSWERED
                talk += o.talk_s
                for t in o.turns:
                    if t.speaker == "callee" and t.intent:
                        intents[t.intent] += 1
                if d == "failed":  # infrastructure: not an attempt at the callee
                    continue
                h = hours[o.started_at.astimezone(UTC).hour]
                h[0] += 1
                h[1] += answered
                v = variants[o.dialplan or ""]
                v[0] += 1
                v[1] += answered
                v[2] += o.grade in SUCCESS_GRADES
                if o.caller_id:
                    c = callers[o.caller_id]
                    c[0] += 1
                    c[1] += answered
        attempts = sum(n for k, n in disp.items() if k != "failed")
        answered_n = disp.get(ANSWERED, 0)
        base = max(variants.items(), key=lambda kv: kv[1][0])[1] if variants else None
        return {
            "calls": sum(disp.values()),
            "attempts": attempts,
            "answered": answered_n,
            "connect_rate": round(answered_n / attempts, 4) if attempts else None,
            "dispositions": dict(disp),
            "grades": dict(grades),
            "intents": dict(intents.most_common()),
            "talk_time_s": {
                "total": round(talk, 3),
                "avg_answered": round(talk / answered_n, 3) if answered_n else None,
            },
            "per_variant": {
                k: {
                    "attempts": v[0],
                    "answered": v[1],
                    "success": v[2],
                    "connect_rate": round(v[1] / v[0], 4) if v[0] else None,
                    "success_rate": round(v[2] / v[0], 4) if v[0] else None,
                    # vs the largest variant: two-proportion z-test on the success rate
                    "p_value": None
                    if base is None or v is base
                    else two_proportion_p(v[2], v[0], base[2], base[0]),
                }
                for k, v in sorted(variants.items())
            },
            "per_hour": {
                f"{h:02d}": {"attempts": v[0], "answered": v[1], "connect_rate": round(v[1] / v[0], 4)}
                for h, v in sorted(hours.items())
            },
            "per_caller_id": {
                k: {"attempts": v[0], "answered": v[1], "connect_rate": round(v[1] / v[0], 4)}
                for k, v in sorted(callers.items())
            },
        }

    # ---- metrics
    def metrics(self) -> dict[str, Any]:
        return {
            "calls": [
                (r[0] or "", r[1], r[2], int(r[3]), float(r[4] or 0))
                for r in self._all(
                    "SELECT campaign, disposition, grade, count(*), sum(talk_s) FROM outcomes "
                    "GROUP BY campaign, disposition, grade ORDER BY campaign, disposition, grade"
                )
            ],
            "campaigns": {
                r[0]: int(r[1]) for r in self._all("SELECT status, count(*) FROM campaigns GROUP BY status")
            },
            "contacts": [
                (r[0], r[1], int(r[2]))
                for r in self._all(
                    "SELECT campaign, state, count(*) FROM contacts "
                    "GROUP BY campaign, state ORDER BY campaign, state"
                )
            ],
            "claims": int(self._one("SELECT count(*) FROM claims")[0]),
            "dnc": int(self._one("SELECT count(*) FROM dnc")[0]),
        }
