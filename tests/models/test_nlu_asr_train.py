"""The real-channel training transcripts (models/nlu/data/asr_train.jsonl) stay apart from the eval sets:
only training texts, other Mandarin voices than the eval's, labels as in the corpus."""

from __future__ import annotations

from collections import Counter

from models.nlu.asr_eval import VOICES
from models.nlu.asr_train import OUT_FILE, TRAIN_VOICES_ZH, choose, load_asr_train, snr_for, voice_for
from models.nlu.corpus import load_corpus, load_heldout, load_splits


def test_no_held_out_text_and_no_eval_voice_in_the_training_transcripts() -> None:
    rows = load_asr_train()
    assert rows, f"{OUT_FILE} is missing or empty: python -m models.nlu.asr_train"
    held = {(e.lang, e.text) for e in load_heldout()}
    assert not [r["text"] for r in rows if (r["lang"], r["text"]) in held]
    zh_voices = {r["voice"] for r in rows if r["lang"] == "zh"}
    assert VOICES["zh"] not in zh_voices and zh_voices <= set(TRAIN_VOICES_ZH)
    assert len(zh_voices) >= 5  # rotated, not one voice


def test_rows_carry_the_corpus_labels() -> None:
    labels = {(e.lang, e.text): (e.intent, e.emotion) for e in load_corpus()}
    rows = load_asr_train()
    wrong = [r for r in rows if labels.get((r["lang"], r["text"])) != (r["intent"], r["emotion"])]
    # a corpus edit after the file was built leaves stale rows: rebuild it (python -m models.nlu.asr_train)
    assert len(wrong) <= len(rows) // 50, wrong[:5]
    empty = sum(1 for r in rows if not r["asr"].strip())
    assert empty <= len(rows) // 10


def test_sample_is_stratified_stable_and_noise_in_range() -> None:
    train, _ = load_splits()
    a, b = choose(train, 5, 2), choose(list(reversed(train)), 5, 2)
    assert [e.text for e in a] == [e.text for e in b]  # independent of the corpus order
    per = Counter((e.lang, e.intent) for e in a)
    assert max(n for (lang, _), n in per.items() if lang == "zh") <= 5
    assert max(n for (lang, _), n in per.items() if lang == "en") <= 2
    for e in a:
        assert 10.0 <= snr_for(e) <= 20.0
        assert voice_for(e) in ((*TRAIN_VOICES_ZH,) if e.lang == "zh" else ("af_heart",))
