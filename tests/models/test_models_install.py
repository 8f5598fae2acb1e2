from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.errors import ModelError
from models import install as inst
from models.paths import read_manifest, vosk_test_model_dir


def test_unknown_component_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="unknown model component"):
        inst.install(tmp_path, ["whisper", "tacotron"])


def test_missing_package_names_the_make_target() -> None:
    with pytest.raises(ModelError) as err:
        inst._package_data("no_such_model_package_xyz", "no-such-model-package")
    msg = str(err.value)
    assert "no-such-model-package" in msg
    assert "make models" in msg
    assert "[speech]" in msg


def test_cli_reports_errors_with_exit_code_2(tmp_path: Path) -> None:
    assert inst.main(["--dest", str(tmp_path), "--only", "bogus"]) == 2


@pytest.mark.slow
def test_install_is_idempotent_and_writes_a_manifest(models_dest: Path) -> None:
    manifest = read_manifest(models_dest)
    whisper_dir = Path(manifest["whisper"]["dir"])
    model = whisper_dir / "model.bin"
    for name in ("model.bin", "config.json", "tokenizer.json", "vocabulary.json"):
        assert (whisper_dir / name).is_file()
    assert manifest["whisper"]["files"]["model.bin"] == inst.sha256_file(model)

    kokoro = manifest["kokoro"]
    assert Path(kokoro["model"]).is_file()
    assert inst.sha256_file(Path(kokoro["model"])) == kokoro["model_sha256"]
    for voice in ("zm_yunjian", "zm_yunxi", "zf_xiaobei", "af_heart"):
        assert voice in kokoro["voices"]
        assert (Path(kokoro["voices_dir"]) / f"{voice}.bin").stat().st_size % 1024 == 0

    ko = vosk_test_model_dir(models_dest)
    assert ko is not None and (ko / "am" / "final.mdl").is_file()

    # a second run re-uses everything: the big files are not rewritten
    mtime = model.stat().st_mtime_ns
    kmtime = Path(kokoro["model"]).stat().st_mtime_ns
    again = inst.install(models_dest)
    assert model.stat().st_mtime_ns == mtime
    assert Path(kokoro["model"]).stat().st_mtime_ns == kmtime
    assert again["whisper"]["files"] == manifest["whisper"]["files"]
    assert json.loads((models_dest / "manifest.json").read_text())["version"] == 1


@pytest.mark.slow
def test_install_only_whisper_into_a_fresh_dest(tmp_path: Path) -> None:
    manifest = inst.install(tmp_path, ["whisper"])
    assert set(manifest) == {"version", "whisper"}
    assert (tmp_path / "whisper-base" / "model.bin").stat().st_size > 100_000_000
