"""Benchmark fixtures: Mamba-1, Mamba-2 and Granite-4.0-H models of released shapes with random
weights (speed does not depend on the values), exported once and cached in
$MAMBALITE_BENCH_CACHE (default ~/.cache/mambalite-bench)."""

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
    # ibm-granite/granite-4.0-h-350m and -1b as their configs state them: attention (12 heads,
    # 4 KV heads, no positional encoding) at 4 of the layers, Mamba-2 (48 heads, d_state 128,
    # one group) elsewhere, a dense SwiGLU MLP in every layer, tied head, vocab 100352.
    "granite-h-350m": dict(hidden_size=768, num_hidden_layers=32, vocab_size=100352,
                           num_attention_heads=12, num_key_value_heads=4, mamba_n_heads=48,
                           mamba_d_head=32, mamba_d_state=128, mamba_n_groups=1,
                           shared_intermediate_size=2048, attention_layers=[10, 13, 17, 27]),
    "granite-h-1b": dict(hidden_size=1536, num_hidden_layers=40, vocab_size=100352,
                         num_attention_heads=12, num_key_value_heads=4, mamba_n_heads=48,
                         mamba_d_head=64, mamba_d_state=128, mamba_n_groups=1,
                         shared_intermediate_size=4096, attention_layers=[10, 13, 17, 27]),
}
CACHE = Path(os.environ.get("MAMBALITE_BENCH_CACHE", Path.home() / ".cache" / "mambalite-bench"))


def checkpoint(shape: str) -> Path:
    """A transformers checkpoint of `shape` (built on first use)."""
    from helpers import make_hf_mamba2, make_hf_model, save_checkpoint

    d = CACHE / shape
    if not (d / "config.json").is_file():
        cfg = dict(SHAPES[shape])
        if shape.startswith("granite"):
            from helpers import make_hf_granite

            attn = cfg.pop("attention_layers")
            cfg["layer_types"] = ["attention" if i in attn else "mamba"
                                  for i in range(cfg["num_hidden_layers"])]
            model = make_hf_granite(seed=0, tie_word_embeddings=True, **cfg)
        else:
            make = make_hf_mamba2 if shape.startswith("mamba2") else make_hf_model
            model = make(seed=0, tie_word_embeddings=True, **cfg)
        save_checkpoint(model, d)
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
