"""Tokenizers survive export -> GGUF -> load, and match the originals."""

from __future__ import annotations

import json

import gguf
import numpy as np
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
    # The vocabulary padding, and the pad id the file names (tokenizer.ggml.padding_token_id: 0,
    # from the model config's pad_token_id; it is the unknown token here).
    assert tok.pad_id == 0
    assert tok.unsampleable_ids(610) == [0, *range(600, 610)]


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


# A damaged or crafted file's tokenizer keys (what tests/fuzz/fuzz_tokenizer.py found and more):
# each is a ValueError that names the key, never a bare library exception.
BAD_KEYS = [
    ({"tokenizer.ggml.tokens": 7}, "tokenizer.ggml.tokens is a int, expected an array of str"),
    ({"tokenizer.ggml.tokens": ["a", 3]}, "expected an array of strings"),
    ({"tokenizer.ggml.merges": [["a b"]]}, "tokenizer.ggml.merges is a list"),
    ({"tokenizer.ggml.model": 1}, "tokenizer.ggml.model is a int, expected a string"),
    ({"tokenizer.ggml.token_type": [1, 2]}, "has 2 entries for"),
    ({"tokenizer.ggml.scores": ["x"]}, "expected an array of numbers"),
    ({"tokenizer.ggml.eos_token_id": "2"}, "eos_token_id is a str"),
    ({"tokenizer.ggml.bos_token_id": 2**40}, "bos_token_id is 1099511627776, not a token id"),
    ({"tokenizer.ggml.add_bos_token": 1}, "add_bos_token is a int, expected a bool"),
    ({"tokenizer.huggingface.json": "{not json"}, r"tokenizer \(tokenizer.huggingface.json\) "
                                                  "could not be read"),
]


@pytest.mark.parametrize("edit, message", BAD_KEYS)
def test_damaged_tokenizer_keys(bpe_file, edit, message):
    md = dict(mambalite.load(bpe_file).metadata, **edit)
    with pytest.raises(ValueError, match=message):
        Tokenizer(md)


def test_null_special_id(bpe_file):
    """-1, llama.cpp's null token, means the model has no such token: never added or stopped at."""
    md = dict(mambalite.load(bpe_file).metadata, **{"tokenizer.ggml.bos_token_id": -1,
                                                    "tokenizer.ggml.eos_token_id": -1,
                                                    "tokenizer.ggml.add_bos_token": True})
    tok = Tokenizer(md)
    assert tok.bos_id is None and tok.eos_id is None
    assert -1 not in tok.encode("Paris")
    assert -1 not in tok.end_ids


def test_damaged_sentencepiece_model(spm_file):
    """A model that sentencepiece loads but whose pieces are not UTF-8 is refused at load, not
    when a piece is first read."""
    md = dict(mambalite.load(spm_file[1]).metadata)
    blob = bytes(md["mambalite.tokenizer.sentencepiece_model"])
    at = blob.index(b"\xe2\x96\x81")  # the first "\u2581" of a piece: its bytes cut short
    md["mambalite.tokenizer.sentencepiece_model"] = np.frombuffer(
        blob[:at + 1] + b"x" + blob[at + 2:], dtype=np.uint8)
    with pytest.raises(ValueError, match="sentencepiece_model\\) could not be read"):
        Tokenizer(md)
    md["mambalite.tokenizer.sentencepiece_model"] = np.frombuffer(b"\x0a\xff", dtype=np.uint8)
    with pytest.raises(ValueError, match="could not be read"):
        Tokenizer(md)


def test_decode_ignores_unknown_ids(bpe_file, spm_file):
    """Ids the tokenizer does not know (negative, or the model's vocabulary padding) give
    nothing, as they always did for SentencePiece; huggingface's decode raised OverflowError."""
    for path in (bpe_file, spm_file[1]):
        tok = mambalite.load(path).tokenizer
        ids = tok.encode("Paris", add_bos=False)
        assert tok.decode([-1, *ids, tok.vocab_size, 2**40]) == tok.decode(ids) != ""
