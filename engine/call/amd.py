"""Answering-machine and carrier-announcement decision from what the line said right after answer.

Runs in parallel with the greeting (a human's greeting is never delayed): utterances heard in the first
seconds are transcribed and matched here (`decide`, text rules: they decide whenever the words are
recognised). `AcousticAmd` listens to the same frames for what needs no words:

* greeting cadence (`Cadence`): a human answers with a short greeting (喂 / 你好, < 1.5 s) and waits; a
  voicemail or phone assistant starts talking at answer and goes on (> 3.5 s with only short pauses);
* the voicemail beep (`engine.call.beep.ToneDetector`).

A beep that follows a greeting longer than a human's is a voicemail decision even when the words were not
recognisable (a greeting in another language, then the beep).
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

from engine.audio import FRAME_MS, PCM, rms_dbfs
from engine.call.beep import ToneConfig, ToneDetector, ToneEvent
from engine.dispositions import Disposition


@dataclass(frozen=True)
class AmdDecision:
    disposition: Disposition
    kind: str  # voicemail | assistant | announcement
    pattern: str


#: "您拨打的电话/用户/号码": only carrier announcements start like this. After it, ASR homophones of the
#: status words are accepted too (measured with whisper base on 8 kHz audio: 已关机 -> 已关节/与关机,
#: 已停机 -> 以情节, bench/results/amd.json)
_DIALED = r"(拨|播|波)打的(电话|用户|号码)"

_RULES: tuple[tuple[str, Disposition, str], ...] = (
    # definite carrier announcements first
    (r"(已|已经)关机|关机了", Disposition.POWERED_OFF, "announcement"),
    (_DIALED + r".{0,4}(关机|关节|关级)", Disposition.POWERED_OFF, "announcement"),
    (_DIALED + r".{0,4}(停机|情节|停即|停级)", Disposition.SUSPENDED, "announcement"),
    (r"是空号|号码不存在|不是有效号码", Disposition.INVALID_NUMBER, "announcement"),
    (r"(已|已经)停机|已欠费", Disposition.SUSPENDED, "announcement"),
    (r"switched off|powered off", Disposition.POWERED_OFF, "announcement"),
    (
        r"(number|call).{0,30}(not in service|does not exist|disconnected)",
        Disposition.INVALID_NUMBER,
        "announcement",
    ),
    # voicemail and phone assistants answering for the owner
    (r"留言|提示音后|语音信箱|嘀声后|滴声后", Disposition.VOICEMAIL, "voicemail"),
    (r"(提示|嘀|滴).{0,2}(音|您|声)后.{0,4}(留言|流言|留一)", Disposition.VOICEMAIL, "voicemail"),
    (
        r"(机主|基主|鸡主|机组).{0,6}(智能)?助理|智能助理.{0,8}(机主|代接)|我是.{0,6}(秘书|助理).{0,10}(机主|主人)",
        Disposition.VOICEMAIL,
        "assistant",
    ),
    (r"leave (a|your) message|after the (tone|beep)|voice ?mail|mailbox", Disposition.VOICEMAIL, "voicemail"),
    # weaker announcements
    (r"正在通话中|通话中.*稍后再拨", Disposition.BUSY, "announcement"),
    (r"暂时无法接通|无法接通|不在服务区", Disposition.UNREACHABLE, "announcement"),
    (r"暂时无人接听|无人接听", Disposition.NO_ANSWER, "announcement"),
    (r"cannot be (reached|connected)|is (currently )?unavailable", Disposition.UNREACHABLE, "announcement"),
)
_COMPILED = tuple((re.compile(p, re.IGNORECASE), d, k, p) for p, d, k in _RULES)


def decide(text: str) -> AmdDecision | None:
    """A decision when the words are a machine's; None for a human (or nothing recognisable)."""
    t = re.sub(r"\s+", " ", text).strip()
    if not t:
        return None
    for rx, disposition, kind, pattern in _COMPILED:
        if rx.search(t):
            return AmdDecision(disposition, kind, pattern)
    return None


# --- acoustic: greeting cadence and beep -------------------------------------------------------------


@dataclass(frozen=True)
class CadenceConfig:
    #: a human's answer (喂, 你好, 哪位) is shorter than this
    human_max_s: float = 1.5
    #: a machine greeting is longer than this
    machine_min_s: float = 3.5
    #: a pause this long ends the greeting. Greetings read by TTS/IVR pause <= 0.45 s between phrases
    #: (measured on the corpus); a human who said 喂 waits for an answer far longer
    gap_s: float = 0.8
    #: a frame counts as speech only this far above the quietest frame of the last `floor_s`: the
    #: energy endpointer's floor never rises to line noise that is there from the first frame (it
    #: calls that noise speech), while 20 ms frames between syllables and words always dip to it. 20 ms
    #: frames of steady line noise stay within ~2 dB of each other; speech at 10 dB SNR is mostly more
    #: than 6 dB above the noise
    snr_db: float = 6.0
    floor_s: float = 1.5


