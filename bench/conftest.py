"""Benchmark fixtures: 130m-shaped Mamba-1 models with random weights (speed does not depend on
the values), exported once per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

SHAPES = {
    "130m": dict(hidden_size=768, num_hidden_layers=24, vocab_size=50280),
}


@pytest.fixture(scope="session")
def hf_130m():
    from helpers import make_hf_model

    return make_hf_model(seed=0, tie_word_embeddings=True, **SHAPES["130m"])


@pytest.fixture(scope="session")
def gguf_130m(tmp_path_factory, hf_130m):
    import mambalite

    from helpers import save_checkpoint

    d = save_checkpoint(hf_130m, tmp_path_factory.mktemp("bench") / "130m")
    return {t: mambalite.export(d, d / f"130m-{t}.gguf", t, progress=False)
            for t in ("f32", "f16")}
