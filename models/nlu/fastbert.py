"""Inference-only BERT encoder in plain torch, loading the same files as transformers' BertModel.

Training uses transformers.BertModel (models.nlu.encoder.build_net). Serving does not import
transformers (+110 MB resident) nor materialise the fp32 word-embedding table: the base safetensors are
read tensor by tensor, the LoRA adapter is merged into its projections, the embedding table is quantised
to int8 in row chunks, and the Linear layers are quantised to int8 (torch dynamic quantisation).
tests/models/test_nlu_transformer.py checks that the outputs match BertModel's.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.nlu.encoder import Int8Embedding

_CHUNK_ROWS = 8192
_LORA_MAP = {
    "attention.self.query": "q",
    "attention.self.key": "k",
    "attention.self.value": "v",
    "attention.output.dense": "ao",
    "intermediate.dense": "fi",
    "output.dense": "fo",
}


class _Layer(nn.Module):
    def __init__(self, hidden: int, heads: int, ffn: int, eps: float) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(hidden, hidden)
        self.k = nn.Linear(hidden, hidden)
        self.v = nn.Linear(hidden, hidden)
        self.ao = nn.Linear(hidden, hidden)
        self.aln = nn.LayerNorm(hidden, eps=eps)
        self.fi = nn.Linear(hidden, ffn)
        self.fo = nn.Linear(ffn, hidden)
        self.oln = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, t, h = x.shape
        hd = h // self.heads

        def split(y: torch.Tensor) -> torch.Tensor:
            return y.view(b, t, self.heads, hd).transpose(1, 2)

        ctx = F.scaled_dot_product_attention(
            split(self.q(x)), split(self.k(x)), split(self.v(x)), attn_mask=bias
        )
        x = self.aln(x + self.ao(ctx.transpose(1, 2).reshape(b, t, h)))
        out: torch.Tensor = self.oln(x + self.fo(F.gelu(self.fi(x))))
        return out


class FastBert(nn.Module):
    """BertModel's encoder forward (absolute positions from 0, token type 0, exact GELU)."""

    def __init__(self, cfg: dict[str, Any], word: nn.Module) -> None:
        super().__init__()
        h, eps = int(cfg["hidden_size"]), float(cfg.get("layer_norm_eps", 1e-12))
        self.word = word
        self.pos = nn.Embedding(int(cfg["max_position_embeddings"]), h)
        self.ttype = nn.Embedding(int(cfg.get("type_vocab_size", 1)), h)
        self.eln = nn.LayerNorm(h, eps=eps)
        self.layers = nn.ModuleList(
            _Layer(h, int(cfg["num_attention_heads"]), int(cfg["intermediate_size"]), eps)
            for _ in range(int(cfg["num_hidden_layers"]))
        )

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        t = input_ids.shape[1]
        pos = torch.arange(t, device=input_ids.device)
        x: torch.Tensor = self.eln(self.word(input_ids) + self.pos(pos)[None] + self.ttype.weight[0])
        bias = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
        for layer in self.layers:
            x = layer(x, bias)
        return x


class FastIntentNet(nn.Module):
    """FastBert + mean pooling + heads: the same outputs as encoder.IntentNet in eval mode."""

    def __init__(self, encoder: FastBert, hidden: int, n_intents: int, n_emotions: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.intent_head = nn.Linear(hidden, n_intents)
        self.emotion_head = nn.Linear(hidden, n_emotions)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        hidden = self.encoder(input_ids, attention_mask)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.intent_head(pooled), self.emotion_head(pooled), pooled


def load_fast_net(
    base_dir: Path, adapter: dict[str, torch.Tensor], card: dict[str, Any], *, quantize: bool = True
) -> FastIntentNet:
    """Build the serving network from the base folder and the trained adapter state dict."""
    from safetensors import safe_open

    cfg = json.loads((base_dir / "config.json").read_text(encoding="utf-8"))
    lora = card.get("lora", {})
    scale = float(lora.get("alpha", 16)) / float(lora.get("rank", 8))
    with safe_open(str(base_dir / "model.safetensors"), framework="pt") as f:
        wname = "embeddings.word_embeddings.weight"
        sl = f.get_slice(wname)
        rows, dim = sl.get_shape()
        q = torch.empty((rows, dim), dtype=torch.int8)
        s = torch.empty((rows, 1), dtype=torch.float32)
        for r0 in range(0, rows, _CHUNK_ROWS):
            chunk = sl[r0 : r0 + _CHUNK_ROWS]
            cs = chunk.abs().amax(dim=1, keepdim=True).clamp(min=1e-8) / 127.0
            q[r0 : r0 + len(chunk)] = torch.round(chunk / cs).to(torch.int8)
            s[r0 : r0 + len(chunk)] = cs
        word = Int8Embedding.from_quantized(q, s, int(cfg.get("pad_token_id", 1)))
        enc = FastBert(cfg, word)
        with torch.no_grad():
            enc.pos.weight.copy_(f.get_tensor("embeddings.position_embeddings.weight"))
            enc.ttype.weight.copy_(f.get_tensor("embeddings.token_type_embeddings.weight"))
            enc.eln.weight.copy_(f.get_tensor("embeddings.LayerNorm.weight"))
            enc.eln.bias.copy_(f.get_tensor("embeddings.LayerNorm.bias"))
            for li, layer in enumerate(enc.layers):
                assert isinstance(layer, _Layer)
                pre = f"encoder.layer.{li}."
                for long, short in _LORA_MAP.items():
                    lin: nn.Linear = getattr(layer, short)
                    w = f.get_tensor(f"{pre}{long}.weight")
                    a = adapter.get(f"encoder.{pre}{long}.lora_a")
                    b = adapter.get(f"encoder.{pre}{long}.lora_b")
                    if a is not None and b is not None:
                        w = w + (b @ a) * scale
                    lin.weight.copy_(w)
                    lin.bias.copy_(f.get_tensor(f"{pre}{long}.bias"))
                for long, short in (("attention.output.LayerNorm", "aln"), ("output.LayerNorm", "oln")):
                    ln: nn.LayerNorm = getattr(layer, short)
                    ln.weight.copy_(f.get_tensor(f"{pre}{long}.weight"))
                    ln.bias.copy_(f.get_tensor(f"{pre}{long}.bias"))
    hidden = int(cfg["hidden_size"])
    net = FastIntentNet(enc, hidden, len(card["intents"]), len(card["emotions"]))
    with torch.no_grad():
        for head in ("intent_head", "emotion_head"):
            lin = getattr(net, head)
            lin.weight.copy_(adapter[f"{head}.weight"])
            lin.bias.copy_(adapter[f"{head}.bias"])
    net.eval()
    if quantize:
        quantize_dynamic: Any = torch.ao.quantization.quantize_dynamic
        with warnings.catch_warnings():  # deprecated in favour of torchao, which is not installed here
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            net = quantize_dynamic(net, {nn.Linear}, dtype=torch.qint8)
    return net
