"""A loopback qyapi.weixin.qq.com: issues access tokens (and can expire one), answers 40014/42001 like
WeCom, rate-limits robots with 45009, takes add_msg_template, and serves acquisition links checking the
customer_channel (<= 64 bytes)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from tests.gateway.fake_http import Request

CORP_ID = "ww5f3a1b2c3d4e5f60"
SECRET = "app-secret-of-customer-contact"


@dataclass
class FakeWecom:
    robot_keys: set[str] = field(default_factory=lambda: {"robot-key-1"})
    robot_limit: int = 20  # per "minute"; the test calls new_minute()
    tokens: dict[str, str] = field(default_factory=dict)  # token -> "ok" | "expired"
    token_requests: int = 0
    robot_counts: dict[str, int] = field(default_factory=dict)
    robot_messages: list[dict[str, Any]] = field(default_factory=list)
    msg_templates: list[dict[str, Any]] = field(default_factory=list)
    link_opens: list[str] = field(default_factory=list)
    _seq: itertools.count[int] = field(default_factory=itertools.count)

    def expire_all(self) -> None:
        for t in self.tokens:
            self.tokens[t] = "expired"

    def new_minute(self) -> None:
        self.robot_counts.clear()

    def _token_error(self, req: Request) -> dict[str, Any] | None:
        tok = req.query().get("access_token")
        if not tok:
            return {"errcode": 41001, "errmsg": "access_token missing, hint: [1700000000_1_x]"}
        state = self.tokens.get(tok)
        if state is None:
            return {"errcode": 40014, "errmsg": "invalid access_token, hint: [1700000000_2_x]"}
        if state == "expired":
            return {"errcode": 42001, "errmsg": "access_token expired, hint: [1700000000_3_x]"}
        return None

    async def handle(self, req: Request) -> tuple[int, Any]:
        q = req.query()
        if req.path == "/cgi-bin/gettoken" and req.method == "GET":
            self.token_requests += 1
            if q.get("corpid") != CORP_ID:
                return 200, {"errcode": 40013, "errmsg": "invalid corpid, hint: [1700000000_4_x]"}
            if q.get("corpsecret") != SECRET:
                return 200, {"errcode": 40001, "errmsg": "invalid credential, hint: [1700000000_5_x]"}
            tok = f"tok-{next(self._seq)}-" + "x" * 40
            self.tokens[tok] = "ok"
            return 200, {"errcode": 0, "errmsg": "ok", "access_token": tok, "expires_in": 7200}
        if req.path == "/cgi-bin/webhook/send" and req.method == "POST":
            key = q.get("key", "")
            if key not in self.robot_keys:
                return 200, {"errcode": 93000, "errmsg": "invalid webhook url, hint: [1700000000_6_x]"}
            n = self.robot_counts.get(key, 0)
            if n >= self.robot_limit:
                return 200, {"errcode": 45009, "errmsg": "api freq out of limit, hint: [1700000000_7_x]"}
            body = req.json()
            mt = body.get("msgtype")
            if (
                mt not in ("text", "markdown")
                or not isinstance(body.get(mt), dict)
                or not body[mt].get("content")
            ):
                return 200, {"errcode": 40008, "errmsg": "invalid message type"}
            if len(body[mt]["content"].encode()) > 4096:
                return 200, {"errcode": 40058, "errmsg": "markdown.content exceed max length 4096"}
            self.robot_counts[key] = n + 1
            self.robot_messages.append(body)
            return 200, {"errcode": 0, "errmsg": "ok"}
        if req.path == "/cgi-bin/externalcontact/add_msg_template" and req.method == "POST":
            if (err := self._token_error(req)) is not None:
                return 200, err
            body = req.json()
            if (
                not body.get("sender")
                and body.get("chat_type", "single") == "single"
                and not body.get("external_userid")
            ):
                return 200, {"errcode": 41048, "errmsg": "no external_userid and no sender"}
            self.msg_templates.append(body)
            return 200, {
                "errcode": 0,
                "errmsg": "ok",
                "fail_list": [],
                "msgid": f"msgGCAAAXtWyujaWJHDDGi0mA{len(self.msg_templates)}",
            }
        if req.path.startswith("/ca/") and req.method == "GET":  # the acquisition link page
            ch = q.get("customer_channel", "")
            if len(ch.encode()) > 64:
                return 200, {"errcode": 40058, "errmsg": "customer_channel exceed max length 64"}
            self.link_opens.append(ch)
            return 200, {"errcode": 0, "errmsg": "ok"}
        return 404, {"errcode": 60011, "errmsg": "no such api"}
