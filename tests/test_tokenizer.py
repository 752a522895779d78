"""Tokenizers survive export -> GGUF -> load, and match the originals."""

from __future__ import annotations

import json

import gguf
import pytest

import mambalite
from mambalite.tokenizer import Tokenizer

from helpers import CORPUS, export, make_hf_model, save_checkpoint, train_spm
from test_errors import rewrite

SAMPLES = [
    "The capital of France is Paris.",
    "  leading and trailing spaces  ",
    "tabs\tand\nnewlines\n\n  mixed   runs",
    "digits 0123456789 and 3.14159e-10",
    "def f(x):\n    return x ** 2  # comment",
    "Ünïcödé: 東京 😀 🚀 Привет κόσμε",
    "<|endoftext|> special in the middle <|endoftext|>",
    "",
]


@pytest.fixture(scope="module")
def bpe_file(tmp_path_factory, bpe_tokenizer):
    hf = make_hf_model(seed=31, vocab_size=304, hidden_size=16, num_hidden_layers=1)
    d = save_checkpoint(hf, tmp_path_factory.mktemp("bpe"), bpe_tokenizer)
    return export(d, "f16")


def test_bpe_embedded(bpe_file, bpe_tokenizer):
    tok = mambalite.load(bpe_file).tokenizer
    assert tok.kind == "huggingface"
    assert tok.bos_id == tok.eos_id == bpe_tokenizer.token_to_id("<|endoftext|>")
    assert not tok.add_bos
    for text in SAMPLES:
        ids = bpe_tokenizer.encode(text, add_special_tokens=False).ids
        assert tok.encode(text) == ids
        assert tok.decode(ids, skip_special_tokens=False) == \
            bpe_tokenizer.decode(ids, skip_special_tokens=False)


def test_bpe_llama_cpp_keys(bpe_file, bpe_tokenizer):
    r = gguf.GGUFReader(bpe_file)
    f = r.fields
    assert f["tokenizer.ggml.model"].contents() == "gpt2"
    assert f["tokenizer.ggml.pre"].contents() == "mpt"  # NFC + byte-level: GPT-NeoX style
    tokens = f["tokenizer.ggml.tokens"].contents()
    types = f["tokenizer.ggml.token_type"].contents()
    assert len(tokens) == len(types) == 304  # one per embedding row
    assert tokens[300:] == ["[PAD300]", "[PAD301]", "[PAD302]", "[PAD303]"]
    assert set(types[300:]) == {gguf.TokenType.UNUSED}
    eot = bpe_tokenizer.token_to_id("<|endoftext|>")
    assert types[eot] == gguf.TokenType.CONTROL
    merges = f["tokenizer.ggml.merges"].contents()
    assert len(merges) == len(json.loads(bpe_tokenizer.to_str())["model"]["merges"])


def test_bpe_rebuilt_from_ggml_keys(bpe_file, bpe_tokenizer, tmp_path):
    """As for a file written by llama.cpp: only the tokenizer.ggml.* keys."""
    p = rewrite(bpe_file, tmp_path / "no-hf.gguf", drop_kv=("tokenizer.huggingface.json",))
    tok = mambalite.load(p).tokenizer
    assert tok.kind == "gpt2 (rebuilt)"
    for text in SAMPLES + CORPUS[:8]:
        ids = bpe_tokenizer.encode(text, add_special_tokens=False).ids
        assert tok.encode(text) == ids, text
        assert tok.decode(ids) == bpe_tokenizer.decode(ids)


@pytest.fixture(scope="module")
def spm_file(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("spm")
    sp = train_spm(tmp)
    hf = make_hf_model(seed=32, vocab_size=610, hidden_size=16, num_hidden_layers=1)
    d = save_checkpoint(hf, tmp / "ckpt")
    (d / "tokenizer.model").write_bytes((tmp / "sp.model").read_bytes())
    (d / "tokenizer_config.json").write_text(json.dumps({"add_bos_token": True}))
    return sp, export(d, "f32")


def test_spm_embedded(spm_file):
    sp, path = spm_file
    model = mambalite.load(path)
    tok = model.tokenizer
    assert tok.kind == "sentencepiece"
    assert (tok.bos_id, tok.eos_id, tok.unk_id) == (1, 2, 0)
    assert tok.add_bos
    for text in SAMPLES[:-1]:
        ids = sp.encode(text)
        assert tok.encode(text) == [1, *ids]
        assert tok.encode(text, add_bos=False) == ids
        assert tok.decode(ids) == sp.decode(ids)
    assert tok.unsampleable_ids(610) == list(range(600, 610))


def test_spm_special_tokens_written_as_text(spm_file, tmp_path):
    """Chat prompts write "<s>"/"</s>" as text: with special=True they read as their ids and each
    stretch between them is encoded on its own (llama.cpp's and transformers' legacy rule)."""
    sp, path = spm_file
    text = "<s>[INST] Hi there [/INST] Hello</s><s>[INST] 東京?"
    want = [1, *sp.encode("[INST] Hi there [/INST] Hello"), 2, 1, *sp.encode("[INST] 東京?")]
    rebuilt = rewrite(path, tmp_path / "no-spm.gguf",
                      drop_kv=("mambalite.tokenizer.sentencepiece_model",))
    for p in (path, rebuilt):
        tok = mambalite.load(p).tokenizer
        assert tok.encode(text, add_bos=False, special=True) == want
        assert tok.encode(text, add_bos=False) == sp.encode(text)  # plain text otherwise


def test_spm_rebuilt_from_ggml_keys(spm_file, tmp_path):
    sp, path = spm_file
    p = rewrite(path, tmp_path / "no-spm.gguf",
                drop_kv=("mambalite.tokenizer.sentencepiece_model",))
    tok = mambalite.load(p).tokenizer
    assert tok.kind == "llama (rebuilt)"
    for text in SAMPLES[:-1] + CORPUS[:8]:
        assert tok.encode(text, add_bos=False) == sp.encode(text), text
        assert tok.decode(sp.encode(text)) == sp.decode(sp.encode(text))


def test_no_tokenizer_metadata():
    with pytest.raises(ValueError, match="no tokenizer"):
        Tokenizer({"general.architecture": "mamba"})
