"""Writes the seed corpora of the fuzz targets (tests/fuzz/README.md): small GGUF files of every
architecture from random transformers models through `mambalite.export`, in several types, and
saved states of each model, and the two tokenizer files of fuzz_tokenizer.py. Run from the
repository root: python tests/fuzz/make_seeds.py (python tests/fuzz/make_seeds.py tokenizer for
the tokenizer files only)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import mambalite  # noqa: E402

import helpers  # noqa: E402

SMALL = dict(vocab_size=64, hidden_size=32, num_attention_heads=2, num_key_value_heads=1,
             tie_word_embeddings=False)
MAMBA2_HEADS = dict(mamba_n_heads=4, mamba_d_head=16, mamba_n_groups=1)
# (name, builder, config, types): the smallest shapes the exporter and each quantized type take.
MODELS = [
    ("mamba", helpers.make_hf_model, dict(vocab_size=64, hidden_size=32, num_hidden_layers=1),
     ["f32", "f16", "q8_0", "q4_0"]),
    ("falcon-mamba", helpers.make_hf_falcon_mamba,
     dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1), ["f32"]),
    ("mamba2", helpers.make_hf_mamba2,
     dict(vocab_size=64, hidden_size=32, num_heads=4, head_dim=16, num_hidden_layers=1),
     ["f32", "q8_0"]),
    ("granite-hybrid", helpers.make_hf_granite,
     dict(SMALL, **MAMBA2_HEADS, num_hidden_layers=2, layer_types=["mamba", "attention"],
          intermediate_size=32, shared_intermediate_size=32), ["f32", "q8_0"]),
    ("nemotron-h", helpers.make_hf_nemotron_h,
     dict(SMALL, layers_block_type=["mamba", "attention", "mlp"], intermediate_size=32,
          mamba_num_heads=4, mamba_head_dim=16, n_groups=1), ["f32"]),
    ("jamba", helpers.make_hf_jamba,
     dict(SMALL, num_hidden_layers=2, attn_layer_period=2, attn_layer_offset=1,
          expert_layer_period=2, expert_layer_offset=1, num_experts=2, num_experts_per_tok=1,
          intermediate_size=32, mamba_dt_rank=4), ["f32"]),
    ("falcon-h1", helpers.make_hf_falcon_h1,
     dict(SMALL, **MAMBA2_HEADS, num_hidden_layers=1, intermediate_size=32, mamba_d_ssm=64),
     ["f32"]),
]


def tokenizer_seeds(tmp: Path) -> None:
    """fuzz_tokenizer.py's base files: a byte-level BPE tokenizer (tokenizer.json and the gpt2
    keys) and a SentencePiece one (the embedded model and the llama keys), on a 1-layer model of
    width 8 so that the files stay small."""
    import json

    out_dir = HERE / "corpus" / "tokenizer"
    out_dir.mkdir(parents=True, exist_ok=True)
    bpe = helpers.train_bpe_tokenizer()
    small = dict(hidden_size=8, num_hidden_layers=1)
    d = helpers.save_checkpoint(helpers.make_hf_model(0, vocab_size=304, **small),
                                tmp / "bpe", bpe)
    mambalite.export(d, out_dir / "bpe-gpt2.gguf", "f16", progress=False)
    sp_dir = tmp / "spm"
    sp_dir.mkdir()
    helpers.train_spm(sp_dir)
    d = helpers.save_checkpoint(helpers.make_hf_model(0, vocab_size=600, **small), tmp / "sp")
    (d / "tokenizer.model").write_bytes((sp_dir / "sp.model").read_bytes())
    (d / "tokenizer_config.json").write_text(json.dumps({"add_bos_token": True}))
    mambalite.export(d, out_dir / "spm-llama.gguf", "f16", progress=False)
    for f in sorted(out_dir.glob("*.gguf")):
        print(f.name, f.stat().st_size)


def main() -> None:
    gguf_dir, state_dir = HERE / "corpus" / "gguf", HERE / "corpus" / "state"
    for d in (gguf_dir, state_dir):
        d.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        if sys.argv[1:] == ["tokenizer"]:
            tokenizer_seeds(Path(tmp))
            return
        for name, build, config, types in MODELS:
            ckpt = helpers.save_checkpoint(build(0, **config), Path(tmp) / name)
            for t in types:
                out = gguf_dir / f"{name}-{t}.gguf"
                mambalite.export(ckpt, out, t, progress=False)
                print(out.name, out.stat().st_size)
            model = mambalite.load(gguf_dir / f"{name}-f32.gguf", threads=1, n_ctx=16)
            state = model.new_state()
            (state_dir / f"{name}-empty.state").write_bytes(state.to_bytes())
            model.prefill(state, [1, 2, 3])
            (state_dir / f"{name}-3.state").write_bytes(state.to_bytes())
        tokenizer_seeds(Path(tmp))


if __name__ == "__main__":
    main()
