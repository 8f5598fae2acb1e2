"""Our SIP UA (gateway.sip + gateway.leg) against real peers where the sipp-only tests do not reach:

- through Kamailio as an authenticating, record-routing outbound proxy (407, Route sets both ways),
- baresip as a real softphone callee (two-way G.711 audio, codec negotiation, 488),
- a callee that challenges our BYE (401),
- a large INVITE over TCP to sipp,
- garbage datagrams hitting our SIP port while five calls run.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import shutil
import socket
import wave
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from peers import AUTH_PASSWORD, AUTH_USER, Baresip, Kamailio, PeerError, SippServer, tts_wav, wait_until
from pydantic import SecretStr

from engine.audio import PCM, rms_dbfs
from engine.dispositions import Disposition
from engine.errors import TelephonyError
from engine.trunk import Trunk
from gateway.leg import SipCallLeg
from gateway.sip.message import SipRequest, SipResponse, SipUri, parse_message
from gateway.sip.sdp import Codec
from gateway.sip.transport import Addr, TcpConnection, TransportName
from gateway.sip.ua import UserAgent

pytestmark = pytest.mark.e2e
log = logging.getLogger(__name__)

ServerFactory = Callable[..., SippServer]
PhoneFactory = Callable[..., Baresip]
Floats = npt.NDArray[np.float64]


# ------------------------------------------------------------------------------------------------ helpers


class WireTap:
    """Every SIP message our UA puts on the wire, with where it went and how (the UA's own view)."""

    def __init__(self, ua: UserAgent) -> None:
        self.sent: list[tuple[bytes, Addr, TransportName]] = []
        inner = ua.transport.send

        def send(
            data: bytes, addr: Addr, *, transport: TransportName = "UDP", conn: TcpConnection | None = None
        ) -> None:
            self.sent.append((data, addr, transport))
            inner(data, addr, transport=transport, conn=conn)

        ua.transport.send = send  # type: ignore[method-assign]

    def requests(self, method: str) -> list[tuple[SipRequest, Addr, TransportName]]:
        out = []
        for data, addr, tname in self.sent:
            msg = parse_message(data, stream=tname == "TCP")
            if isinstance(msg, SipRequest) and msg.method == method:
                out.append((msg, addr, tname))
        return out

    def responses(self, method: str) -> list[tuple[SipResponse, Addr, TransportName]]:
        out = []
        for data, addr, tname in self.sent:
            msg = parse_message(data, stream=tname == "TCP")
            if isinstance(msg, SipResponse) and msg.cseq[1] == method:
                out.append((msg, addr, tname))
        return out


def _addr(hostport: str) -> Addr:
    host, _, port = hostport.partition(":")
    return host, int(port)


def _sipp_received(messages: str, method: str) -> list[str]:
    """The requests ``method`` that sipp logged as received (-trace_msg), one text block each."""
    blocks = re.split(r"^-{10,}.*$", messages, flags=re.M)
    return [b for b in blocks if re.search(rf"message received.*?\n\s*\n?{method} sip:", b, re.S)]


async def _until(pred: Callable[[], bool], limit: float = 5.0) -> None:
    """Wait for a condition in a peer's log file (no event to wait on), bounded by ``limit``."""

    async def poll() -> None:
        while not pred():  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), limit)


def _tone(seconds: float, freq: float = 1000.0, amplitude: float = 8000.0) -> PCM:
    t = np.arange(int(8000 * seconds)) / 8000.0
    return (np.sin(2 * np.pi * freq * t) * amplitude).astype(np.int16)


def _read_wav(path: Path) -> PCM:
    with wave.open(str(path)) as w:
        assert w.getframerate() == 8000 and w.getnchannels() == 1 and w.getsampwidth() == 2
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).copy()


def _envelope(pcm: PCM, frame: int = 160) -> Floats:
    n = len(pcm) // frame
    x = pcm[: n * frame].astype(np.float64).reshape(n, frame)
    env: Floats = np.sqrt((x * x).mean(axis=1))
    return env


