"""A minimal HTTP/1.1 server on 127.0.0.1 (asyncio streams, ephemeral port) for the fakes of the
follow-up services: the handler sees the raw request and answers (status, JSON body)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote


@dataclass
class Request:
    method: str
    path: str
    raw_query: str
    headers: dict[str, str]
    body: bytes

    def query_pairs(self) -> list[tuple[str, str]]:
        """Decoded pairs, in order (``+`` is a literal plus: the services percent-encode spaces)."""
        out = []
        for part in self.raw_query.split("&") if self.raw_query else []:
            k, _, v = part.partition("=")
            out.append((unquote(k), unquote(v)))
        return out

    def query(self) -> dict[str, str]:
        return dict(self.query_pairs())

    def json(self) -> Any:
        return json.loads(self.body)


Handler = Callable[[Request], Awaitable[tuple[int, Any]]]


@dataclass
class FakeHttp:
    handler: Handler
    requests: list[Request] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None

    async def __aenter__(self) -> FakeHttp:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                path, _, raw_query = target.partition("?")
                req = Request(method, path, raw_query, headers, body)
                self.requests.append(req)
                status, reply = await self.handler(req)
                data = reply if isinstance(reply, bytes) else json.dumps(reply, ensure_ascii=False).encode()
                writer.write(
                    f"HTTP/1.1 {status} X\r\nContent-Type: application/json;charset=utf-8\r\n"
                    f"Content-Length: {len(data)}\r\n\r\n".encode()
                    + data
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
