"""/wecom/callback: WeCom's 接收事件服务器 URL. No bearer token (WeCom calls it); every request is verified
by its msg_signature and decrypted with the EncodingAESKey instead. GET answers the URL check with the
decrypted echostr; POST takes events (add-contact events are linked to their call) and answers
``success``. 404 when OUTCALL_WECOM_CALLBACK_TOKEN is not set; 403 on a bad signature or key."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from gateway.wecom_crypto import WecomCryptoError
from outcall.api.deps import CtxDep
from outcall.api.problems import Problem
from outcall.followup import WecomCallback, callback_for

router = APIRouter(prefix="/wecom", tags=["wecom"])

#: WeCom events are a few hundred bytes; anything far larger is not WeCom (refused before parsing)
MAX_BODY = 64 * 1024


def _callback(request: Request, c: CtxDep) -> WecomCallback:
    cb = callback_for(request.app.state, c.settings, c.store)
    if cb is None:
        raise Problem(404, "the WeCom callback is not configured (OUTCALL_WECOM_CALLBACK_TOKEN)")
    return cb


@router.get("/callback", response_class=PlainTextResponse)
async def verify_url(
    request: Request, c: CtxDep, msg_signature: str, timestamp: str, nonce: str, echostr: str
) -> PlainTextResponse:
    cb = _callback(request, c)
    try:
        plain = cb.crypto.verify_url(msg_signature, timestamp, nonce, echostr)
    except WecomCryptoError as e:
        raise Problem(403, f"WeCom URL check refused: {e}") from e
    return PlainTextResponse(plain.decode())


@router.post("/callback", response_class=PlainTextResponse)
async def event(
    request: Request, c: CtxDep, msg_signature: str, timestamp: str, nonce: str
) -> PlainTextResponse:
    cb = _callback(request, c)
    body = await request.body()
    if len(body) > MAX_BODY:
        raise Problem(413, f"callback body over {MAX_BODY} bytes")
    try:
        ev = cb.crypto.open(msg_signature, timestamp, nonce, body)
    except WecomCryptoError as e:
        raise Problem(403, f"WeCom callback refused: {e}") from e
    await cb.handle(ev)
    return PlainTextResponse("success")
