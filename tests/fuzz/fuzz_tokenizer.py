"""Fuzz target (atheris) for the tokenizer of a GGUF file: `Tokenizer(metadata)` built from what
a crafted file can hold, then encode, decode, token_texts and unsampleable_ids on it.

The input drives edits of a valid base (tests/fuzz/corpus/tokenizer/*.gguf, read once by
mambalite.load): which base, which tokenizer source survives (the embedded tokenizer.json or
SentencePiece model, or only the tokenizer.ggml.* keys to rebuild from), byte edits of the
embedded blobs, and edits of the keys (tokens, types, scores, merges and special ids changed,
dropped, truncated, or given a value of another GGUF type). Any exception but ValueError (the
engine's answer to a bad file) or MemoryError is a finding, as is a crash or a hang.

    python tests/fuzz/fuzz_tokenizer.py -atheris_runs=1000000 CORPUS_DIR   # CORPUS_DIR may be new
    python tests/fuzz/fuzz_tokenizer.py -max_total_time=60                 # as CI does
    python tests/fuzz/fuzz_tokenizer.py tests/fuzz/regressions/tokenizer/* # replay inputs
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import atheris
import numpy as np

with atheris.instrument_imports():
    import mambalite
    from mambalite.tokenizer import Tokenizer

HERE = Path(__file__).resolve().parent
BASES = [dict(mambalite.load(p, threads=1).metadata)
         for p in sorted((HERE / "corpus" / "tokenizer").glob("*.gguf"))]
KEYS = ["tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens",
        "tokenizer.ggml.token_type", "tokenizer.ggml.scores", "tokenizer.ggml.merges",
        "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.padding_token_id", "tokenizer.ggml.unknown_token_id",
        "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id",
        "tokenizer.ggml.add_bos_token", "tokenizer.huggingface.json",
        "mambalite.tokenizer.sentencepiece_model"]
LISTS = KEYS[2:6]


def any_value(fdp: atheris.FuzzedDataProvider) -> Any:
    """A value of one of the types a GGUF key can hold, as the reader hands them over."""
    kind = fdp.ConsumeIntInRange(0, 7)
    n = fdp.ConsumeIntInRange(0, 8)
    if kind == 0:
        return fdp.ConsumeIntInRange(-(2**63), 2**64 - 1)
    if kind == 1:
        return fdp.ConsumeRegularFloat() if fdp.ConsumeBool() else fdp.ConsumeFloat()
    if kind == 2:
        return fdp.ConsumeUnicodeNoSurrogates(16)
    if kind == 3:
        return fdp.ConsumeBool()
    if kind == 4:
        return [fdp.ConsumeUnicodeNoSurrogates(6) for _ in range(n)]
    if kind == 5:
        return np.array([fdp.ConsumeIntInRange(-(2**31), 2**31 - 1) for _ in range(n)],
                        dtype=np.int32)
    if kind == 6:
        return np.array([fdp.ConsumeFloat() for _ in range(n)], dtype=np.float64)
    return [[fdp.ConsumeUnicodeNoSurrogates(4)] for _ in range(n)]  # an array of arrays


def edit_list(md: dict[str, Any], key: str, fdp: atheris.FuzzedDataProvider) -> None:
    v = md.get(key)
    if v is None or isinstance(v, str) or not hasattr(v, "__len__") or len(v) == 0:
        return
    v = list(v) if isinstance(v, list) else v.copy()
    i = fdp.ConsumeIntInRange(0, len(v) - 1)
    op = fdp.ConsumeIntInRange(0, 3)
    if op == 0:  # truncate
        v = v[:i]
    elif op == 1 and isinstance(v, list):  # a new string
        v[i] = fdp.ConsumeUnicodeNoSurrogates(8)
    elif op == 1:  # a new number (types, scores)
        with np.errstate(over="ignore"):  # an infinite score is a fine input
            v[i] = fdp.ConsumeFloat() if v.dtype.kind == "f" else fdp.ConsumeIntInRange(-3, 12)
    elif op == 2 and isinstance(v, list):  # a duplicate of another entry
        v[i] = v[fdp.ConsumeIntInRange(0, len(v) - 1)]
    elif op == 3 and isinstance(v, list):  # removed, shifting the rest
        del v[i]
    md[key] = v


def edit_blob(md: dict[str, Any], key: str, fdp: atheris.FuzzedDataProvider) -> None:
    v = md.get(key)
    if v is None:
        return
    raw = bytearray(v.encode("utf-8", "surrogatepass") if isinstance(v, str)
                    else np.asarray(v, dtype=np.uint8).tobytes())
    for _ in range(fdp.ConsumeIntInRange(0, 4)):
        if not raw:
            break
        i = fdp.ConsumeIntInRange(0, len(raw) - 1)
        op = fdp.ConsumeIntInRange(0, 2)
        if op == 0:
            raw[i] = fdp.ConsumeIntInRange(0, 255)
        elif op == 1:
            del raw[i:i + fdp.ConsumeIntInRange(1, 64)]
        else:
            raw[i:i] = fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 16))
    md[key] = raw.decode("utf-8", "replace") if isinstance(v, str) else \
        np.frombuffer(bytes(raw), dtype=np.uint8)


def metadata(fdp: atheris.FuzzedDataProvider) -> dict[str, Any]:
    md = dict(BASES[fdp.ConsumeIntInRange(0, len(BASES) - 1)])
    source = fdp.ConsumeIntInRange(0, 2)  # 0: blobs kept, 1: blobs dropped, 2: blobs edited
    for key in KEYS[-2:]:
        if source == 1:
            md.pop(key, None)
        elif source == 2:
            edit_blob(md, key, fdp)
    for _ in range(fdp.ConsumeIntInRange(0, 6)):
        key = KEYS[fdp.ConsumeIntInRange(0, len(KEYS) - 1)]
        op = fdp.ConsumeIntInRange(0, 3)
        if op == 0:
            md.pop(key, None)
        elif op == 1:
            md[key] = any_value(fdp)
        elif key in LISTS:
            edit_list(md, key, fdp)
        elif key.endswith("_id"):
            md[key] = fdp.ConsumeIntInRange(-2, 1000)
        elif key == "tokenizer.ggml.model":
            md[key] = ["gpt2", "llama", "bert", ""][fdp.ConsumeIntInRange(0, 3)]
        else:
            md[key] = ["mpt", "default", "gpt-2"][fdp.ConsumeIntInRange(0, 2)]
    return md


def test_one(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    md = metadata(fdp)
    try:
        tok = Tokenizer(md)
    except (ValueError, MemoryError):
        return
    text = fdp.ConsumeUnicodeNoSurrogates(64)
    ids = tok.encode(text, special=fdp.ConsumeBool())
    assert all(isinstance(i, int) for i in ids)
    n = fdp.ConsumeIntInRange(0, 8)
    extra = [fdp.ConsumeIntInRange(-(2**33), 2**33) for _ in range(n)]
    assert isinstance(tok.decode(ids + extra, skip_special_tokens=fdp.ConsumeBool()), str)
    texts = tok.token_texts()
    assert len(texts) == tok.vocab_size
    tok.unsampleable_ids(fdp.ConsumeIntInRange(0, 2 * tok.vocab_size + 8))
    _ = tok.end_ids, tok.token_text(fdp.ConsumeIntInRange(-5, tok.vocab_size + 5))


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one)
    atheris.Fuzz()