class Cadence:
    """The first speech after answer, from per-frame speech decisions (the Endpointer's).

    `verdict`: None while undecided, then human (short greeting, then a pause), machine (long continuous
    speech: decided while it is still going on) or unknown (in between). Only the first greeting counts."""

    def __init__(self, config: CadenceConfig | None = None) -> None:
        self.cfg = config or CadenceConfig()
        self.verdict: str | None = None
        self.start_s: float | None = None
        self.last_s = 0.0
        self._t = 0.0

    @property
    def span_s(self) -> float:
        return 0.0 if self.start_s is None else self.last_s - self.start_s

    @property
    def machine_likely(self) -> bool:
        return self.verdict == "machine"

    def feed(self, speech: bool) -> str | None:
        """Advance by one frame; the verdict when it is reached on this frame."""
        self._t += FRAME_MS / 1000.0
        if self.verdict is not None:
            return None
        c = self.cfg
        if speech:
            if self.start_s is None:
                self.start_s = self._t - FRAME_MS / 1000.0
            self.last_s = self._t
            if self.span_s >= c.machine_min_s:
                self.verdict = "machine"
        elif self.start_s is not None and self._t - self.last_s >= c.gap_s:
            self.verdict = "human" if self.span_s <= c.human_max_s else "unknown"
        return self.verdict


class LevelFloor:
    """Whether a frame is loud: `snr_db` above the quietest frame of the last `floor_s` (see
    CadenceConfig.snr_db: steady line noise is never loud, speech between its pauses is)."""

    def __init__(self, snr_db: float = 6.0, floor_s: float = 1.5) -> None:
        self.snr_db = snr_db
        self._levels: deque[float] = deque(maxlen=max(1, round(floor_s * 1000 / FRAME_MS)))

    def loud(self, frame: PCM) -> bool:
        level = rms_dbfs(frame)
        self._levels.append(level)
        return level >= min(self._levels) + self.snr_db


class AcousticAmd:
    """Beep + cadence on the frames after answer. `feed` each 20 ms frame with the Endpointer's speech
    decision for it; returns a voicemail decision once, when a beep follows a greeting that is longer
    than a human's (`human_max_s`) by at most `beep_within_s` after its last speech."""

    def __init__(
        self,
        tone: ToneConfig | None = None,
        cadence: CadenceConfig | None = None,
        *,
        beep_within_s: float = 3.0,
    ) -> None:
        self.tones = ToneDetector(tone)
        self.cadence = Cadence(cadence)
        self._floor = LevelFloor(self.cadence.cfg.snr_db, self.cadence.cfg.floor_s)
        self.beep_within_s = beep_within_s
        self.events: list[ToneEvent] = []
        self.decision: AmdDecision | None = None

    def feed(self, frame: PCM, speech: bool) -> AmdDecision | None:
        ev = self.tones.feed(frame)
        loud = self._floor.loud(frame)
        # a beep is loud enough to be "speech" to an energy endpointer: it is not part of the greeting
        self.cadence.feed(speech and loud and not self.tones.tonal)
        if ev is None or self.decision is not None:
            return None
        self.events.append(ev)
        cad = self.cadence
        if (
            ev.kind == "beep"
            and cad.start_s is not None
            and cad.verdict != "human"
            and cad.span_s > cad.cfg.human_max_s
            and ev.start_s >= cad.start_s
            and ev.start_s - cad.last_s <= self.beep_within_s
        ):
            self.decision = AmdDecision(
                Disposition.VOICEMAIL,
                "voicemail",
                f"beep {ev.hz:.0f} Hz {ev.duration_s:.2f} s after a {cad.span_s:.1f} s greeting",
            )
            return self.decision
        return None


class MessageCue:
    """When to start a message left on a voicemail or with a phone assistant (dialplan `voicemail:`).

    Fed every frame after answer (with the Endpointer's speech decision), it keeps when the last speech
    ended and whether a beep came after it. `ready` (asked once a machine was decided): right after the
    beep that followed the greeting, or once the line has been quiet for `quiet_s` since the greeting
    (assistants and beep-less mailboxes wait for the caller to speak). A beep is a tone, never speech."""

    def __init__(self, quiet_s: float = 2.0, tone: ToneConfig | None = None) -> None:
        self.quiet_s = quiet_s
        self.tones = ToneDetector(tone)
        self._t = 0.0
        self._last_speech: float | None = None
        self._beep_after_speech = False
        self._floor = LevelFloor()

    def feed(self, frame: PCM, speech: bool) -> None:
        self._t += FRAME_MS / 1000.0
        ev = self.tones.feed(frame)
        loud = self._floor.loud(frame)
        if ev is not None and ev.kind == "beep":
            self._beep_after_speech = True
        elif speech and loud and not self.tones.tonal:
            self._last_speech = self._t
            self._beep_after_speech = False

    @property
    def ready(self) -> str | None:
        """'beep' or 'quiet' when the message may start now, else None."""
        if self._beep_after_speech:
            return "beep"
        since = self._t - (self._last_speech or 0.0)
        return "quiet" if since >= self.quiet_s else None
