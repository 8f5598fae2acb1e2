"""Fixtures for the model adapter tests: models assembled once per session under var/models."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from models.asr.whisper import WhisperRecognizer
from models.install import install
from models.tts.kokoro import KokoroSynthesizer

REPO = Path(__file__).resolve().parents[2]
DEST = REPO / "var" / "models"


@pytest.fixture(scope="session")
def models_dest() -> Path:
    """Assemble (idempotently) whisper + kokoro + vosk-ko into var/models; fast when already done."""
    install(DEST)
    return DEST


@pytest.fixture(scope="session")
def whisper(models_dest: Path) -> Iterator[WhisperRecognizer]:
    rec = WhisperRecognizer(models_dest / "whisper-base", cpu_threads=2)
    yield rec
    rec.close()


@pytest.fixture(scope="session")
def kokoro(models_dest: Path) -> Iterator[KokoroSynthesizer]:
    synth = KokoroSynthesizer(models_dest / "kokoro", threads=2)
    synth.warm(("zh", "en"))
    yield synth
    synth.close()


def edit_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def char_error_rate(hyp: str, ref: str) -> float:
    """Character error rate after dropping punctuation, spaces and case."""

    def clean(s: str) -> str:
        return re.sub(r"[\W_]+", "", s.lower())

    h, r = clean(hyp), clean(ref)
    return edit_distance(h, r) / max(1, len(r))


CER = Callable[[str, str], float]


@pytest.fixture
def cer() -> CER:
    return char_error_rate
