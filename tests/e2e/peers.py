"""Real SIP/MQTT peers for end-to-end tests: SIPp, baresip, Kamailio, mosquitto.

Every peer runs as a child process on 127.0.0.1 with ports picked at runtime, keeps its logs in a
work directory, and is waited on with deadlines (process exit, log lines, sockets), never fixed sleeps.
The recipes follow /work/shared/PEERS.md.

Typical use (the pytest fixtures in conftest.py wrap these)::

    with SippServer("uas_busy_486.xml", workdir=tmp) as uas:
        ...dial uas.uri()...
        result = uas.wait(10)
        result.check()                      # exit 0, no failed call
        assert "486 Busy Here" in result.messages
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from outcall.softphone import baresip_config

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
SIPP_DIR = Path(__file__).resolve().parent / "sipp"

# Credentials the digest scenarios (uas_auth_401.xml / uas_auth_407.xml) and the Kamailio cfg expect.
AUTH_USER = "alice"
AUTH_PASSWORD = "secret"
AUTH_REALM = "outcall.test"

SIPP_BUILTIN = frozenset(
    {
        "uac",
        "uas",
        "regexp",
        "3pcc-C-A",
        "3pcc-C-B",
        "3pcc-A",
        "3pcc-B",
        "branchc",
        "branchs",
        "uac_pcap",
        "ooc_default",
    }
)


class PeerError(RuntimeError):
    """A peer failed to start or misbehaved; the message says which peer, why, and where its logs are."""


# --------------------------------------------------------------------------------------------- utilities


def wait_until(
    predicate: Callable[[], bool],
    timeout: float,
    what: str,
    *,
    proc: subprocess.Popen[bytes] | None = None,
    interval: float = 0.005,
) -> None:
    """Poll ``predicate`` until it is true; raise PeerError after ``timeout`` s or if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise PeerError(f"process exited with {proc.returncode} while waiting for {what}")
        if time.monotonic() >= deadline:
            raise PeerError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


def _port_free(port: int) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind((LOOPBACK, port))
            except OSError:
                return False
    return True


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that is free now (and free for TCP too)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((LOOPBACK, 0))
            port = int(s.getsockname()[1])
        if _port_free(port):
            return port
    raise PeerError("no free UDP port found on 127.0.0.1")


def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def free_port_block(n: int) -> int:
    """First of ``n`` consecutive ports free for both UDP and TCP on 127.0.0.1.

    Picked below the kernel's ephemeral range (32768+) so bind(0) users do not race into the block.
    """
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 32000 - n)
        if all(_port_free(base + i) for i in range(n)):
            return base
    raise PeerError(f"no block of {n} free ports found on 127.0.0.1")


def _socket_inodes(pid: int) -> set[str]:
    inodes: set[str] = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    with contextlib.suppress(OSError):
        for fd in fd_dir.iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    return inodes


def bound_ports(pid: int, proto: str = "udp") -> set[int]:
    """Local ports of the ``proto`` ("udp" or "tcp") sockets process ``pid`` holds (IPv4)."""
    inodes = _socket_inodes(pid)
    ports: set[int] = set()
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/net/{proto}").read_text().splitlines()[1:]:
            cols = line.split()
            if len(cols) > 9 and cols[9] in inodes:
                ports.add(int(cols[1].split(":")[1], 16))
    return ports


def binds(pid: int, *, udp: Sequence[int] = (), tcp: Sequence[int] = ()) -> Callable[[], bool]:
    """A predicate for wait_until: process ``pid`` holds all these local UDP and TCP ports."""

    def check() -> bool:
        return set(udp) <= bound_ports(pid, "udp") and set(tcp) <= bound_ports(pid, "tcp")

    return check