def _best_envelope_match(heard: PCM, sent: PCM) -> tuple[float, int]:
    """Highest normalised correlation of the 20 ms energy envelope of ``sent`` inside ``heard``."""
    h, s = _envelope(heard), _envelope(sent)
    best, lag = -1.0, 0
    for k in range(len(h) - len(s) + 1):
        seg = h[k : k + len(s)]
        a, b = seg - seg.mean(), s - s.mean()
        den = float(np.sqrt((a * a).sum() * (b * b).sum()))
        c = float((a * b).sum() / den) if den else 0.0
        if c > best:
            best, lag = c, k
    return best, lag


def _waveform_corr(heard: PCM, sent: PCM, frame_lag: int) -> float:
    """Sample-level correlation of ``sent`` with ``heard`` near the envelope lag (G.711 is near-lossless)."""
    best = 0.0
    s = sent.astype(np.float64)
    for off in range(max(0, frame_lag * 160 - 160), frame_lag * 160 + 161):
        seg = heard[off : off + len(s)].astype(np.float64)
        if len(seg) < len(s):
            break
        den = float(np.sqrt((seg * seg).sum() * (s * s).sum()))
        if den:
            best = max(best, float((seg * s).sum() / den))
    return best


def _peak_hz(pcm: PCM) -> float:
    x = pcm.astype(np.float64) * np.hanning(len(pcm))
    spec = np.abs(np.fft.rfft(x))
    spec[:5] = 0.0  # DC
    return float(np.fft.rfftfreq(len(pcm), 1 / 8000)[int(np.argmax(spec))])


@pytest.fixture
async def ua() -> AsyncIterator[UserAgent]:
    agent = UserAgent(bind_host="127.0.0.1", rtp_inactivity_timeout=5.0)
    await agent.start()
    yield agent
    await agent.close()


async def _agent(*trunks: Trunk, codecs: Sequence[Codec] = ("PCMA", "PCMU")) -> UserAgent:
    agent = UserAgent(bind_host="127.0.0.1", trunks=trunks, codecs=tuple(codecs), rtp_inactivity_timeout=5.0)
    return await agent.start()


def _kamailio_trunk(proxy: Kamailio, password: str = AUTH_PASSWORD) -> Trunk:
    return Trunk(name="kamailio", proxy=proxy.address, auth_user=AUTH_USER, password=SecretStr(password))


# ------------------------------------------------------------------------------ 1. through Kamailio


async def test_kamailio_407_then_record_routed_ack_and_bye(
    kamailio: Kamailio, sipp_server: ServerFactory
) -> None:
    """INVITE -> 407 from the proxy -> INVITE with Proxy-Authorization -> 200 with Record-Route; our ACK
    and BYE carry the Route and go to the proxy, which relays them to the callee."""
    uas = sipp_server("uas_answer_echo.xml", rtp_echo=True, timeout_s=10)
    agent = await _agent(_kamailio_trunk(kamailio))
    tap = WireTap(agent)
    try:
        leg = await agent.originate(uas.uri(), trunk="kamailio", caller_id="1001")
        await asyncio.wait_for(leg.wait_answered(), 5)
        await asyncio.wait_for(leg.hangup(), 5)
        result = (await uas.wait_async(10)).check()
    finally:
        await agent.close()
    proxy = _addr(kamailio.address)
    sent = tap.requests("INVITE")
    assert all(dest == proxy for _, dest, _ in sent)
    # one INVITE per transaction (timer A may retransmit under load: same CSeq, same bytes)
    invites = list({req.cseq: (req, dest, tr) for req, dest, tr in sent}.values())
    assert len(invites) == 2
    assert "Proxy-Authorization" not in invites[0][0].headers
    auth = invites[1][0].headers["Proxy-Authorization"]
    assert f'username="{AUTH_USER}"' in auth and 'realm="outcall.test"' in auth
    assert invites[0][0].call_id == invites[1][0].call_id == leg.call_id
    # the 407's ACK (hop-by-hop, transaction layer) also went to the proxy
    acks = tap.requests("ACK")
    assert len(acks) >= 2 and all(dest == proxy for _, dest, _ in acks)
    (ack, _, _), (bye, bye_dest, _) = acks[-1], tap.requests("BYE")[0]
    route = f"<sip:{kamailio.address};lr"
    for req in (ack, bye):
        assert req.headers.values("Route")[0].startswith(route), req.headers.values("Route")
        assert SipUri.parse(req.uri).hostport == _addr(uas.address)  # Request-URI: the callee's Contact
    assert bye_dest == proxy
    # ... and the callee got them from the proxy (its Via on top), the proxy logged them from us
    for method in ("ACK", "BYE"):
        got = _sipp_received(result.messages, method)
        assert got and f"Via: SIP/2.0/UDP {kamailio.address};branch=" in got[-1], method
    assert f"Record-Route: {route}" in result.messages
    klog = kamailio.log_text()
    local = f"{agent.local_addr[0]}:{agent.local_addr[1]}"
    assert len(re.findall(rf"REQ INVITE \S+ from {local} ci={re.escape(leg.call_id)}", klog)) == 2
    assert re.search(rf"REQ BYE \S+ from {local} ci={re.escape(leg.call_id)}", klog)
    assert leg.info.disposition is Disposition.ANSWERED and leg.info.hangup_by == "robot"


