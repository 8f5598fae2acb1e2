"""`outcall models train|eval` and `outcall nlu classify`: the NLU model's command line.

`add_parsers(sub)` registers both sub-commands on outcall.cli's subparsers.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

#: Longest stdin line classified; longer lines get a per-line error (and are skipped without buffering).
MAX_LINE_BYTES = 10_000
STDIN_BATCH = 32


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _models_dir(args: argparse.Namespace) -> Path:
    if getattr(args, "models_dir", None):
        return Path(args.models_dir)
    from outcall.settings import load_settings

    return Path(load_settings().models_dir)


def _base_dir(args: argparse.Namespace) -> Path:
    from models.nlu.classifier import nlu_base_dir

    return nlu_base_dir(_models_dir(args))


def _weights_dir(args: argparse.Namespace) -> Path:
    from models.nlu.classifier import WEIGHTS_DIR

    return Path(args.weights) if getattr(args, "weights", None) else WEIGHTS_DIR


# --- models train / eval ---------------------------------------------------------------------------


def cmd_models_train(args: argparse.Namespace) -> int:
    from models.nlu.encoder import check_base_dir
    from models.nlu.train import train

    base = _base_dir(args)
    check_base_dir(base)
    card = train(
        base, _weights_dir(args), epochs=args.epochs, threads=args.threads, progress=lambda m: _out(m)
    )
    _out(json.dumps(card.get("metrics", {}), ensure_ascii=False, indent=2))
    return 0


def _table(m: dict[str, Any], title: str) -> list[str]:
    lines = [f"== {title}: macro-F1 {m['macro_f1']:.3f}  accuracy {m['accuracy']:.3f}  n={m['n']}"]
    if m.get("stop_calling_recall") is not None:
        lines.append(f"   stop_calling recall {m['stop_calling_recall']:.3f}")
    lines.append(f"   {'label':<16}{'P':>7}{'R':>7}{'F1':>7}{'n':>5}")
    for lab, s in m["per_label"].items():
        if s["support"] or s["precision"]:
            lines.append(
                f"   {lab:<16}{s['precision']:>7.3f}{s['recall']:>7.3f}{s['f1']:>7.3f}{s['support']:>5}"
            )
    labels = m["labels"]
    short = [lab[:5] for lab in labels]
    lines.append("   confusion (rows gold, cols predicted)")
    lines.append("   " + " " * 16 + "".join(f"{s:>6}" for s in short))
    for lab, row in zip(labels, m["confusion"], strict=True):
        lines.append(f"   {lab:<16}" + "".join(f"{v:>6}" if v else f"{'.':>6}" for v in row))
    return lines


def cmd_models_eval(args: argparse.Namespace) -> int:
    from models.nlu.classifier import TransformerClassifier
    from models.nlu.rules import RulesClassifier
    from models.nlu.train import evaluate_sets

    clf: Any
    if args.rules:
        rules = RulesClassifier()

        class _Sync:
            name = rules.name

            def classify_sync(self, texts: list[str], ctx: Any) -> list[Any]:
                return [rules.classify_one(t, ctx) for t in texts]

        clf = _Sync()
    else:
        clf = TransformerClassifier(_base_dir(args), _weights_dir(args), threads=args.threads)
    try:
        metrics = evaluate_sets(clf)
    finally:
        if hasattr(clf, "close"):
            clf.close()
    if args.json:
        _out(json.dumps(metrics, ensure_ascii=False, indent=2))
        return 0
    for set_name, by_lang in metrics.items():
        for lang, m in by_lang.items():
            for line in _table(m, f"{set_name} {lang} ({clf.name})"):
                _out(line)
            if args.errors:
                for e in m["errors"]:
                    _out(f"   ! {e['gold']:<15} -> {e['pred']:<15} {e['conf']:.2f}  {e['text']}")
            _out("")
    return 0


# --- nlu classify ----------------------------------------------------------------------------------


def read_lines(stream: IO[bytes], limit: int = MAX_LINE_BYTES) -> Iterator[tuple[str | None, str | None]]:
    """(text, None) per line, or (None, error) for a line that is too long or not text. Never buffers
    more than `limit` bytes of one line."""
    while True:
        chunk = stream.readline(limit + 1)
        if not chunk:
            return
        if len(chunk) > limit and not chunk.endswith(b"\n"):
            size = len(chunk)
            while chunk and not chunk.endswith(b"\n"):
                chunk = stream.readline(1 << 16)
                size += len(chunk)
            yield None, f"line too long ({size} bytes > {limit}); split it into utterances"
            continue
        raw = chunk.rstrip(b"\r\n")
        if b"\x00" in raw:
            yield None, "binary line (NUL byte); expected UTF-8 text"
            continue
        text = raw.decode("utf-8", errors="replace")
        if text and text.count("\ufffd") > max(2, len(text) // 4):
            yield None, "not UTF-8 text"
            continue
        yield text, None


def _emit(text: str, pred: Any, as_json: bool) -> None:
    if as_json:
        _out(
            json.dumps(
                {
                    "text": text,
                    "intent": pred.intent,
                    "confidence": round(float(pred.confidence), 3),
                    "emotion": pred.emotion,
                    "emotion_confidence": round(float(pred.emotion_confidence), 3),
                },
                ensure_ascii=False,
            )
        )
    else:
        _out(f"{pred.intent}\t{pred.confidence:.2f}\t{pred.emotion}\t{text}")


def _emit_error(text: str | None, error: str, as_json: bool) -> None:
    if as_json:
        _out(json.dumps({"text": text, "error": error}, ensure_ascii=False))
    else:
        _out(f"error\t{error}")


def cmd_nlu_classify(args: argparse.Namespace) -> int:
    from engine.ports import ClassifyContext

    ctx = ClassifyContext()
    if args.dialplan:
        import dialplans

        plan = dialplans.get(args.dialplan)
        ctx = ClassifyContext(
            language=plan.language, extra_intents={k: v.examples for k, v in plan.intents.items()}
        )
    if args.expects:
        ctx = ctx.model_copy(update={"expects": args.expects})
    clf: Any
    if args.rules:
        from models.nlu.rules import RulesClassifier

        rules = RulesClassifier()

        class _Sync:
            def classify_sync(self, texts: list[str], c: ClassifyContext) -> list[Any]:
                return [rules.classify_one(t, c) for t in texts]

            def close(self) -> None:
                pass

        clf = _Sync()
    else:
        from models.nlu.classifier import TransformerClassifier

        clf = TransformerClassifier(_base_dir(args), _weights_dir(args), threads=args.threads)

    def run(batch: list[tuple[str | None, str | None]]) -> None:
        texts = [t for t, err in batch if err is None and t is not None]
        fail = ""
        try:
            preds = iter(clf.classify_sync(texts, ctx)) if texts else iter([])
        except Exception as exc:  # one bad batch must not end the stream: fall back line by line
            preds = None
            fail = str(exc)
        for text, err in batch:
            if err is not None or text is None:
                _emit_error(text, err or "unreadable line", args.json)
            elif preds is None:
                try:
                    _emit(text, clf.classify_sync([text], ctx)[0], args.json)
                except Exception as exc:
                    _emit_error(text, f"classifier failed: {exc or fail}", args.json)
            else:
                _emit(text, next(preds), args.json)

    try:
        if args.text:
            run([(t, None) for t in args.text])
        else:
            batch: list[tuple[str | None, str | None]] = []
            for item in read_lines(sys.stdin.buffer):
                batch.append(item)
                if len(batch) >= STDIN_BATCH:
                    run(batch)
                    batch = []
            if batch:
                run(batch)
    finally:
        clf.close()
    return 0


def add_parsers(sub: Any) -> None:
    """Register `models` and `nlu` on outcall.cli's subparsers."""
    m = sub.add_parser("models", help="train and evaluate the NLU model")
    ms = m.add_subparsers(dest="mcmd", required=True)
    tr = ms.add_parser("train", help="fine-tune the intent/emotion model on the base corpus (CPU, minutes)")
    tr.add_argument("--epochs", type=int, default=10)
    tr.add_argument("--threads", type=int, default=2)
    tr.add_argument("--weights", default=None, help="output folder (default models/nlu/weights)")
    tr.add_argument("--models-dir", default=None, help="where `make models` put nlu-base")
    tr.set_defaults(fn=cmd_models_train)
    ev = ms.add_parser("eval", help="per-label P/R/F1 + confusion matrix on held-out and through-ASR sets")
    ev.add_argument("--json", action="store_true")
    ev.add_argument("--errors", action="store_true", help="list misclassified examples")
    ev.add_argument("--rules", action="store_true", help="evaluate the rules classifier instead")
    ev.add_argument("--threads", type=int, default=2)
    ev.add_argument("--weights", default=None)
    ev.add_argument("--models-dir", default=None)
    ev.set_defaults(fn=cmd_models_eval)

    n = sub.add_parser("nlu", help="intent/emotion classifier tools")
    ns = n.add_subparsers(dest="ncmd", required=True)
    c = ns.add_parser("classify", help="classify utterances (arguments, or one per stdin line)")
    c.add_argument("text", nargs="*")
    c.add_argument("--dialplan", default=None, help="use this dialplan's language and extra intents")
    c.add_argument("--expects", choices=["yes_no", "open"], default=None, help="the question type")
    c.add_argument("--json", action="store_true", help="one JSON object per input line, in order")
    c.add_argument("--rules", action="store_true", help="use the rules classifier (no model)")
    c.add_argument("--threads", type=int, default=1)
    c.add_argument("--weights", default=None)
    c.add_argument("--models-dir", default=None)
    c.set_defaults(fn=cmd_nlu_classify)
