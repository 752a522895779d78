"""Benchmark fixtures: Mamba-1 and Mamba-2 models of released shapes with random weights (speed
does not depend on the values), exported once and cached in $MAMBALITE_BENCH_CACHE (default
~/.cache/mambalite-bench)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

SHAPES = {
    "130m": dict(hidden_size=768, num_hidden_layers=24, vocab_size=50280),
    "370m": dict(hidden_size=1024, num_hidden_layers=48, vocab_size=50280),
    # state-spaces/mamba2-130m: d_state 128, head_dim 64 (24 heads), one group
    "mamba2-130m": dict(hidden_size=768, num_hidden_layers=24, vocab_size=50288, state_size=128,
                        num_heads=24, head_dim=64, n_groups=1),
}
CACHE = Path(os.environ.get("MAMBALITE_BENCH_CACHE", Path.home() / ".cache" / "mambalite-bench"))


def checkpoint(shape: str) -> Path:
    """A transformers checkpoint of `shape` (built on first use)."""
    from helpers import make_hf_mamba2, make_hf_model, save_checkpoint

    d = CACHE / shape
    if not (d / "config.json").is_file():
        make = make_hf_mamba2 if shape.startswith("mamba2") else make_hf_model
        save_checkpoint(make(seed=0, tie_word_embeddings=True, **SHAPES[shape]), d)
    return d


def gguf_path(shape: str, wtype: str) -> Path:
    import mambalite

    p = CACHE / f"{shape}-{wtype}.gguf"
    if not p.is_file():
        mambalite.export(checkpoint(shape), p, wtype, progress=False)
    return p


@pytest.fixture(scope="session")
def model_file():
    return gguf_path


@pytest.fixture(scope="session")
def hf_130m():
    import transformers

    return transformers.MambaForCausalLM.from_pretrained(checkpoint("130m")).eval()