async def test_kamailio_callee_bye_reaches_us_through_proxy(
    kamailio: Kamailio, sipp_server: ServerFactory
) -> None:
    uas = sipp_server("interop_uas_rr_far_bye.xml", rtp_echo=True, timeout_s=10)
    agent = await _agent(_kamailio_trunk(kamailio))
    tap = WireTap(agent)
    try:
        leg = await agent.originate(uas.uri(), trunk="kamailio")
        await asyncio.wait_for(leg.wait_answered(), 5)
        info = await asyncio.wait_for(leg.wait_ended(), 5)
        (await uas.wait_async(10)).check()
    finally:
        await agent.close()
    assert info.hangup_by == "callee" and info.disposition is Disposition.ANSWERED
    assert info.q850_cause == 16
    assert tap.requests("BYE") == []  # we did not send one
    ok = [dest for resp, dest, _ in tap.responses("BYE") if resp.status == 200]
    assert ok and ok[0] == _addr(kamailio.address)  # our 200 went back through the proxy (its Via)
    assert re.search(
        rf"REQ BYE \S+ from {re.escape(uas.address)} ci={re.escape(leg.call_id)}", kamailio.log_text()
    )


async def test_kamailio_wrong_password_fails_without_retry_loop(
    kamailio: Kamailio, sipp_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    uas = sipp_server("uas_answer_echo.xml", timeout_s=5)
    agent = await _agent(_kamailio_trunk(kamailio, password="not-the-password"))
    tap = WireTap(agent)
    try:
        with caplog.at_level(logging.INFO, logger="gateway.sip.ua"):
            leg = await agent.originate(uas.uri(), trunk="kamailio")
            with pytest.raises(TelephonyError) as ei:
                await asyncio.wait_for(leg.wait_answered(), 5)
            info = await asyncio.wait_for(leg.wait_ended(), 5)
    finally:
        await agent.close()
    assert ei.value.disposition is Disposition.FAILED and ei.value.sip_code == 407
    assert info.disposition is Disposition.FAILED and info.sip_code == 407
    # one answer to the challenge, then give up (count transactions: timer A may retransmit under load)
    assert len({req.cseq for req, _, _ in tap.requests("INVITE")}) == 2
    assert any(
        "credentials rejected" in r.getMessage() and leg.call_id in r.getMessage() for r in caplog.records
    )
    assert "INVITE" not in uas.messages()  # the proxy never let it through


# ------------------------------------------------------------------------------------ 2. baresip


SPEECH = "你好，我现在在开会。"


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        pytest.skip("espeak-ng/sox not installed (apt-get install --no-install-recommends espeak-ng sox)")
    return tts_wav(SPEECH, tmp_path_factory.mktemp("speech") / "speech.wav")


async def _wait_recording(phone: Baresip, kind: str, min_samples: int) -> PCM:
    """baresip's sndfile finishes its WAV when the call closes; wait until it reads back complete."""

    def ready() -> bool:
        try:
            return len(_read_wav(phone.recording(kind))) >= min_samples
        except (OSError, EOFError, wave.Error, AssertionError, PeerError):
            return False

    await asyncio.to_thread(wait_until, ready, 3.0, f"baresip {kind} recording")
    return await asyncio.to_thread(_read_wav, phone.recording(kind))


@pytest.mark.parametrize(
    ("callee_codecs", "expect"),
    [(("PCMU", "PCMA"), ("PCMU", "PCMA")), (("PCMU",), ("PCMU",)), (("PCMA",), ("PCMA",))],
    ids=["both", "pcmu-only", "pcma-only"],
)
async def test_baresip_two_way_audio(
    ua: UserAgent,
    baresip: PhoneFactory,
    speech_wav: Path,
    callee_codecs: tuple[str, ...],
    expect: tuple[str, ...],
) -> None:
    """baresip says a sentence while we send a 1 kHz tone: each side hears the other's audio."""
    sent = _read_wav(speech_wav)
    phone = baresip(audio=speech_wav, delay_s=0.3, tail_s=4.0, codecs=callee_codecs)
    leg = await ua.originate(phone.uri)
    await asyncio.wait_for(leg.wait_answered(), 5)
    assert leg.info.codec in expect
    tone = leg.play(_tone(1.5))
    heard: list[PCM] = []

    async def listen() -> None:
        """Until the whole sentence has been heard: speech started, lasted as long as the WAV's, then
        0.5 s of silence (the padding baresip sends after it)."""
        speech_at: int | None = None
        quiet = 0
        async for frame in leg.frames():
            heard.append(frame)
            loud = rms_dbfs(frame) > -45
            if speech_at is None and loud:
                speech_at = len(heard)
            quiet = 0 if loud else quiet + 1
            if speech_at is not None and (len(heard) - speech_at) * 160 >= len(sent) - 8000 and quiet >= 25:
                return

    await asyncio.wait_for(asyncio.gather(listen(), tone.wait()), 8)
    await asyncio.wait_for(leg.hangup(), 5)
    await phone.wait_event_async("CALL_CLOSED", 5)
    assert leg.info.disposition is Disposition.ANSWERED and leg.info.hangup_by == "robot"

    # (a) what we heard is baresip's sentence: same energy envelope, and near-identical samples
    rx = np.concatenate(heard)
    env_corr, lag = _best_envelope_match(rx, sent)
    assert env_corr > 0.9, f"envelope correlation {env_corr:.3f}"
    wave_corr = _waveform_corr(rx, sent, lag)
    assert wave_corr > 0.9, f"waveform correlation {wave_corr:.3f}"

    # (b) baresip heard our 1 kHz tone
    dec = await _wait_recording(phone, "dec", 8000)
    loud = np.array([rms_dbfs(f) for f in np.array_split(dec, max(1, len(dec) // 160))])
    assert (loud > -30).sum() * 0.02 > 1.2, "baresip recorded less than 1.2 s of our tone"
    start = int(np.argmax(loud > -30)) * 160
    peak = _peak_hz(dec[start : start + 8000])
    log.info(
        "baresip %s (%s): envelope corr %.3f at %.2f s, waveform corr %.3f; baresip heard %.0f Hz",
        callee_codecs,
        leg.info.codec,
        env_corr,
        lag * 0.02,
        wave_corr,
        peak,
    )
    assert abs(peak - 1000.0) < 10.0, f"peak at {peak:.0f} Hz"


@pytest.mark.parametrize(
    ("callee_codecs", "modules", "ours"),
    [(("G722/16000/1",), ("g722.so",), ("PCMA", "PCMU")), (("PCMA",), (), ("PCMU",))],
    ids=["g722-only-callee", "pcma-callee-vs-pcmu-offer"],
)
async def test_baresip_no_common_codec_is_488(
    baresip: PhoneFactory,
    caplog: pytest.LogCaptureFixture,
    callee_codecs: tuple[str, ...],
    modules: tuple[str, ...],
    ours: tuple[Codec, ...],
) -> None:
    phone = baresip(codecs=callee_codecs, extra_modules=modules)
    agent = await _agent(codecs=ours)
    try:
        with caplog.at_level(logging.INFO, logger="gateway.sip.ua"):
            leg = await agent.originate(phone.uri)
            with pytest.raises(TelephonyError) as ei:
                await asyncio.wait_for(leg.wait_answered(), 5)
            info = await asyncio.wait_for(leg.wait_ended(), 5)
    finally:
        await agent.close()
    assert ei.value.sip_code == 488 and ei.value.disposition is Disposition.FAILED
    assert info.disposition is Disposition.FAILED and info.hangup_by == "callee"
    lines = [r.getMessage() for r in caplog.records if leg.call_id in r.getMessage()]
    assert any("call failed: 488" in m and "-> failed" in m for m in lines), lines


# ------------------------------------------------------------------------------- 3. challenged BYE


async def test_bye_challenged_with_401_is_resent_with_credentials(sipp_server: ServerFactory) -> None:
    uas = sipp_server("interop_uas_bye_401.xml", rtp_echo=True, timeout_s=10)
    agent = await _agent(Trunk(name="auth", auth_user=AUTH_USER, password=SecretStr(AUTH_PASSWORD)))
    tap = WireTap(agent)
    try:
        leg = await agent.originate(uas.uri())
        await asyncio.wait_for(leg.wait_answered(), 5)
        await asyncio.wait_for(leg.hangup(), 5)
        result = (await uas.wait_async(10)).check()
    finally:
        await agent.close()
    byes = [req for req, _, _ in tap.requests("BYE")]
    assert len(byes) == 2
    assert "Authorization" not in byes[0].headers
    assert f'username="{AUTH_USER}"' in byes[1].headers["Authorization"]
    assert byes[1].cseq[0] > byes[0].cseq[0]  # a new request, not a retransmission
    assert "401 Unauthorized" in result.messages and "403 Forbidden" not in result.messages
    assert leg.info.disposition is Disposition.ANSWERED and leg.info.hangup_by == "robot"


# ------------------------------------------------------------------------------------------ 4. TCP


async def test_large_invite_goes_over_tcp(ua: UserAgent, sipp_server: ServerFactory) -> None:
    uas = sipp_server("uas_answer_echo.xml", rtp_echo=True, timeout_s=10, extra_args=["-t", "t1"])
    tap = WireTap(ua)
    extra = {f"X-Campaign-Data-{i}": "v" * 60 for i in range(12)}
    leg = await ua.originate(uas.uri(), headers=extra)
    await asyncio.wait_for(leg.wait_answered(), 5)
    leg.play(_tone(0.2))
    await asyncio.wait_for(leg.hangup(), 5)
    result = (await uas.wait_async(10)).check()
    invite_bytes = next(d for d, _, t in tap.sent if d.startswith(b"INVITE "))
    assert len(invite_bytes) > 1300
    for method in ("INVITE", "ACK", "BYE"):
        reqs = tap.requests(method)
        assert reqs and all(t == "TCP" for _, _, t in reqs), method
        assert all(r.top_via.transport == "TCP" for r, _, _ in reqs), method
    assert "X-Campaign-Data-11: " in result.messages and "TCP message received" in result.messages
    assert leg.info.disposition is Disposition.ANSWERED


async def test_cancel_follows_a_tcp_invite(ua: UserAgent, sipp_server: ServerFactory) -> None:
    """RFC 3261 9.1: a CANCEL goes where its INVITE went, the same way, however small it is."""
    uas = sipp_server("ua_ring_cancel.xml", timeout_s=10, extra_args=["-t", "t1"])
    tap = WireTap(ua)
    leg = await ua.originate(uas.uri(), headers={f"X-Pad-{i}": "p" * 60 for i in range(12)})
    first = await asyncio.wait_for(anext(aiter(leg.events())), 5)
    assert first.type == "ringing"
    await asyncio.wait_for(leg.hangup(), 5)
    (await uas.wait_async(10)).check()
    (cancel, _, tname), *_ = tap.requests("CANCEL")
    assert tname == "TCP" and cancel.top_via.transport == "TCP"
    assert leg.info.disposition is Disposition.CANCELLED and leg.info.sip_code == 487


# ---------------------------------------------------------------------------------- 5. garbage


def _garbage(call_ids: Sequence[str], ua: UserAgent, n: int, rng: random.Random) -> list[tuple[bytes, bool]]:
    """``n`` junk datagrams for our SIP port, each with whether the UA must count it as dropped (cannot be
    parsed or handled) rather than answer or ignore it."""
    host, port = ua.local_addr

    def bye_bad_via() -> bytes:
        return (
            f"BYE sip:outcall@{host}:{port} SIP/2.0\r\nVia: garbage\r\nFrom: <sip:a@b>\r\n"
            f"To: <sip:c@d>;tag=nope\r\nCall-ID: {rng.choice(call_ids)}\r\nCSeq: x BYE\r\n\r\n"
        ).encode()

    def bye_unknown_dialog() -> bytes:  # well-formed, for one of our calls, wrong tag: 481 to port 9
        return (
            f"BYE sip:outcall@{host}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK{rng.randrange(1 << 30)}\r\n"
            f"From: <sip:a@b>;tag=x\r\nTo: <sip:c@d>;tag=wrongtag\r\nCall-ID: {rng.choice(call_ids)}\r\n"
            f"CSeq: 99 BYE\r\nContent-Length: 0\r\n\r\n"
        ).encode()

    def stray_200() -> bytes:  # a response for one of our calls that matches no transaction
        return (
            f"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP {host}:{port};branch=z9hG4bKnotours\r\nFrom: <sip:a@b>;tag=1"
            f"\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: {rng.choice(call_ids)}\r\nCSeq: 1 BYE\r\nContent-Length: 0"
            "\r\n\r\n"
        ).encode()

    def forged_2xx() -> bytes:  # a 2xx for one of our calls, not to our INVITE (From tag): ignored
        return (
            f"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP {host}:{port};branch=z9hG4bKgone\r\n"
            "From: <sip:a@b>;tag=1\r\n"
            f"To: <sip:c@d>;tag=fork{rng.randrange(1000)}\r\nCall-ID: {rng.choice(call_ids)}\r\n"
            "CSeq: 1 INVITE\r\nContact: <sip:junk@127.0.0.1:9>\r\nContent-Length: 0\r\n\r\n"
        ).encode()

    shapes: list[tuple[Callable[[], bytes], bool]] = [
        (lambda: b"\x80" + rng.randbytes(rng.randrange(1, 1400)), True),
        (lambda: b"\x00" * rng.randrange(1, 64) + b"SIP/2.0", True),
        (lambda: b"INVITE sip:x@127.0.0.1 SIP/2.0\r\n\r\n", True),
        (lambda: b"SIP/2.0 200 OK\r\n\xff" + rng.randbytes(40), True),
        (lambda: b"SIP/2.0 9999 Weird\r\nVia: SIP/2.0/UDP 1.2.3.4\r\n\r\n", True),
        (bye_bad_via, True),
        (bye_unknown_dialog, False),
        (stray_200, False),
        (forged_2xx, False),
        (lambda: b"OPTIONS sip:x SIP/2.0\r\nContent-Length: 99999\r\n\r\n", True),
        (lambda: b"INVITE sip:x SIP/2.0\r\nX-Long: " + b"a" * 6000 + b"\r\n\r\n", True),
        (lambda: "NOTIFY sip:\u00e9\u00e8 SIP/2.0\r\nVia: \u2603\r\n\r\n".encode(), True),
        (lambda: b"\r\n\r\n", False),  # keep-alive
    ]
    out = []
    for _ in range(n):
        make, dropped = rng.choice(shapes)
        out.append((make(), dropped))
    return out


async def _options_ping(ua: UserAgent) -> str:
    """One OPTIONS from a fresh socket (re-sent every 0.3 s, as a SIP client would); the UA's status line.
    Sent after junk, its answer proves the UA has worked through everything queued before it."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[bytes] = loop.create_future()

    class Proto(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            if not fut.done():
                fut.set_result(data)

    transport, _ = await loop.create_datagram_endpoint(Proto, local_addr=("127.0.0.1", 0))
    try:
        lport = transport.get_extra_info("sockname")[1]
        host, port = ua.local_addr
        ping = (
            f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{lport};branch=z9hG4bKping{lport}\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:ping@127.0.0.1>;tag=p1\r\nTo: <sip:{host}:{port}>\r\n"
            f"Call-ID: ping-{lport}@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        for _ in range(10):
            transport.sendto(ping, (host, port))
            done, _pending = await asyncio.wait([fut], timeout=0.3)
            if done:
                break
        data = await asyncio.wait_for(fut, 0.5)
    finally:
        transport.close()
    return data.split(b"\r\n", 1)[0].decode()


async def test_garbage_flood_during_five_calls(ua: UserAgent, sipp_server: ServerFactory) -> None:
    """200 junk datagrams (binary, truncated, malformed, and well-formed ones for dialogs that do not exist,
    for our live calls) while 5 answered calls run: each is dropped or answered, the calls never notice."""
    uas = sipp_server("uas_answer_echo.xml", calls=5, rtp_echo=True, timeout_s=10)
    legs = [await ua.originate(uas.uri(f"svc{i}")) for i in range(5)]
    await asyncio.wait_for(asyncio.gather(*(leg.wait_answered() for leg in legs)), 5)
    dropped_before = ua.transport.dropped
    tap = WireTap(ua)
    junk = _garbage([leg.call_id for leg in legs], ua, 200, random.Random(1234))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        junk_from = s.getsockname()
        # bursts of 25, each followed by a ping the UA must answer: all of it gets processed (a single
        # 200-datagram burst would partly die in the kernel's socket buffer before the UA reads it)
        for i in range(0, len(junk), 25):
            for data, _ in junk[i : i + 25]:
                s.sendto(data, ua.local_addr)
            assert (await _options_ping(ua)).startswith("SIP/2.0 200")
    assert ua.transport.dropped - dropped_before == sum(d for _, d in junk)
    assert all(leg.info.ended_at is None for leg in legs)
    # the unknown dialogs got 481 (sent back to the source); the forged 2xx made us send nothing to its
    # Contact (port 9)
    answers = [parse_message(d) for d, addr, _ in tap.sent if addr == junk_from]
    assert sum(isinstance(m, SipResponse) and m.status == 481 for m in answers) == sum(
        b"tag=wrongtag" in d for d, _ in junk
    )
    assert not [addr for _, addr, _ in tap.sent if addr[1] == 9]
    # every call still has two-way media and hangs up normally
    for leg in legs:
        leg.play(_tone(0.3, 440.0))

    async def hears(leg: SipCallLeg) -> None:
        async for frame in leg.frames():
            if rms_dbfs(frame) > -40:
                return

    await asyncio.wait_for(asyncio.gather(*(hears(leg) for leg in legs)), 5)
    await asyncio.wait_for(asyncio.gather(*(leg.hangup() for leg in legs)), 5)
    result = (await uas.wait_async(10)).check()
    assert result.successful == 5
    assert all(leg.info.disposition is Disposition.ANSWERED and leg.info.hangup_by == "robot" for leg in legs)
