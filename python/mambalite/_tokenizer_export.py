"""Embedding a checkpoint's tokenizer in GGUF metadata, with llama.cpp's keys.

- tokenizer.json (byte-level BPE): `tokenizer.ggml.model = "gpt2"` with tokens, types and merges,
  plus the whole file under `tokenizer.huggingface.json`.
- tokenizer.model (or mistral's tokenizer.model.v3; SentencePiece): `tokenizer.ggml.model =
  "llama"` with tokens, scores and types, plus the model bytes under
  `mambalite.tokenizer.sentencepiece_model`.

The token list always has exactly one entry per embedding row: ids the tokenizer does not use
become `[PAD<i>]` tokens of type UNUSED, which are never sampled.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import gguf

from ._checkpoint import Checkpoint

SPM_MODEL_KEY = "mambalite.tokenizer.sentencepiece_model"


def _special_ids(ckpt: Checkpoint, lookup, own: dict[str, int] | None = None) -> dict[str, int]:
    """bos/eos/unk/pad ids. Priority, highest first: the token strings of tokenizer_config.json,
    the tokenizer's own ids (`own`, SentencePiece), generation_config.json, config.json."""
    found: dict[str, int] = {}
    for cfg in (ckpt.config, ckpt.read_json("generation_config.json")):
        for kind in ("bos", "eos", "unk", "pad"):
            v = cfg.get(f"{kind}_token_id")
            if isinstance(v, list) and v:
                v = v[0]
            if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
                found[kind] = v
    found.update(own or {})
    tok_cfg = ckpt.read_json("tokenizer_config.json")
    for kind in ("bos", "eos", "unk", "pad"):
        tok = tok_cfg.get(f"{kind}_token")
        if isinstance(tok, dict):
            tok = tok.get("content")
        if isinstance(tok, str):
            tid = lookup(tok)
            if tid is not None:
                found[kind] = tid
    return found


def _add_special(writer: gguf.GGUFWriter, ckpt: Checkpoint, ids: dict[str, int],
                 n_vocab: int) -> None:
    setters = {
        "bos": writer.add_bos_token_id,
        "eos": writer.add_eos_token_id,
        "unk": writer.add_unk_token_id,
        "pad": writer.add_pad_token_id,
    }
    for kind, tid in ids.items():
        if 0 <= tid < n_vocab:
            setters[kind](tid)
    tok_cfg = ckpt.read_json("tokenizer_config.json")
    for kind, setter in (("bos", writer.add_add_bos_token), ("eos", writer.add_add_eos_token)):
        v = tok_cfg.get(f"add_{kind}_token")
        if isinstance(v, bool):
            setter(v)


def _add_bpe(writer: gguf.GGUFWriter, ckpt: Checkpoint, n_vocab: int) -> None:
    raw = (ckpt.dir / "tokenizer.json").read_text(encoding="utf-8")
    try:
        tj: dict[str, Any] = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"{ckpt.dir / 'tokenizer.json'} is not valid JSON: {e}") from None
    writer.add_string("tokenizer.huggingface.json", raw)
    model = tj.get("model") or {}
    if model.get("type") != "BPE":
        print(f"mambalite export: tokenizer.json has a {model.get('type')} model, not BPE; it "
              "is embedded for mambalite only (llama.cpp will not see a vocabulary)",
              file=sys.stderr)
        writer.add_tokenizer_model("none")
        return
    vocab: dict[str, int] = dict(model.get("vocab") or {})
    added = {t["content"]: t for t in tj.get("added_tokens") or []}
    for content, t in added.items():
        vocab[content] = t["id"]
    size = max(vocab.values(), default=-1) + 1
    if size > n_vocab:
        raise ValueError(f"the tokenizer has ids up to {size - 1} but the model's embedding has "
                         f"only {n_vocab} rows")
    tokens = [f"[PAD{i}]" for i in range(n_vocab)]
    types = [gguf.TokenType.UNUSED] * n_vocab
    for tok, tid in vocab.items():
        tokens[tid] = tok
        types[tid] = gguf.TokenType.NORMAL
    for t in added.values():
        types[t["id"]] = gguf.TokenType.CONTROL if t.get("special") else \
            gguf.TokenType.USER_DEFINED
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]

    # llama.cpp picks its pre-tokenizer regex by name; GPT-NeoX's tokenizer (NFC + byte-level,
    # the one state-spaces models use) is "mpt" there, plain byte-level BPE is "gpt-2".
    normalizer = (tj.get("normalizer") or {}).get("type")
    pre = "mpt" if normalizer == "NFC" else "gpt-2"
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    if merges:
        writer.add_token_merges(merges)
    _add_special(writer, ckpt, _special_ids(ckpt, vocab.get), n_vocab)


