"""Shared fixtures for the tests (helpers live in helpers.py)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import mambalite  # noqa: E402

from helpers import (  # noqa: E402
    export,
    make_hf_model,
    save_checkpoint,
    train_bpe_tokenizer,
    train_spm,
)


@pytest.fixture(scope="session")
def bpe_tokenizer():
    return train_bpe_tokenizer()


@pytest.fixture(scope="session")
def spm_model_bytes(tmp_path_factory) -> bytes:
    """A trained SentencePiece model (600 pieces, byte fallback), serialised."""
    tmp = tmp_path_factory.mktemp("spm-model")
    train_spm(tmp)
    return (tmp / "sp.model").read_bytes()


@pytest.fixture(scope="session")
def text_model(tmp_path_factory, bpe_tokenizer):
    """(transformers model, exported f32 GGUF path) with an embedded BPE tokenizer (300 ids) and
    20 padding ids."""
    hf = make_hf_model(seed=1, vocab_size=320, hidden_size=64, num_hidden_layers=2,
                       tie_word_embeddings=False)
    d = save_checkpoint(hf, tmp_path_factory.mktemp("text") / "ckpt", bpe_tokenizer)
    return hf, export(d, "f32")


@pytest.fixture(scope="session")
def ml_text(text_model):
    return mambalite.load(text_model[1], threads=2)
