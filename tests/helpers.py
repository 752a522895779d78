"""Small random Mamba models built with transformers (the independent reference), saved as
checkpoints and exported with mambalite. Shared by the tests and the benchmarks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
import transformers

import mambalite

# Text with multi-byte UTF-8, digits, whitespace runs and code, for tokenizers and streaming.
CORPUS = [
    "The capital of France is Paris. The capital of Japan is Tokyo (東京).",
    "Once upon a time, in a land far away, there lived a small green dragon.",
    "def fibonacci(n):\n    if n < 2:\n        return n\n"
    "    return fibonacci(n - 1) + fibonacci(n - 2)\n",
    "Numbers: 0 1 2 3 42 1234567890 3.14159 -7e10; prices €5, £3, ¥100.",
    "Ünïcödé façade naïve café — “quotes” ‘single’ 😀 🚀 ✓ ∑ ∫ π ≈ 3.14",
    "    indented\twith\ttabs   and   runs of     spaces\n\n\nnew lines",
    "Привет, мир! Γειά σου κόσμε! こんにちは世界 안녕하세요 مرحبا بالعالم",
    "for i in range(10):\n    print(f'{i:03d}', end=' ')\nimport numpy as np\nx = np.zeros((3, 4))",
] * 4


def randomize_(model: torch.nn.Module, seed: int) -> None:
    """Gives every parameter non-trivial random values (transformers' init leaves D = 1, norm
    weights = 1 and identical A rows, which would hide indexing bugs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g)
            if name.endswith("A_log"):
                p.add_(0.5 * r)
            elif name.endswith(".D"):
                p.copy_(1.0 + 0.5 * r)
            elif "norm" in name:
                p.copy_(1.0 + 0.3 * r)
            elif name.endswith("bias"):
                p.add_(0.3 * r)
            elif "conv1d" in name:
                p.copy_(0.5 * r)
            elif "embeddings" in name:
                p.copy_(r)
            else:  # linear layers: unit-variance outputs
                p.copy_(r / math.sqrt(p.shape[-1]))


def make_hf_model(seed: int = 0, **config) -> torch.nn.Module:
    """A random transformers MambaForCausalLM in fp32 eval mode."""
    defaults = dict(vocab_size=320, hidden_size=64, state_size=16, num_hidden_layers=2,
                    conv_kernel=4, expand=2, tie_word_embeddings=True, layer_norm_epsilon=1e-5,
                    bos_token_id=0, eos_token_id=0, pad_token_id=0)
    defaults.update(config)
    torch.manual_seed(seed)
    model = transformers.MambaForCausalLM(transformers.MambaConfig(**defaults)).eval()
    randomize_(model, seed)
    return model


def make_hf_mamba2(seed: int = 0, **config) -> torch.nn.Module:
    """A random transformers Mamba2ForCausalLM in fp32 eval mode (chunk_size 16, so that its
    chunked SSD form crosses chunk boundaries on short prompts)."""
    defaults = dict(vocab_size=320, hidden_size=64, state_size=16, num_hidden_layers=2,
                    conv_kernel=4, expand=2, num_heads=8, head_dim=16, n_groups=1,
                    chunk_size=16, tie_word_embeddings=True, layer_norm_epsilon=1e-5,
                    bos_token_id=0, eos_token_id=0, pad_token_id=0)
    defaults.update(config)
    torch.manual_seed(seed)
    model = transformers.Mamba2ForCausalLM(transformers.Mamba2Config(**defaults)).eval()
    randomize_(model, seed)
    return model


def make_hf_falcon_mamba(seed: int = 0, **config) -> torch.nn.Module:
    """A random transformers FalconMambaForCausalLM in fp32 eval mode."""
    defaults = dict(vocab_size=320, hidden_size=64, state_size=16, num_hidden_layers=2,
                    conv_kernel=4, intermediate_size=96, tie_word_embeddings=False,
                    layer_norm_epsilon=1e-5, mixer_rms_eps=1e-6,
                    bos_token_id=0, eos_token_id=0, pad_token_id=0)
    defaults.update(config)
    torch.manual_seed(seed)
    model = transformers.FalconMambaForCausalLM(
        transformers.FalconMambaConfig(**defaults)).eval()
    randomize_(model, seed)
    return model


def _hybrid(cls_name: str, cfg_name: str, seed: int, defaults: dict, config: dict):
    defaults = {**defaults, **config}
    torch.manual_seed(seed)
    cfg = getattr(transformers, cfg_name)(**defaults)
    model = getattr(transformers, cls_name)(cfg).eval()
    randomize_(model, seed)
    return model


HYBRID_COMMON = dict(vocab_size=320, hidden_size=64, num_attention_heads=4,
                     num_key_value_heads=2, tie_word_embeddings=False, bos_token_id=0,
                     eos_token_id=0, pad_token_id=0)


def make_hf_granite(seed: int = 0, **config) -> torch.nn.Module:
    """A random GraniteMoeHybridForCausalLM (Granite-4.0-H): Mamba-2 and NoPE attention layers,
    µP multipliers away from 1, dense shared MLP unless num_local_experts > 0."""
    defaults = dict(HYBRID_COMMON, num_hidden_layers=4,
                    layer_types=["mamba", "attention", "mamba", "mamba"], mamba_n_heads=8,
                    mamba_n_groups=2, mamba_d_state=16, mamba_d_head=16, mamba_chunk_size=16,
                    intermediate_size=48, shared_intermediate_size=80, num_local_experts=0,
                    embedding_multiplier=1.7, residual_multiplier=0.6, attention_multiplier=0.2,
                    logits_scaling=2.5, rms_norm_eps=1e-5)
    return _hybrid("GraniteMoeHybridForCausalLM", "GraniteMoeHybridConfig", seed, defaults,
                   config)


