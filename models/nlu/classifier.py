"""TransformerClassifier: engine.ports.Classifier on the fine-tuned e5-small, with the rules as a safety net.

Decision for one reply (text normalised as in models.nlu.rules):
  1. the rules' stop_calling / complaint keywords win (never missed; by characters or, for ASR-garbled
     Chinese, by sound: models.nlu.phonetic), and so does the model when it says complaint with p >= 0.6
     or stop_calling with p >= stop_threshold (0.85; a less sure stop_calling share is dropped);
  2. dialplan-declared extra intents (ClassifyContext.extra_intents: name -> examples), without
     retraining: an example's keywords in the reply, or the nearest neighbour on the base encoder's
     sentence embeddings (e5 as trained for similarity, without the adapter: loaded on first use) when it
     is close (cosine >= nn_threshold) and not clearly farther (nn_margin) than the nearest training
     example of a base intent (not farther at all when that example is `other`);
  3. the model's intent head, mixed with the vote of the k nearest training examples (knn_weight) and
     the rules' keyword answer (rules_weight), nudged by the context (a yes/no question favours
     affirm/deny, an open one disfavours them); a double negation the rules see (不是不需要,
     也不是不行) turns deny/not_interested into affirm;
  4. below `threshold` the rules' answer when they have one, else `other` (-> no_match).
Emotion: the emotion head, moved by snownlp's sentiment model (models.nlu.polarity) for Chinese, and the
rules' anger keywords.

Inference runs in one worker thread (never on the event loop); classify() batches all texts of a call.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from engine.errors import ModelError
from engine.intents import Emotion, Intent
from engine.ports import ClassifyContext, Prediction
from models.nlu.encoder import TextEncoder, check_base_dir, check_weights_dir, load_inference_net
from models.nlu.polarity import SnowPolarity
from models.nlu.rules import RulesClassifier, detect_language, normalize_reply
from models.paths import models_dir

log = logging.getLogger(__name__)

WEIGHTS_DIR = Path(__file__).parent / "weights"
MAX_CHARS = 2000
BATCH = 32
SAFETY = frozenset({Intent.STOP_CALLING.value, Intent.COMPLAINT.value})
YES_NO = frozenset({Intent.AFFIRM.value, Intent.DENY.value})
NEGATIVE_ANSWERS = frozenset({Intent.DENY.value, Intent.NOT_INTERESTED.value})

Vectors = npt.NDArray[np.float32]
#: words without which a reply cannot be a do-not-call request (the model alone never ends a call on
#: a reply that refuses nothing)
_REFUSAL = re.compile(
    r"[别不没勿甭莫休滚]|拉黑|删|投诉|举报|报警|烦|再.{0,6}试试|"
    r"\b(?:don'?t|do not|stop|never|no|not|remove|quit|leave|unsubscribe|take me off)\b",
    re.IGNORECASE,
)
_FILLER_QUESTION = re.compile(r"^\s*(?:[嗯恩啊哈啥呃哦]{1,2}|什么|huh|what|eh)\s*[?？]+\s*$", re.IGNORECASE)


def _release_freed_memory() -> None:
    """Loading touches ~400 MB transiently (mmapped base weights, fp32 copies); give it back to the OS."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def nlu_base_dir(dest: Path | None = None) -> Path:
    return (dest or models_dir()) / "nlu-base"


