"""Endpointing: turns a stream of 20 ms frames into callee utterances.

An adaptive energy detector: a frame is speech when it is well above the tracked noise floor and above an
absolute floor. Speech starts after `start_ms` of speech frames (with `preroll_ms` of audio kept before it)
and ends after `end_silence_ms` of non-speech, or at `max_utterance_s`. A start that ends before
`min_speech_ms` of voiced audio (a click, a cough) is reported as `SpeechAborted`.

With a VAD model (engine.ports.VoiceActivity, e.g. Silero) the energy detector is only the gate: a frame
loud enough is speech when the model also says so (probability >= `vad_threshold`), so steady noise, music
and clicks stop opening turns. The model runs only while the gate is open (cheap on a mostly quiet line).

`speculate_ms` (utterance engines such as Whisper): after that much silence inside an utterance the
endpointer reports `SpeechPaused` with the audio so far; the session starts transcribing it then and uses
the result if the utterance ends without more speech (the final audio is then exactly the same), or drops
it if the callee goes on. That takes the ASR time out of the end-of-turn silence.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

import numpy as np

from engine.audio import FRAME_MS, PCM, rms_dbfs
from engine.ports import VoiceActivity


@dataclass(frozen=True)
class EndpointConfig:
    start_ms: int = 100
    end_silence_ms: int = 600
    max_utterance_s: float = 15.0
    preroll_ms: int = 200
    min_speech_ms: int = 200
    abs_floor_dbfs: float = -48.0
    snr_db: float = 10.0
    #: with a VAD model: the speech probability a loud frame needs
    vad_threshold: float = 0.5
    #: silence after which a speculative transcription may start (None: never)
    speculate_ms: int | None = 250


@dataclass(frozen=True)
class SpeechStarted:
    offset_s: float  # stream time of the onset


@dataclass(frozen=True)
class SpeechAborted:
    offset_s: float


@dataclass(frozen=True)
class SpeechPaused:
    """`speculate_ms` of silence inside an utterance: `pcm` is what the utterance will be if it ends here."""

    pcm: PCM
    start_s: float


@dataclass(frozen=True)
class Utterance:
    pcm: PCM
    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


EndpointEvent = SpeechStarted | SpeechAborted | SpeechPaused | Utterance


class Endpointer:
    def __init__(self, config: EndpointConfig | None = None, *, vad: VoiceActivity | None = None) -> None:
        self.cfg = config or EndpointConfig()
        self.vad = vad
        self._vad_on = False
        self.vad_frames = 0
        self.noise_floor = -70.0
        self._t = 0.0
        self._pre: deque[PCM] = deque(maxlen=max(1, self.cfg.preroll_ms // FRAME_MS))
        self._cur: list[PCM] = []
        self._speech_run = 0
        self._silence_run = 0
        self._voiced = 0
        self._in_speech = False
        self._start_s = 0.0
        #: the last frame fed was speech (the per-frame decision, before start/end hangovers)
        self.frame_speech = False

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    @property
    def utterance_frames(self) -> list[PCM]:
        """The frames of the utterance in progress so far (pre-roll included); empty outside speech."""
        return list(self._cur) if self._in_speech else []

    def reset(self) -> None:
        self._pre.clear()
        self._cur = []
        self._speech_run = self._silence_run = self._voiced = 0
        self._in_speech = False

    def is_speech(self, level: float) -> bool:
        return level > self.cfg.abs_floor_dbfs and level > self.noise_floor + self.cfg.snr_db

    def _vad_says_speech(self, frame: PCM) -> bool:
        vad = self.vad
        assert vad is not None
        if not self._vad_on:  # the gate just opened: restart the model on the audio just before
            vad.reset()
            for f in list(self._pre)[-2:]:
                vad.probability(f)
            self._vad_on = True
        self.vad_frames += 1
        return vad.probability(frame) >= self.cfg.vad_threshold

    def feed(self, frame: PCM) -> EndpointEvent | None:
        level = rms_dbfs(frame)
        speech = self.is_speech(level)
        if self.vad is not None:
            if speech:
                speech = self._vad_says_speech(frame)
            elif not self._in_speech:
                self._vad_on = False
        self.frame_speech = speech
        if not speech:
            # track the floor quickly downwards, slowly upwards
            rate = 0.2 if level < self.noise_floor else 0.02
            self.noise_floor += rate * (level - self.noise_floor)
        self._t += FRAME_MS / 1000.0
        cfg = self.cfg
        if not self._in_speech:
            self._pre.append(frame)
            self._speech_run = self._speech_run + 1 if speech else 0
            if self._speech_run * FRAME_MS >= cfg.start_ms:
                self._in_speech = True
                self._cur = list(self._pre)
                self._start_s = self._t - len(self._cur) * FRAME_MS / 1000.0
                self._silence_run = 0
                self._voiced = self._speech_run
                return SpeechStarted(self._t - self._speech_run * FRAME_MS / 1000.0)
            return None
        self._cur.append(frame)
        if speech:
            self._silence_run = 0
            self._voiced += 1
        else:
            self._silence_run += 1
        too_long = len(self._cur) * FRAME_MS / 1000.0 >= cfg.max_utterance_s
        if (
            cfg.speculate_ms is not None
            and not too_long
            and self._silence_run == -(-cfg.speculate_ms // FRAME_MS)
            and self._silence_run * FRAME_MS < cfg.end_silence_ms
            and self._voiced * FRAME_MS >= cfg.min_speech_ms
        ):
            keep = len(self._cur) - max(0, self._silence_run - 5)
            return SpeechPaused(np.concatenate(self._cur[:keep]).astype(np.int16), self._start_s)
        if self._silence_run * FRAME_MS >= cfg.end_silence_ms or too_long:
            return self._finish(too_long)
        return None

    def end_now(self) -> Utterance | None:
        """End the utterance in progress at once (a streaming partial already forms a complete answer):
        the same Utterance the end-of-turn silence would have given, without waiting for the rest of it.
        None outside speech or before `min_speech_ms` of voiced audio."""
        if not self._in_speech or self._voiced * FRAME_MS < self.cfg.min_speech_ms:
            return None
        ev = self._finish(False)
        return ev if isinstance(ev, Utterance) else None

    def _finish(self, too_long: bool) -> Utterance | SpeechAborted:
        keep = len(self._cur) - (0 if too_long else max(0, self._silence_run - 5))
        pcm = np.concatenate(self._cur[:keep]) if keep > 0 else np.zeros(0, np.int16)
        voiced_ms = self._voiced * FRAME_MS
        start = self._start_s
        self.reset()
        if voiced_ms < self.cfg.min_speech_ms:
            return SpeechAborted(start)
        return Utterance(pcm.astype(np.int16), start, start + len(pcm) / 8000.0)


_BACKCHANNEL = {
    "嗯", "嗯嗯", "恩", "对", "对对", "对对对", "是", "是的", "是是", "好", "好的", "哦", "噢", "啊", "嗯哼",
    "行", "ok", "okay", "uh huh", "uh-huh", "mhm", "mm", "hmm", "yeah", "yes", "right", "sure",
}  # fmt: skip
_PUNCT = re.compile(r"[\s,.!?;:，。！？、；：…~'\"-]+")


def is_backchannel(text: str) -> bool:
    """Short acknowledgements that must not interrupt the robot (嗯, 对, 好的, uh-huh)."""
    t = _PUNCT.sub(" ", text.lower()).strip()
    if not t:
        return False
    if t in _BACKCHANNEL:
        return True
    words = t.split()
    if len(words) > 1:
        return all(w in _BACKCHANNEL for w in words)
    # 嗯嗯嗯 / 对对对对: repeated single backchannel characters
    return len(t) <= 4 and all(c in "嗯恩对是好哦噢啊" for c in t)


#: short closed answers: once a streaming partial is one of these and the callee pauses, the turn is over
_CLOSED = {
    "好", "好的", "好吧", "好啊", "好呀", "可以", "可以的", "可以啊", "行", "行吧", "行啊", "没问题",
    "是", "是的", "对", "对的", "没错", "要", "要的", "需要", "知道了", "收到", "不用", "不用了",
    "不需要", "不需要了", "不要", "不要了", "没兴趣", "不感兴趣", "没有", "没", "不是", "不对", "不行",
    "不可以", "算了", "不了", "谢谢不用了",
    "yes", "yeah", "yep", "sure", "ok", "okay", "fine", "right", "correct", "of course", "no", "nope",
    "no thanks", "no thank you", "not interested", "not really",
}  # fmt: skip
_LEAD = re.compile(r"^(?:[嗯恩啊哦噢呃喂哎唉]|um|uh|well|oh)+\s*")
_TRAIL = re.compile(r"(?:[啊呀吧哈嘛呢啦的了])+$")


def is_complete_reply(text: str) -> bool:
    """True when `text` is a whole short closed answer (好的, 不用了, 可以可以, yes, no thanks): a
    streaming recogniser's partial like this, followed by a pause, needs no more end-of-turn silence.
    Anything longer or open (好的但是, 多少钱) waits for the normal endpoint."""
    t = _PUNCT.sub(" ", text.lower()).strip()
    if not t:
        return False
    if re.search(r"[\u4e00-\u9fff]", t):
        t = t.replace(" ", "")
        t = _LEAD.sub("", t)
        if not t:
            return False
        if t in _CLOSED:
            return True
        core = _TRAIL.sub("", t)
        if core in _CLOSED:
            return True
        # 可以可以 / 不用不用不用: one closed answer said again
        return any(
            len(t) % len(w) == 0 and t == w * (len(t) // len(w)) and len(t) // len(w) <= 3
            for w in _CLOSED
            if len(w) <= len(t)
        )
    t = _LEAD.sub("", t).strip()
    return t in _CLOSED