def make_hf_bamba(seed: int = 0, **config) -> torch.nn.Module:
    """A random BambaForCausalLM: Mamba-2 and attention layers with partial RoPE (half of each
    head rotated), SwiGLU FFN in every layer."""
    defaults = dict(HYBRID_COMMON, num_hidden_layers=4, attn_layer_indices=[1, 3],
                    mamba_n_heads=8, mamba_n_groups=2, mamba_d_state=16, mamba_d_head=16,
                    mamba_chunk_size=16, intermediate_size=96, rms_norm_eps=1e-5)
    return _hybrid("BambaForCausalLM", "BambaConfig", seed, defaults, config)


def make_hf_nemotron_h(seed: int = 0, **config) -> torch.nn.Module:
    """A random NemotronHForCausalLM with all three layer kinds: Mamba-2, attention, ReLU² MLP."""
    defaults = dict(HYBRID_COMMON, layers_block_type=["mamba", "attention", "mlp", "mamba",
                                                      "mlp", "attention"],
                    head_dim=16, intermediate_size=96, ssm_state_size=16, mamba_num_heads=8,
                    mamba_head_dim=16, n_groups=2, chunk_size=16, layer_norm_epsilon=1e-5)
    return _hybrid("NemotronHForCausalLM", "NemotronHConfig", seed, defaults, config)


def make_hf_jamba(seed: int = 0, **config) -> torch.nn.Module:
    """A random JambaForCausalLM: Mamba-1 mixers with weighted dt/B/C norms, attention at layers
    1 and 4 (period 3, offset 1), routed experts at layers 1, 3 and 5 (period 2, offset 1; 4
    experts, top 2), dense SwiGLU elsewhere; not the released periods (8/4, 2/1)."""
    defaults = dict(HYBRID_COMMON, num_hidden_layers=6, attn_layer_period=3, attn_layer_offset=1,
                    expert_layer_period=2, expert_layer_offset=1, num_experts=4,
                    num_experts_per_tok=2, intermediate_size=96, mamba_d_state=16,
                    mamba_d_conv=4, mamba_expand=2, mamba_dt_rank=8, rms_norm_eps=1e-6)
    return _hybrid("JambaForCausalLM", "JambaConfig", seed, defaults, config)


FALCON_H1_MULTIPLIERS = dict(
    embedding_multiplier=3.1, lm_head_multiplier=0.27, key_multiplier=0.6,
    attention_in_multiplier=1.3, attention_out_multiplier=0.7, ssm_in_multiplier=0.8,
    ssm_out_multiplier=1.6, mlp_multipliers=[1.4, 0.55], ssm_multipliers=[0.9, 1.2, 0.5, 1.7, 0.6])


def make_hf_falcon_h1(seed: int = 0, **config) -> torch.nn.Module:
    """A random FalconH1ForCausalLM: attention (RoPE, base 5000) beside a Mamba-2 mixer in every
    layer, then a SwiGLU MLP; every µP multiplier away from 1 and from each other (a model with
    multipliers of 1 cannot tell whether they are applied), the Mamba inner size (mamba_d_ssm 96)
    not 2 x hidden_size, its gated RMSNorm on (mamba_rms_norm, gating first as the released
    models do)."""
    defaults = dict(HYBRID_COMMON, num_hidden_layers=3, head_dim=16, intermediate_size=96,
                    mamba_d_ssm=96, mamba_n_heads=6, mamba_d_head=16, mamba_n_groups=2,
                    mamba_d_state=16, mamba_chunk_size=16, mamba_rms_norm=True,
                    mamba_norm_before_gate=False, rms_norm_eps=1e-5,
                    rope_parameters={"rope_theta": 5000.0, "rope_type": "default"},
                    **FALCON_H1_MULTIPLIERS)
    return _hybrid("FalconH1ForCausalLM", "FalconH1Config", seed, defaults, config)


def train_bpe_tokenizer():
    """A small GPT-NeoX-style byte-level BPE tokenizer (NFC + byte-level), ~300 ids."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    return tok


def train_spm(tmp_path: Path):
    """A SentencePiece BPE model (600 pieces, byte fallback) trained on CORPUS, saved as
    tmp_path/sp.model."""
    import sentencepiece as spm

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(CORPUS * 5), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(tmp_path / "sp"), vocab_size=600,
        model_type="bpe", byte_fallback=True, character_coverage=1.0,
        bos_id=1, eos_id=2, unk_id=0, pad_id=-1, minloglevel=2,
        # As LLaMA/Mistral tokenizers (what llama.cpp's "llama" vocabulary models): no NFKC, no
        # whitespace collapsing.
        normalization_rule_name="identity", remove_extra_whitespaces=False)
    return spm.SentencePieceProcessor(model_file=str(tmp_path / "sp.model"))


def save_checkpoint(model, directory: Path, tokenizer=None, **save_kwargs) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory, **save_kwargs)
    if tokenizer is not None:
        tokenizer.save(str(directory / "tokenizer.json"))
        (directory / "tokenizer_config.json").write_text(json.dumps(
            {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"}))
    return directory


def export(directory: Path, type: str = "f32", name: str | None = None) -> Path:
    return mambalite.export(directory, directory / (name or f"model-{type}.gguf"), type,
                            progress=False)


def hf_logits(model, ids) -> np.ndarray:
    with torch.no_grad():
        return model(torch.as_tensor(np.asarray(ids))[None]).logits[0].float().numpy()
