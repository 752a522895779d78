"""Export of TII's Falcon-H1 (transformers `FalconH1ForCausalLM`) to llama.cpp's `falcon-h1` GGUF
layout: in every layer attention (RoPE, rotate-half convention) and a Mamba-2 mixer run in
parallel on one normalised input, then a SwiGLU MLP.

Falcon-H1's µP multipliers are folded into the weights, as llama.cpp's conversion/falcon_h1.py
folds them, so that the file runs in llama.cpp unchanged: the embedding and the head, Q/K/V
(attention_in, and key_multiplier on K), O (attention_out), ssm_in (ssm_in times the five
per-segment ssm_multipliers on z, x, B, C and dt), ssm_out, and the MLP's gate and down. Unlike
llama.cpp's converter, biases are folded only where the multiplier scales them (a multiplier on
a layer's input leaves its bias alone), and a tied head gets its own scaled copy.
"""

from __future__ import annotations

import gguf
import numpy as np

from ._checkpoint import Checkpoint
from ._export_hybrid import (
    HybridHParams,
    _check_time_step_limit,
    _num,
    _plan_mamba2,
    _Planner,
    _pos_int,
)


def _flag(cfg: dict, key: str, default: bool) -> bool:
    v = cfg.get(key, default)
    return default if v is None else bool(v)


