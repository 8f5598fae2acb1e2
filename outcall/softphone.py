"""A real softphone as a scripted callee: baresip (Debian `baresip-core`) answering on loopback and
speaking one WAV. Used by `outcall demo` when baresip is installed.

baresip plays its audio source from the moment it answers, so the reply is padded with the silence the
robot needs for its opening lines, and with a tail that keeps the line up while the robot says goodbye.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import wave
from pathlib import Path

import numpy as np

from engine.audio import PCM, SAMPLE_RATE
from engine.errors import ConfigError

_CONFIG = """\
poll_method epoll
sip_listen {host}:{port}
sip_trans_def udp
net_interface {host}
dns_server {host}:53
call_local_timeout 120
call_max_calls 1
audio_player none,none
audio_source aufile,{audio}
audio_alert none,none
audio_level no
ausrc_srate 8000
auplay_srate 8000
ausrc_channels 1
auplay_channels 1
rtp_tos 0
jitter_buffer_delay 0-0
rtp_stats no
module_path /usr/lib/baresip/modules
module g711.so
module aufile.so
module_app account.so
module_app menu.so
"""


def baresip_config(
    host: str,
    port: int,
    audio: Path,
    *,
    record_dir: Path | None = None,
    ctrl_port: int | None = None,
    extra_modules: tuple[str, ...] | list[str] = (),
) -> str:
    """A headless baresip `config` (PEERS.md recipe): loopback only, G.711, says `audio` (8 kHz mono WAV),
    optionally records both directions into `record_dir` and listens for ctrl_tcp commands."""
    text = _CONFIG.format(host=host, port=port, audio=audio)
    if record_dir is not None:
        text += f"snd_path {record_dir}\nmodule sndfile.so\n"
    if ctrl_port is not None:
        text += f"module_app ctrl_tcp.so\nctrl_tcp_listen {host}:{ctrl_port}\n"
    return text + "".join(f"module {m}\n" for m in extra_modules)


def available() -> bool:
    return shutil.which("baresip") is not None


def _free_pair(host: str) -> int:
    """A port free for UDP and TCP, with port+1 (baresip's TLS listener) free for TCP as well."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind((host, 0))
            port = int(u.getsockname()[1])
        if port > 65000:
            continue
        try:
            for p in (port, port + 1):
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                    t.bind((host, p))
            return port
        except OSError:
            continue
    raise ConfigError("no free port pair on loopback for baresip")


def write_wav(path: Path, pcm: PCM) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(np.asarray(pcm, dtype="<i2").tobytes())


class BaresipCallee:
    """One auto-answering baresip instance saying `pcm` after `delay_s` of silence."""

    def __init__(
        self, workdir: Path, pcm: PCM, *, delay_s: float, tail_s: float = 15.0, user: str = "callee"
    ) -> None:
        self.workdir = workdir
        self.user = user
        self.host = "127.0.0.1"
        self.port = 0
        self.proc: asyncio.subprocess.Process | None = None
        silence = np.zeros(int(SAMPLE_RATE * delay_s), np.int16)
        tail = np.zeros(int(SAMPLE_RATE * tail_s), np.int16)
        self.audio = np.concatenate([silence, np.asarray(pcm, np.int16), tail])

    @property
    def uri(self) -> str:
        return f"sip:{self.user}@{self.host}:{self.port}"

    async def start(self, *, ready_timeout_s: float = 5.0) -> str:
        exe = shutil.which("baresip")
        if exe is None:
            raise ConfigError("baresip is not installed", hint="apt-get install baresip-core")
        cfg = self.workdir / "cfg"
        cfg.mkdir(parents=True, exist_ok=True)
        say = self.workdir / "say.wav"
        write_wav(say, self.audio)
        self.port = _free_pair(self.host)
        (cfg / "config").write_text(
            _CONFIG.format(host=self.host, port=self.port, audio=say), encoding="utf-8"
        )
        (cfg / "accounts").write_text(
            f"<sip:{self.user}@{self.host}>;regint=0;answermode=auto;mwi=no;audio_codecs=PCMA,PCMU\n",
            encoding="utf-8",
        )
        log_path = self.workdir / "baresip.log"
        with log_path.open("wb") as out:
            self.proc = await asyncio.create_subprocess_exec(
                exe, "-f", str(cfg), "-t", "180", stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ready_timeout_s
        while "baresip is ready" not in log_path.read_text(errors="replace"):
            if self.proc.returncode is not None or loop.time() > deadline:
                await self.stop()
                raise ConfigError(f"baresip did not start: see {log_path}")
            await asyncio.sleep(0.02)  # baresip offers no readiness signal but its log line
        return self.uri

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 3.0)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