def tcp_accepts(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        try:
            s.connect((host, port))
        except OSError:
            return False
    return True


def _require(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise PeerError(f"{binary!r} is not installed (see /work/shared/PEERS.md for the apt package)")
    return path


def _terminate(proc: subprocess.Popen[bytes] | None, grace: float = 3.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(grace)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _mkworkdir(workdir: Path | None, prefix: str) -> Path:
    if workdir is None:
        return Path(tempfile.mkdtemp(prefix=f"outcall-{prefix}-"))
    workdir.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=workdir))


# ------------------------------------------------------------------------------------------------ audio


def to_8k_wav(src: Path, dst: Path, *, pad_before: float = 0.0, pad_after: float = 0.0) -> Path:
    """Convert any audio file sox reads to 8 kHz mono 16-bit WAV, optionally padded with silence."""
    cmd = [_require("sox"), str(src), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer", str(dst)]
    if pad_before or pad_after:
        cmd += ["pad", f"{pad_before:.3f}", f"{pad_after:.3f}"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=30)
    return dst


def silence_wav(dst: Path, seconds: float) -> Path:
    """``seconds`` of 8 kHz mono 16-bit silence."""
    subprocess.run(
        [
            _require("sox"),
            "-n",
            "-r",
            "8000",
            "-c",
            "1",
            "-b",
            "16",
            "-e",
            "signed-integer",
            str(dst),
            "trim",
            "0",
            f"{seconds:.3f}",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return dst


def tts_wav(text: str, path: Path, voice: str = "cmn", speed_wpm: int = 175) -> Path:
    """Quick robotic speech for peer tests (espeak-ng), written as 8 kHz mono 16-bit WAV at ``path``."""
    raw = path.with_suffix(".espeak.wav")
    subprocess.run(
        [_require("espeak-ng"), "-v", voice, "-s", str(speed_wpm), "-w", str(raw), text],
        check=True,
        capture_output=True,
        timeout=30,
    )
    try:
        return to_8k_wav(raw, path)
    finally:
        raw.unlink(missing_ok=True)


def write_rtp_pcap(
    wav: Path,
    pcap: Path,
    *,
    payload_type: int = 8,
    ptime_ms: int = 20,
    src: tuple[str, int] = (LOOPBACK, 6000),
    dst: tuple[str, int] = (LOOPBACK, 7000),
) -> Path:
    """Encode ``wav`` as G.711 (8 = PCMA, 0 = PCMU) RTP packets into a pcap for sipp's play_pcap_audio."""
    encoding = {8: "a-law", 0: "u-law"}[payload_type]
    raw = subprocess.run(
        [_require("sox"), str(wav), "-t", "raw", "-r", "8000", "-c", "1", "-e", encoding, "-b", "8", "-"],
        check=True,
        capture_output=True,
        timeout=30,
    ).stdout
    step = 8 * ptime_ms
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))  # pcap, Ethernet
    ssrc = 0x5EED0001
    for i in range(0, len(raw) - step + 1, step):
        rtp = struct.pack("!BBHII", 0x80, payload_type | (0x80 if i == 0 else 0), i // step, i, ssrc)
        payload = rtp + raw[i : i + step]
        udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload
        ip = struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(udp),
            0,
            0,
            64,
            17,
            0,
            socket.inet_aton(src[0]),
            socket.inet_aton(dst[0]),
        )
        frame = b"\x00" * 12 + b"\x08\x00" + ip + udp
        t_us = (i // step) * ptime_ms * 1000
        out += struct.pack("<IIII", t_us // 1_000_000, t_us % 1_000_000, len(frame), len(frame)) + frame
    pcap.write_bytes(bytes(out))
    return pcap


# ------------------------------------------------------------------------------------------------- SIPp


@dataclass
class SippResult:
    """What a finished sipp run left behind. ``check()`` raises with the logs unless all calls passed."""

    returncode: int
    successful: int
    failed: int
    messages: str
    errors: str
    screen: str
    workdir: Path
    command: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.failed == 0 and self.successful > 0

    def check(self) -> Self:
        if not self.ok:
            raise AssertionError(
                f"sipp failed: rc={self.returncode} successful={self.successful} failed={self.failed}\n"
                f"command: {' '.join(self.command)}\nlogs: {self.workdir}\n"
                f"--- errors (tail) ---\n{self.errors[-3000:]}\n--- messages (tail) ---\n"
                f"{self.messages[-4000:]}\n--- screen (tail) ---\n{self.screen[-1500:]}"
            )
        return self


_STAT_RE = {
    name: re.compile(rf"^\s*{label}\s*\|\s*\d+\s*\|\s*(\d+)", re.M)
    for name, label in (("successful", "Successful call"), ("failed", "Failed call"))
}


_SIPP_ARGS_RE = re.compile(r"<!--\s*sipp-args:\s*(.*?)\s*-->")


class _Sipp:
    """One sipp process (client or server) kept as a child so its exit code can be waited on."""

    role = "sipp"

    def __init__(
        self,
        scenario: str | Path,
        *,
        calls: int = 1,
        rtp_echo: bool = False,
        timeout_s: float = 30.0,
        workdir: Path | None = None,
        service: str | None = None,
        keys: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.scenario = scenario
        self.calls = calls
        self.rtp_echo = rtp_echo
        self.timeout_s = timeout_s
        self.service = service
        self.keys = dict(keys or {})
        self.extra_args = list(extra_args)
        self.workdir = _mkworkdir(workdir, self.role)
        self.host = LOOPBACK
        self.port = 0
        self.media_port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.command: list[str] = []
        self._result: SippResult | None = None

    # --- paths and args
    @property
    def message_log(self) -> Path:
        return self.workdir / "messages.log"

    @property
    def error_log(self) -> Path:
        return self.workdir / "errors.log"

    @property
    def screen_log(self) -> Path:
        return self.workdir / "screen.log"

    def _scenario_args(self) -> tuple[list[str], Path]:
        sc = self.scenario
        if isinstance(sc, str) and sc in SIPP_BUILTIN:
            return ["-sn", sc], SIPP_DIR
        path = Path(sc)
        if not path.is_absolute() and not path.exists():
            path = SIPP_DIR / path
            if not path.exists() and path.suffix != ".xml":
                path = path.with_suffix(".xml")
        if not path.exists():
            raise PeerError(f"sipp scenario {sc!r} not found (looked in {SIPP_DIR})")
        # Flags a scenario cannot work without travel in it: <!-- sipp-args: -nr -->
        marker = _SIPP_ARGS_RE.search(path.read_text(errors="replace")[:4096])
        flags = marker.group(1).split() if marker else []
        # Relative media files (play_pcap_audio) resolve against the scenario's folder.
        return ["-sf", str(path.resolve()), *flags], path.resolve().parent

    def _remote_args(self) -> list[str]:
        return []

    def _build(self) -> tuple[list[str], Path]:
        scenario_args, cwd = self._scenario_args()
        self.port = free_udp_port()
        self.media_port = free_port_block(4)
        cmd = [
            _require("sipp"),
            *self._remote_args(),
            *scenario_args,
            "-i",
            LOOPBACK,
            "-p",
            str(self.port),
            "-mp",
            str(self.media_port),
            "-ci",
            LOOPBACK,
            "-cp",
            str(free_udp_port()),
            "-m",
            str(self.calls),
            "-nostdin",
            "-trace_msg",
            "-message_file",
            str(self.message_log),
            "-trace_err",
            "-error_file",
            str(self.error_log),
            "-timeout",
            f"{max(1, round(self.timeout_s))}s",
            "-timeout_error",
        ]
        if self.rtp_echo:
            cmd.append("-rtp_echo")
        if self.service is not None:
            cmd += ["-s", self.service]
        for k, v in self.keys.items():
            cmd += ["-key", k, v]
        cmd += self.extra_args
        return cmd, cwd

    def _spawn(self) -> None:
        self.command, cwd = self._build()
        log.debug("starting %s: %s", self.role, " ".join(self.command))
        with self.screen_log.open("wb") as out:
            self.proc = subprocess.Popen(
                self.command,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start(self) -> Self:
        self._spawn()
        return self

    # --- lifecycle
    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def messages(self) -> str:
        """The SIP message log so far (sipp writes it as it goes)."""
        return _read(self.message_log)

    def _collect(self) -> SippResult:
        assert self.proc is not None
        screen = _read(self.screen_log)
        stats = {k: [int(m) for m in rx.findall(screen)] for k, rx in _STAT_RE.items()}
        self._result = SippResult(
            returncode=self.proc.returncode if self.proc.returncode is not None else -1,
            successful=stats["successful"][-1] if stats["successful"] else 0,
            failed=stats["failed"][-1] if stats["failed"] else 0,
            messages=self.messages(),
            errors=_read(self.error_log),
            screen=screen,
            workdir=self.workdir,
            command=self.command,
        )
        return self._result

    def wait(self, timeout: float | None = None) -> SippResult:
        """Block until sipp exits (it exits by itself after ``calls`` calls or ``timeout_s``)."""
        if self.proc is None:
            raise PeerError(f"{self.role} was never started")
        if self._result is not None:
            return self._result
        limit = timeout if timeout is not None else self.timeout_s + 5
        try:
            self.proc.wait(limit)
        except subprocess.TimeoutExpired:
            self.stop()
            raise PeerError(f"{self.role} did not exit within {limit:.1f}s (logs: {self.workdir})") from None
        return self._collect()

    async def wait_async(self, limit_s: float | None = None) -> SippResult:
        """``wait(limit_s)`` off the event loop, so an asyncio UA under test keeps running meanwhile."""
        import asyncio

        return await asyncio.to_thread(self.wait, limit_s)

    def stop(self) -> SippResult | None:
        """Kill sipp if still running and return what it left behind."""
        if self.proc is None:
            return None
        if self._result is None:
            _terminate(self.proc)
            return self._collect()
        return self._result

    def __enter__(self) -> Self:
        return self.start() if self.proc is None else self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class SippServer(_Sipp):
    """sipp as a UAS: ``SippServer("uas_answer_echo.xml", rtp_echo=True).start()``; dial ``uri()``."""

    role = "sipp-uas"

    def start(self) -> Self:
        last = ""
        for _attempt in range(4):
            self._spawn()
            assert self.proc is not None
            proc = self.proc
            # `-t t1` / `-t tn` (TCP) listen on a TCP port only; every other transport binds UDP.
            args = self.extra_args
            tcp = any(args[i] == "-t" and args[i + 1] in ("t1", "tn") for i in range(len(args) - 1))
            try:
                wait_until(
                    binds(proc.pid, tcp=[self.port]) if tcp else binds(proc.pid, udp=[self.port]),
                    5.0,
                    f"sipp to bind {'tcp' if tcp else 'udp'} {self.port}",
                    proc=proc,
                )
                return self
            except PeerError as exc:
                _terminate(proc)
                last = f"{exc}\n{_read(self.screen_log)[-2000:]}"
                if proc.returncode not in (254, 255, -2, -1):  # not a bind failure: give up now
                    break
        raise PeerError(f"{self.role} {self.scenario} did not start: {last} (logs: {self.workdir})")

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def uri(self, user: str = "service") -> str:
        return f"sip:{user}@{self.host}:{self.port}"


class SippClient(_Sipp):
    """sipp as a UAC towards ``remote`` ("host:port"); ``proxy`` sends everything via that address (-rsa)."""

    role = "sipp-uac"

    def __init__(self, scenario: str | Path, remote: str, *, proxy: str | None = None, **kwargs: Any) -> None:
        super().__init__(scenario, **kwargs)
        self.remote = remote
        self.proxy = proxy

    def _remote_args(self) -> list[str]:
        args = [self.remote]
        if self.proxy:
            args += ["-rsa", self.proxy]
        return args

    def run(self, timeout: float | None = None) -> SippResult:
        if self.proc is None:
            self.start()
        return self.wait(timeout)


# ---------------------------------------------------------------------------------------------- baresip


def _netstring(payload: dict[str, Any]) -> bytes:
    data = json.dumps(payload).encode()
    return f"{len(data)}:".encode() + data + b","


class _NetstringReader:
    def __init__(self) -> None:
        self.buf = b""

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self.buf += data
        out: list[dict[str, Any]] = []
        while True:
            colon = self.buf.find(b":")
            if colon < 0:
                break
            size = int(self.buf[:colon])
            end = colon + 1 + size
            if len(self.buf) < end + 1:
                break
            out.append(json.loads(self.buf[colon + 1 : end]))
            self.buf = self.buf[end + 1 :]
        return out


class Baresip:
    """baresip as a scripted auto-answering callee that says ``audio`` and records what it hears.

    ``Baresip(workdir=tmp, audio=wav, delay_s=1.0, tail_s=8.0).start()`` then dial ``.uri``. The WAV is
    converted to 8 kHz mono and padded (``delay_s`` silence before, ``tail_s`` after: baresip hangs up
    by itself shortly after the file ends). ``recordings()`` gives (dec, enc) WAVs after the call:
    dec = what the caller sent, enc = what baresip sent.
    """

    def __init__(
        self,
        *,
        workdir: Path | None = None,
        audio: Path | None = None,
        delay_s: float = 0.0,
        tail_s: float = 10.0,
        user: str = "callee",
        codecs: Sequence[str] = ("PCMU", "PCMA"),
        max_seconds: int = 120,
        answermode: str = "auto",
        extra_modules: Sequence[str] = (),
    ) -> None:
        self.workdir = _mkworkdir(workdir, "baresip")
        self.audio = audio
        self.delay_s = delay_s
        self.tail_s = tail_s
        self.user = user
        self.codecs = list(codecs)
        self.max_seconds = max_seconds
        self.answermode = answermode
        self.extra_modules = list(extra_modules)  # e.g. ["g722.so"] for a callee without G.711
        self.host = LOOPBACK
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.rec_dir = self.workdir / "rec"
        self.log_path = self.workdir / "baresip.log"
        self.events: list[dict[str, Any]] = []
        self._events_cond = threading.Condition()
        self._event_sock: socket.socket | None = None
        self._event_thread: threading.Thread | None = None

    @property
    def ctrl_port(self) -> int:
        return self.port + 2

    @property
    def uri(self) -> str:
        return f"sip:{self.user}@{self.host}:{self.port}"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def log_text(self) -> str:
        return _read(self.log_path)

    def _prepare(self) -> Path:
        self.rec_dir.mkdir(exist_ok=True)
        say = self.workdir / "say.wav"
        if self.audio is None:
            silence_wav(say, self.delay_s + self.tail_s)
        else:
            to_8k_wav(self.audio, say, pad_before=self.delay_s, pad_after=self.tail_s)
        return say

    def start(self) -> Self:
        say = self._prepare()
        cfg_dir = self.workdir / "cfg"
        cfg_dir.mkdir(exist_ok=True)
        last = ""
        for _attempt in range(4):
            self.port = free_port_block(3)
            (cfg_dir / "config").write_text(
                baresip_config(
                    self.host,
                    self.port,
                    say,
                    record_dir=self.rec_dir,
                    ctrl_port=self.ctrl_port,
                    extra_modules=self.extra_modules,
                )
            )
            (cfg_dir / "accounts").write_text(
                f"<sip:{self.user}@{self.host}>;regint=0;answermode={self.answermode};mwi=no;"
                f"audio_codecs={','.join(self.codecs)}\n"
            )
            cmd = ["stdbuf", "-oL", _require("baresip"), "-f", str(cfg_dir), "-t", str(self.max_seconds)]
            with self.log_path.open("wb") as out:
                self.proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            proc = self.proc
            try:
                wait_until(
                    lambda: "baresip is ready" in self.log_text(), 5.0, "'baresip is ready'", proc=proc
                )
                # A module that cannot bind (port raced away) does not stop baresip: check the sockets.
                wait_until(
                    binds(proc.pid, udp=[self.port], tcp=[self.ctrl_port]),
                    2.0,
                    f"baresip to bind udp {self.port} and ctrl tcp {self.ctrl_port}",
                    proc=proc,
                )
                self._start_event_listener()
                return self
            except PeerError as exc:
                _terminate(proc)
                last = f"{exc}\n{self.log_text()[-2000:]}"
        raise PeerError(f"baresip did not start: {last} (logs: {self.workdir})")

    # --- ctrl_tcp
    def _start_event_listener(self) -> None:
        sock = socket.create_connection((self.host, self.ctrl_port), timeout=2.0)
        sock.settimeout(None)
        self._event_sock = sock
        reader = _NetstringReader()

        def pump() -> None:
            while True:
                try:
                    data = sock.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                msgs = reader.feed(data)
                with self._events_cond:
                    self.events.extend(m for m in msgs if m.get("event"))
                    self._events_cond.notify_all()

        self._event_thread = threading.Thread(target=pump, name=f"baresip-events-{self.port}", daemon=True)
        self._event_thread.start()

    def wait_event(self, event_type: str, timeout: float = 10.0) -> dict[str, Any]:
        """Block until baresip reports ``event_type`` (e.g. CALL_ESTABLISHED, CALL_CLOSED)."""
        deadline = time.monotonic() + timeout
        with self._events_cond:
            while True:
                for ev in self.events:
                    if ev.get("type") == event_type:
                        return ev
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PeerError(f"baresip: no {event_type} within {timeout}s; events={self.events}")
                self._events_cond.wait(left)

    async def wait_event_async(self, event_type: str, limit_s: float = 10.0) -> dict[str, Any]:
        """``wait_event()`` off the event loop."""
        import asyncio

        return await asyncio.to_thread(self.wait_event, event_type, limit_s)

    def command(self, command: str, params: str = "", timeout: float = 3.0) -> dict[str, Any]:
        """Send one ctrl_tcp command and return its response object."""
        token = f"t{random.randrange(1 << 30)}"
        payload: dict[str, Any] = {"command": command, "token": token}
        if params:
            payload["params"] = params
        reader = _NetstringReader()
        with socket.create_connection((self.host, self.ctrl_port), timeout=timeout) as s:
            s.sendall(_netstring(payload))
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                data = s.recv(65536)
                if not data:
                    break
                for msg in reader.feed(data):
                    if msg.get("response"):
                        return msg
        raise PeerError(f"baresip: no response to {command!r} within {timeout}s")

    def hangup(self) -> dict[str, Any]:
        return self.command("hangup")

    def quit(self) -> None:
        if self.running:
            with contextlib.suppress(OSError, PeerError):
                self.command("quit", timeout=1.0)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def recordings(self) -> list[Path]:
        """All dump-*-dec.wav / dump-*-enc.wav files sndfile wrote, oldest first."""
        return sorted(self.rec_dir.glob("dump-*.wav"), key=lambda p: (p.stat().st_mtime, p.name))

    def recording(self, kind: str = "dec") -> Path:
        """The latest ``dec`` (heard from the caller) or ``enc`` (sent by baresip) recording."""
        found = [p for p in self.recordings() if p.name.endswith(f"-{kind}.wav")]
        if not found:
            raise PeerError(f"baresip wrote no *-{kind}.wav in {self.rec_dir}")
        return found[-1]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.quit()
            try:
                self.proc.wait(2.0)
            except subprocess.TimeoutExpired:
                _terminate(self.proc)
        if self._event_sock is not None:
            with contextlib.suppress(OSError):
                self._event_sock.close()
            self._event_sock = None
        if self._event_thread is not None:
            self._event_thread.join(1.0)
            self._event_thread = None

    def __enter__(self) -> Self:
        return self.start() if self.proc is None else self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------- Kamailio

_KAMAILIO_CFG = """\
#!KAMAILIO
debug=2
log_stderror=yes
fork=yes
children=2
disable_tcp=yes
dns=no
rev_dns=no
auto_aliases=no
listen=udp:{host}:{port}
alias="{host}:{port}"

loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "auth.so"
loadmodule "xlog.so"

modparam("rr", "append_fromtag", 1)
modparam("auth", "nonce_expire", 300)

request_route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    xlog("L_INFO", "REQ $rm $ru from $si:$sp ci=$ci\\n");
    if (is_method("OPTIONS") && uri == myself && !has_totag()) {{
        sl_send_reply("200", "OK");
        exit;
    }}
    if (has_totag()) {{
        if (loose_route()) {{
            t_relay();
            exit;
        }}
        if (is_method("ACK")) {{
            if (t_check_trans()) {{
                t_relay();
            }}
            exit;
        }}
        sl_send_reply("404", "Not here");
        exit;
    }}
    if (is_method("CANCEL")) {{
        if (t_check_trans()) {{
            t_relay();
        }}
        exit;
    }}
    t_check_trans();
{auth_block}    if (is_method("INVITE")) {{
        record_route();
    }}
    if (!t_relay()) {{
        sl_reply_error();
    }}
    exit;
}}
"""


_KAMAILIO_AUTH = """\
    if (is_method("INVITE")) {{
        if (!pv_proxy_authenticate("{realm}", "{password}", "0") || $au != "{user}") {{
            proxy_challenge("{realm}", "0");
            exit;
        }}
        consume_credentials();
    }}
"""


def _sip_options(host: str, port: int, timeout: float = 0.3) -> str | None:
    """Send one OPTIONS over UDP; return the first response line or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOOPBACK, 0))
        lport = s.getsockname()[1]
        tag = random.randrange(1 << 30)
        msg = (
            f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {LOOPBACK}:{lport};branch=z9hG4bK-probe{tag};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:probe@{LOOPBACK}:{lport}>;tag={tag}\r\n"
            f"To: <sip:{host}:{port}>\r\nCall-ID: probe-{tag}@{LOOPBACK}\r\nCSeq: 1 OPTIONS\r\n"
            f"Content-Length: 0\r\n\r\n"
        )
        s.settimeout(timeout)
        s.sendto(msg.encode(), (host, port))
        try:
            data = s.recv(65536)
        except OSError:
            return None
        return data.split(b"\r\n", 1)[0].decode(errors="replace")


class Kamailio:
    """Kamailio as an auth-challenging, record-routing proxy on 127.0.0.1:``port``.

    With ``auth=True`` an initial INVITE gets 407 until it carries Proxy-Authorization for
    ``user``/``password`` in ``realm``; then it is record-routed and relayed to its Request-URI.
    """

    def __init__(
        self,
        *,
        workdir: Path | None = None,
        user: str = AUTH_USER,
        password: str = AUTH_PASSWORD,
        realm: str = AUTH_REALM,
        auth: bool = True,
    ) -> None:
        self.workdir = _mkworkdir(workdir, "kamailio")
        self.user, self.password, self.realm, self.auth = user, password, realm, auth
        self.host = LOOPBACK
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / "kamailio.log"
        self.cfg_path = self.workdir / "kamailio.cfg"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def uri(self) -> str:
        return f"sip:{self.host}:{self.port}"

    def log_text(self) -> str:
        return _read(self.log_path)

    def start(self) -> Self:
        last = ""
        for _attempt in range(4):
            self.port = free_udp_port()
            self.cfg_path.write_text(
                _KAMAILIO_CFG.format(
                    host=self.host,
                    port=self.port,
                    auth_block=_KAMAILIO_AUTH.format(realm=self.realm, password=self.password, user=self.user)
                    if self.auth
                    else "",
                )
            )
            cmd = [
                _require("kamailio"),
                "-f",
                str(self.cfg_path),
                "-DD",
                "-E",
                "-m",
                "32",
                "-M",
                "4",
                "-Y",
                str(self.workdir),
            ]
            with self.log_path.open("wb") as out:
                self.proc = subprocess.Popen(
                    cmd,
                    cwd=self.workdir,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            proc = self.proc
            try:
                wait_until(
                    lambda: _sip_options(self.host, self.port, 0.1) is not None,
                    5.0,
                    f"kamailio to answer OPTIONS on {self.address}",
                    proc=proc,
                )
                return self
            except PeerError as exc:
                _terminate(proc)
                last = f"{exc}\n{self.log_text()[-2000:]}"
        raise PeerError(f"kamailio did not start: {last} (cfg {self.cfg_path}, log {self.log_path})")

    def stop(self) -> None:
        _terminate(self.proc, grace=5.0)

    def __enter__(self) -> Self:
        return self.start() if self.proc is None else self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


# -------------------------------------------------------------------------------------------- mosquitto


class Mosquitto:
    """mosquitto MQTT broker on 127.0.0.1:``port`` (anonymous). ``restart()`` keeps the port."""

    def __init__(self, *, workdir: Path | None = None, persistence: bool = False) -> None:
        self.workdir = _mkworkdir(workdir, "mosquitto")
        self.persistence = persistence  # keep sessions and queued QoS 1 messages across restart()
        self.host = LOOPBACK
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / "mosquitto.log"
        self.conf_path = self.workdir / "mosquitto.conf"

    def log_text(self) -> str:
        return _read(self.log_path)

    def _persist_conf(self) -> str:
        """mosquitto started as root drops to the `mosquitto` user, which cannot write into our private
        temp folders: stay root for the database (tests only)."""
        path = self.workdir / "db"
        path.mkdir(exist_ok=True)
        return f"persistence_location {path}/\n" + ("user root\n" if os.geteuid() == 0 else "")

    def _spawn(self) -> None:
        self.conf_path.write_text(
            f"listener {self.port} {self.host}\nallow_anonymous true\n"
            f"persistence {'true' if self.persistence else 'false'}\nlog_dest stderr\nlog_type all\n"
            + (self._persist_conf() if self.persistence else "")
        )
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                [_require("mosquitto"), "-c", str(self.conf_path)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc = self.proc
        wait_until(
            lambda: tcp_accepts(self.host, self.port), 5.0, f"mosquitto on {self.host}:{self.port}", proc=proc
        )

    def start(self) -> Self:
        last = ""
        for _attempt in range(4):
            self.port = free_tcp_port()
            try:
                self._spawn()
                return self
            except PeerError as exc:
                _terminate(self.proc)
                last = f"{exc}\n{self.log_text()[-2000:]}"
        raise PeerError(f"mosquitto did not start: {last} (log {self.log_path})")

    def stop(self) -> None:
        _terminate(self.proc)

    def restart(self) -> None:
        """Stop and start again on the same port (clients see the broker go away and come back)."""
        self.stop()
        wait_until(lambda: not tcp_accepts(self.host, self.port), 5.0, "mosquitto port to close")
        self._spawn()

    def __enter__(self) -> Self:
        return self.start() if self.proc is None else self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