class TransformerClassifier:
    """engine.ports.Classifier. Construction loads the model (a few seconds): do it once at start-up.

    Args:
        base_dir: the rebuilt e5 folder (default var/models/nlu-base, made by `make models`).
        weights_dir: the trained adapter + card (default models/nlu/weights, committed).
        threads: torch intra-op threads for inference.
        threshold: below this intent confidence the answer falls back to rules / `other`.
        nn_threshold: cosine similarity (base e5 space) an extra-intent example must reach.
        nn_margin: how much closer the nearest base-intent training example may be.
        prototypes: load the training-example embeddings used to arbitrate extra intents and for the kNN vote.
        knn_weight / knn_k: weight of the k-nearest-training-examples vote in the intent distribution.
        rules_weight: weight of the rules' keyword answer (a fixed prior, not tuned on the held-out set).
        stop_threshold: the model alone (no do-not-call phrase, by characters or by sound) must be this
            sure, and the reply must hold a refusal word (别, 不, 没, 勿, 甭, 拉黑, 删, don't, stop, no...),
            sure to end a call as stop_calling; below it that share counts for nothing (打九分 is a score).
    """

    name = "e5-lora"

    def __init__(
        self,
        base_dir: Path | str | None = None,
        weights_dir: Path | str | None = None,
        *,
        threads: int = 1,
        threshold: float = 0.45,
        nn_threshold: float = 0.92,
        nn_margin: float = 0.03,
        prototypes: bool = True,
        quantize: bool = True,
        knn_weight: float = 0.3,
        knn_k: int = 7,
        rules_weight: float = 0.3,
        stop_threshold: float = 0.85,
    ) -> None:
        from models.nlu.train import quiet_quantization_warnings

        self.base_dir = Path(base_dir) if base_dir is not None else nlu_base_dir()
        self.weights_dir = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
        check_weights_dir(self.weights_dir)
        check_base_dir(self.base_dir)
        self.threshold = threshold
        self.nn_threshold = nn_threshold
        self.nn_margin = nn_margin
        self.knn_weight = knn_weight
        self.knn_k = knn_k
        self.rules_weight = rules_weight
        self.stop_threshold = stop_threshold
        self.threads = max(1, threads)
        t0 = time.perf_counter()
        quiet_quantization_warnings()
        self._net, self.card = load_inference_net(self.base_dir, self.weights_dir, quantize=quantize)
        self.version = str(self.card.get("version", "0"))
        self.intents: list[str] = list(self.card["intents"])
        self.emotions: list[str] = list(self.card["emotions"])
        self._enc = TextEncoder(self.base_dir)
        self._rules = RulesClassifier()
        self._lock = threading.Lock()
        self._extra_cache: OrderedDict[tuple[tuple[str, tuple[str, ...]], ...], tuple[list[str], Vectors]] = (
            OrderedDict()
        )
        self._protos: Vectors | None = None
        self._base_protos: Vectors | None = None
        self._base_net: torch.nn.Module | None = None
        self._proto_ids: npt.NDArray[np.int64] | None = None
        if prototypes:
            self._load_prototypes()
        self._snow: SnowPolarity | None = None
        try:
            self._snow = SnowPolarity()
        except ModelError as exc:
            log.warning("NLU: no snownlp polarity (%s); emotion from the heads and rules only", exc)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nlu")
        _release_freed_memory()
        self.load_s = time.perf_counter() - t0

    def _load_prototypes(self) -> None:
        from safetensors.torch import load_file

        from models.nlu.train import PROTOTYPES_FILE

        path = self.weights_dir / PROTOTYPES_FILE
        if not path.is_file():
            return
        data = load_file(str(path))
        self._protos = data["vectors"].to(torch.float32).numpy()
        self._proto_ids = data["intent_ids"].to(torch.int64).numpy()
        if "base_vectors" in data:
            self._base_protos = data["base_vectors"].to(torch.float32).numpy()

    def _knn(self, vec: Vectors) -> Vectors | None:
        """Intent distribution of the k nearest training examples (softmax over cosine / 0.05)."""
        if self._protos is None or self._proto_ids is None or self.knn_weight <= 0:
            return None
        sims = self._protos @ vec
        k = min(self.knn_k, len(sims))
        top = np.argpartition(-sims, k - 1)[:k]
        w = np.exp((sims[top] - sims[top].max()) / 0.05)
        dist = np.zeros(len(self.intents), dtype=np.float32)
        np.add.at(dist, self._proto_ids[top], w)
        out: Vectors = dist / dist.sum()
        return out

    # --- model ---------------------------------------------------------------------------------------

    def _forward(self, texts: Sequence[str]) -> tuple[Vectors, Vectors, Vectors]:
        """(intent probs, emotion probs, L2-normalised sentence vectors) for texts, in chunks."""
        pi, pe, vv = [], [], []
        with self._lock, torch.inference_mode():
            torch.set_num_threads(self.threads)
            for i in range(0, len(texts), BATCH):
                ids, mask = self._enc.batch(texts[i : i + BATCH])
                li, le, pooled = self._net(ids, mask)
                pi.append(torch.softmax(li, -1).numpy())
                pe.append(torch.softmax(le, -1).numpy())
                vv.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
        return np.concatenate(pi), np.concatenate(pe), np.concatenate(vv)

    def embed_sync(self, texts: Sequence[str]) -> Vectors:
        """L2-normalised sentence embeddings (blocking)."""
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        return self._forward([t[:MAX_CHARS] for t in texts])[2]

    def base_embed_sync(self, texts: Sequence[str]) -> Vectors:
        """L2-normalised embeddings of the base e5 (no adapter), for nearest-neighbour intents (blocking)."""
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        with self._lock, torch.inference_mode():
            if self._base_net is None:
                from models.nlu.encoder import read_adapter
                from models.nlu.fastbert import load_fast_net

                state, card = read_adapter(self.weights_dir)
                heads = {k: v for k, v in state.items() if "lora_" not in k}
                self._base_net = load_fast_net(self.base_dir, heads, card)
                _release_freed_memory()
            torch.set_num_threads(self.threads)
            out = []
            for i in range(0, len(texts), BATCH):
                ids, mask = self._enc.batch([t[:MAX_CHARS] for t in texts[i : i + BATCH]])
                _li, _le, pooled = self._base_net(ids, mask)
                out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
        return np.concatenate(out)

    def _extra_vectors(self, extra: dict[str, list[str]]) -> tuple[list[str], Vectors] | None:
        items = tuple((k, tuple(v)) for k, v in sorted(extra.items()) if v)
        if not items:
            return None
        hit = self._extra_cache.get(items)
        if hit is not None:
            self._extra_cache.move_to_end(items)
            return hit
        names = [k for k, ex in items for _ in ex]
        vecs = self.base_embed_sync([e for _k, ex in items for e in ex])
        self._extra_cache[items] = (names, vecs)
        while len(self._extra_cache) > 32:
            self._extra_cache.popitem(last=False)
        return names, vecs

    def _polarity(self, text: str) -> float | None:
        if not text or self._snow is None:
            return None
        try:
            return self._snow.polarity(text)
        except Exception:  # polarity is a helper; never fail a turn over it
            log.debug("polarity failed on %r", text[:40], exc_info=True)
            return None

    # --- decision ------------------------------------------------------------------------------------

    def classify_sync(self, texts: Sequence[str], context: ClassifyContext | None = None) -> list[Prediction]:
        """Blocking batched classification (the worker runs this; use classify() from async code)."""
        ctx = context or ClassifyContext()
        clipped = [str(t)[:MAX_CHARS] for t in texts]
        if not clipped:
            return []
        normed = [normalize_reply(t) for t in clipped]
        idx = [i for i, t in enumerate(normed) if t]
        out: list[Prediction | None] = [None] * len(clipped)
        for i, t in enumerate(normed):
            if not t:
                out[i] = Prediction(intent=Intent.OTHER, confidence=0.3, source=self.name)
        if idx:
            p_int, p_emo, vecs = self._forward([clipped[i] for i in idx])
            extra = self._extra_vectors(ctx.extra_intents) if ctx.extra_intents else None
            bvecs = self.base_embed_sync([clipped[i] for i in idx]) if extra is not None else vecs
            for row, i in enumerate(idx):
                out[i] = self._decide(
                    clipped[i], normed[i], p_int[row], p_emo[row], vecs[row], bvecs[row], ctx, extra
                )
        return [p for p in out if p is not None]

    def classify_one(self, text: str, context: ClassifyContext | None = None) -> Prediction:
        """One reply, blocking (like RulesClassifier.classify_one; tools and tests, not the event loop)."""
        return self.classify_sync([text], context)[0]

    def _decide(
        self,
        text: str,
        normed: str,
        p_int: Vectors,
        p_emo: Vectors,
        vec: Vectors,
        bvec: Vectors,
        ctx: ClassifyContext,
        extra: tuple[list[str], Vectors] | None,
    ) -> Prediction:
        rules = self._rules.classify_one(text, ctx)
        lang = ctx.language[:2] if ctx.language else detect_language(normed)
        emotion, emo_conf = self._emotion(normed, lang, p_emo, rules)
        knn = self._knn(vec)
        if knn is not None:
            p_int = (1 - self.knn_weight) * p_int + self.knn_weight * knn
        probs = {name: float(p) for name, p in zip(self.intents, p_int, strict=True)}
        if rules.intent in probs and rules.intent != Intent.OTHER and self.rules_weight > 0:
            # a keyword the rules know is one more vote
            probs = {k: (1 - self.rules_weight) * v for k, v in probs.items()}
            probs[rules.intent] += self.rules_weight

        def pred(intent: str, conf: float, source: str) -> Prediction:
            return Prediction(
                intent=intent,
                confidence=round(min(1.0, max(0.0, conf)), 3),
                emotion=emotion,
                emotion_confidence=round(emo_conf, 3),
                source=source,
            )

        # 1. never miss a do-not-call request or a complaint
        if rules.intent in SAFETY:
            return pred(rules.intent, max(rules.confidence, probs.get(rules.intent, 0.0)), "rules")
        stop = Intent.STOP_CALLING.value
        if 0.0 < probs.get(stop, 0.0) < self.stop_threshold or not _REFUSAL.search(text):
            # an irreversible outcome needs the rules' evidence, or a very sure model on a reply that
            # refuses something (别/不要/don't/stop...): 过一会儿再打 garbled to 故意会而再打 is not one
            probs[stop] = 0.0
        model_safety = max(SAFETY, key=lambda k: probs.get(k, 0.0))
        if probs.get(model_safety, 0.0) >= 0.6:
            return pred(model_safety, probs[model_safety], self.name)
        # a bare filler asked as a question (嗯？ 啊？ huh?) asks for a repeat; normalisation drops the "?"
        if _FILLER_QUESTION.match(text):
            return pred(Intent.REPEAT, 0.8, "rules")
        # 2. dialplan intents: keywords, then nearest neighbour on embeddings
        if ctx.extra_intents:
            if rules.intent in ctx.extra_intents:
                return pred(rules.intent, rules.confidence, "rules")
            if extra is not None:
                names, evecs = extra
                sims = evecs @ bvec
                best = int(np.argmax(sims))
                sim = float(sims[best])
                protos = self._base_protos
                base_sim, margin = -1.0, self.nn_margin
                if protos is not None:
                    psims = protos @ bvec
                    j = int(np.argmax(psims))
                    base_sim = float(psims[j])
                    if self._proto_ids is not None and self.intents[int(self._proto_ids[j])] == Intent.OTHER:
                        # the closest known reply is small talk or a free-text answer (老师挺负责的):
                        # only a closer dialplan example overrides it
                        margin = 0.0
                if sim >= self.nn_threshold and sim >= base_sim - margin:
                    return pred(names[best], sim, f"{self.name}+nn")
        # 3. the model, nudged by the question type
        if ctx.expects in ("yes_no", "open"):
            factor = 1.3 if ctx.expects == "yes_no" else 0.8
            for k in YES_NO:
                probs[k] = probs.get(k, 0.0) * factor
            total = sum(probs.values())
            probs = {k: v / total for k, v in probs.items()}
        top = max(probs, key=lambda k: probs[k])
        conf = probs[top]
        if top in NEGATIVE_ANSWERS and rules.intent == Intent.AFFIRM and self._rules._double_neg(normed):
            return pred(Intent.AFFIRM, max(0.6, probs.get(Intent.AFFIRM, 0.0)), "rules")
        # 4. not sure: the rules if the model agrees a little, else other
        if conf < self.threshold:
            if rules.intent != Intent.OTHER:
                return pred(rules.intent, max(probs.get(rules.intent, 0.0), 0.5), f"{self.name}+rules")
            return pred(Intent.OTHER, conf, self.name)
        return pred(top, conf, self.name)

    def _emotion(self, normed: str, lang: str, p_emo: Vectors, rules: Prediction) -> tuple[str, float]:
        probs = {name: float(p) for name, p in zip(self.emotions, p_emo, strict=True)}
        if lang == "zh":
            pol = self._polarity(normed)
            if pol is not None:
                if pol >= 0.85:
                    probs[Emotion.POSITIVE] = probs.get(Emotion.POSITIVE, 0.0) + 0.1
                elif pol <= 0.15:
                    probs[Emotion.NEGATIVE] = probs.get(Emotion.NEGATIVE, 0.0) + 0.1
        if rules.emotion == Emotion.ANGRY:
            probs[Emotion.ANGRY] = max(probs.get(Emotion.ANGRY, 0.0), 0.9)
        total = sum(probs.values())
        best = max(probs, key=lambda k: probs[k])
        return best, probs[best] / total

    # --- port ----------------------------------------------------------------------------------------

    async def classify(
        self, texts: Sequence[str], context: ClassifyContext | None = None
    ) -> list[Prediction]:
        """Classify a batch in the worker thread; a failure raises ModelError (the call carries on)."""
        loop = asyncio.get_running_loop()
        items = list(texts)
        try:
            return await loop.run_in_executor(self._executor, lambda: self.classify_sync(items, context))
        except ModelError:
            raise
        except Exception as exc:
            log.exception("NLU failed on a batch of %d", len(items))
            raise ModelError(f"NLU classifier failed: {exc}") from exc

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