def read_falcon_h1_hparams(ckpt: Checkpoint) -> HybridHParams:
    cfg = ckpt.config
    D = _pos_int(cfg, "hidden_size")
    L = _pos_int(cfg, "num_hidden_layers")
    _check_time_step_limit(ckpt, cfg)
    for key, what in (("mamba_proj_bias", "in_proj biases"),
                      ("projectors_bias", "out_proj biases")):
        if _flag(cfg, key, False):
            raise ValueError(f"{ckpt.dir}: {key} is true ({what}), which llama.cpp's falcon-h1 "
                             "format cannot hold")
    if cfg.get("hidden_act", "silu") != "silu":
        raise ValueError(f"{ckpt.dir}: hidden_act {cfg['hidden_act']!r}; only SiLU is supported")
    rms_norm = _flag(cfg, "mamba_rms_norm", False)
    if rms_norm and _flag(cfg, "mamba_norm_before_gate", True):
        raise ValueError(f"{ckpt.dir}: mamba_norm_before_gate is true with mamba_rms_norm: the "
                         "Mamba-2 output would be normalised before its gate, but llama.cpp's "
                         "falcon-h1 (and this engine) gate first; set it false only if the model "
                         "was trained that way")
    rope = cfg.get("rope_parameters") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type != "default" or cfg.get("rope_scaling"):
        raise ValueError(f"{ckpt.dir}: RoPE scaling {rope_type!r}; Falcon-H1 files hold plain "
                         "RoPE only")
    n_head = _pos_int(cfg, "num_attention_heads")
    head_dim = int(cfg.get("head_dim") or D // n_head)
    n_head_ssm = _pos_int(cfg, "mamba_n_heads")
    d_inner = cfg.get("mamba_d_ssm") or int(_num(cfg, "mamba_expand", 2) * D)
    d_head = cfg.get("mamba_d_head", "auto")
    if d_inner % n_head_ssm or (d_head not in ("auto", None) and
                                int(d_head) * n_head_ssm != d_inner):
        raise ValueError(f"{ckpt.dir}: mamba_n_heads {n_head_ssm} and mamba_d_head {d_head} do "
                         f"not divide the Mamba inner size {d_inner}")
    mup = {k: float(_num(cfg, k, 1.0)) for k in (
        "embedding_multiplier", "lm_head_multiplier", "key_multiplier",
        "attention_in_multiplier", "attention_out_multiplier", "ssm_in_multiplier",
        "ssm_out_multiplier")}
    mlp = cfg.get("mlp_multipliers") or [1.0, 1.0]
    ssm = cfg.get("ssm_multipliers") or [1.0] * 5
    if len(mlp) != 2 or len(ssm) != 5:
        raise ValueError(f"{ckpt.dir}: mlp_multipliers {mlp} and ssm_multipliers {ssm} should "
                         "hold 2 and 5 numbers")
    mup["mlp"] = [float(_num({"v": v}, "v")) for v in mlp]
    mup["ssm"] = [float(_num({"v": v}, "v")) for v in ssm]
    return HybridHParams(
        arch="falcon-h1", model_type="falcon_h1", d_model=D, n_layer=L, kinds=["hybrid"] * L,
        norm_eps=float(_num(cfg, "rms_norm_eps", 1e-5)),
        n_ctx=_pos_int(cfg, "max_position_embeddings", 8192), d_inner=int(d_inner),
        d_state=_pos_int(cfg, "mamba_d_state"), d_conv=_pos_int(cfg, "mamba_d_conv", 4),
        n_head_ssm=n_head_ssm, n_group=_pos_int(cfg, "mamba_n_groups", 1),
        conv_bias=_flag(cfg, "mamba_conv_bias", True), n_head=n_head,
        n_head_kv=_pos_int(cfg, "num_key_value_heads", n_head), head_dim=head_dim,
        attn_bias=_flag(cfg, "attention_bias", False), n_rot=head_dim,
        rope_base=float(rope.get("rope_theta", cfg.get("rope_theta", 10000.0))),
        n_ff=_pos_int(cfg, "intermediate_size"), ffn_bias=_flag(cfg, "mlp_bias", False),
        tie_embeddings=_flag(cfg, "tie_word_embeddings", False),
        embd_fold=mup["embedding_multiplier"], head_fold=mup["lm_head_multiplier"],
        ssm_norm=rms_norm, mup=mup)


def _scaled(c: float):
    return None if c == 1.0 else (lambda a: a * np.float32(c))


def _plan_mixer(pl: _Planner, hp: HybridHParams, p: str, b: str) -> None:
    E, N, H, G = hp.d_inner, hp.d_state, hp.n_head_ssm, hp.n_group
    m = hp.mup
    # ssm_in's rows are z (E), x (E), B (G N), C (G N), dt (H): one multiplier per segment.
    row_scale = np.repeat(np.float32(m["ssm_in_multiplier"]) * np.asarray(m["ssm"], np.float32),
                          [E, E, G * N, G * N, H])
    _plan_mamba2(pl, hp, p, b, in_proj=lambda a: a * row_scale[:, None],
                 out_proj=_scaled(m["ssm_out_multiplier"]))
    if p + "mup_vector" in pl.ckpt:  # a buffer transformers recomputes from the config
        pl.used.add(p + "mup_vector")


def _plan_attention(pl: _Planner, hp: HybridHParams, p: str, b: str) -> None:
    D, hd = hp.d_model, hp.head_dim
    HQ, HKV = hp.n_head * hd, hp.n_head_kv * hd
    m = hp.mup
    a_in, k_mul = m["attention_in_multiplier"], m["key_multiplier"]
    pl.add(p + "q_proj.weight", b + "attn_q.weight", (HQ, D), transform=_scaled(a_in))
    pl.add(p + "k_proj.weight", b + "attn_k.weight", (HKV, D), transform=_scaled(a_in * k_mul))
    pl.add(p + "v_proj.weight", b + "attn_v.weight", (HKV, D), transform=_scaled(a_in))
    pl.add(p + "o_proj.weight", b + "attn_output.weight", (D, HQ),
           transform=_scaled(m["attention_out_multiplier"]))
    if hp.attn_bias:  # k = k_proj(x * a_in) * k_mul: its bias takes k_mul but not a_in
        pl.add(p + "q_proj.bias", b + "attn_q.bias", (HQ,), optional=True)
        pl.add(p + "k_proj.bias", b + "attn_k.bias", (HKV,), optional=True,
               transform=_scaled(k_mul))
        pl.add(p + "v_proj.bias", b + "attn_v.bias", (HKV,), optional=True)
        pl.add(p + "o_proj.bias", b + "attn_output.bias", (D,), optional=True,
               transform=_scaled(m["attention_out_multiplier"]))


def _plan_mlp(pl: _Planner, hp: HybridHParams, f: str, b: str) -> None:
    D, F = hp.d_model, hp.n_ff
    gate, down = hp.mup["mlp"]
    pl.add(f + "gate_proj.weight", b + "ffn_gate.weight", (F, D), transform=_scaled(gate))
    pl.add(f + "up_proj.weight", b + "ffn_up.weight", (F, D))
    pl.add(f + "down_proj.weight", b + "ffn_down.weight", (D, F), transform=_scaled(down))
    if hp.ffn_bias:
        pl.add(f + "gate_proj.bias", b + "ffn_gate.bias", (F,), optional=True,
               transform=_scaled(gate))
        pl.add(f + "up_proj.bias", b + "ffn_up.bias", (F,), optional=True)
        pl.add(f + "down_proj.bias", b + "ffn_down.bias", (D,), optional=True,
               transform=_scaled(down))


def plan_falcon_h1(pl: _Planner, hp: HybridHParams) -> None:
    """The layers' tensors (the caller adds the embedding, the final norm and the head)."""
    D = hp.d_model
    for i in range(hp.n_layer):
        p, b = f"model.layers.{i}.", f"blk.{i}."
        pl.add(p + "input_layernorm.weight", b + "attn_norm.weight", (D,))
        _plan_attention(pl, hp, p + "self_attn.", b)
        _plan_mixer(pl, hp, p + "mamba.", b)
        # llama.cpp's name for it has no ".weight" (its tensor map matches the whole key).
        pl.add(p + "pre_ff_layernorm.weight", b + "ffn_norm", (D,))
        _plan_mlp(pl, hp, p + "feed_forward.", b)


def add_falcon_h1_metadata(writer: gguf.GGUFWriter, hp: HybridHParams) -> None:
    """llama.cpp's keys for `falcon-h1` (conversion/falcon_h1.py over its Mamba-2 base)."""
    writer.add_context_length(hp.n_ctx)
    writer.add_embedding_length(hp.d_model)
    writer.add_block_count(hp.n_layer)
    writer.add_feed_forward_length(hp.n_ff)
    writer.add_head_count(hp.n_head)
    writer.add_head_count_kv(hp.n_head_kv)
    writer.add_key_length(hp.head_dim)
    writer.add_value_length(hp.head_dim)
    writer.add_rope_dimension_count(hp.n_rot)
    writer.add_rope_freq_base(hp.rope_base)
    writer.add_layer_norm_rms_eps(hp.norm_eps)
    writer.add_ssm_conv_kernel(hp.d_conv)
    writer.add_ssm_inner_size(hp.d_inner)
    writer.add_ssm_state_size(hp.d_state)
    writer.add_ssm_time_step_rank(hp.n_head_ssm)  # llama.cpp keeps the head count here
    writer.add_ssm_group_count(hp.n_group)