def _spm_path(ckpt: Checkpoint) -> Path | None:
    """tokenizer.model, or mistral's versioned tokenizer.model.v3 (the newest one)."""
    if (ckpt.dir / "tokenizer.model").is_file():
        return ckpt.dir / "tokenizer.model"
    found = sorted(p for p in ckpt.dir.glob("tokenizer.model.v*") if p.is_file())
    return found[-1] if found else None


def _add_spm(writer: gguf.GGUFWriter, ckpt: Checkpoint, path: Path, n_vocab: int) -> None:
    import sentencepiece as spm

    data = path.read_bytes()
    sp = spm.SentencePieceProcessor()
    try:
        sp.LoadFromSerializedProto(data)
    except Exception as e:
        raise ValueError(f"{path} is not a SentencePiece model: {e}") from None
    size = sp.get_piece_size()
    if size > n_vocab:
        raise ValueError(f"the tokenizer has {size} pieces but the model's embedding has only "
                         f"{n_vocab} rows")
    tokens = [f"[PAD{i}]" for i in range(n_vocab)]
    scores = [-1000.0] * n_vocab
    types = [gguf.TokenType.UNUSED] * n_vocab
    for i in range(size):
        tokens[i] = sp.id_to_piece(i)
        scores[i] = sp.get_score(i)
        if sp.is_unknown(i):
            types[i] = gguf.TokenType.UNKNOWN
        elif sp.is_control(i):
            types[i] = gguf.TokenType.CONTROL
        elif sp.is_unused(i):
            types[i] = gguf.TokenType.UNUSED
        elif sp.is_byte(i):
            types[i] = gguf.TokenType.BYTE
        else:
            types[i] = gguf.TokenType.NORMAL
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_array(SPM_MODEL_KEY, data)
    own = {k: v for k, v in (("bos", sp.bos_id()), ("eos", sp.eos_id()), ("unk", sp.unk_id()),
                              ("pad", sp.pad_id())) if v >= 0}

    def lookup(piece: str) -> int | None:
        i = sp.piece_to_id(piece)
        return i if sp.id_to_piece(i) == piece else None

    _add_special(writer, ckpt, _special_ids(ckpt, lookup, own), n_vocab)


def chat_template(ckpt: Checkpoint) -> str | list | None:
    """The checkpoint's chat template: chat_template.jinja, else tokenizer_config.json's
    `chat_template` (a string, or a list of named templates), as llama.cpp's converter reads it."""
    jinja = ckpt.dir / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    return ckpt.read_json("tokenizer_config.json").get("chat_template") or None


def add_tokenizer(writer: gguf.GGUFWriter, ckpt: Checkpoint, n_vocab: int) -> bool:
    """Adds the checkpoint's tokenizer (and its chat template, as tokenizer.chat_template) to
    `writer`; returns False when it has none."""
    template = chat_template(ckpt)
    if template is not None:
        writer.add_chat_template(template)
    if (ckpt.dir / "tokenizer.json").is_file():
        _add_bpe(writer, ckpt, n_vocab)
        return True
    spm_path = _spm_path(ckpt)
    if spm_path is not None:
        _add_spm(writer, ckpt, spm_path, n_vocab)
        return True
    return False
