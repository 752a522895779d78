"""Export of AI21's Jamba (transformers `JambaForCausalLM`) to llama.cpp's `jamba` GGUF layout:
Mamba-1 mixers with weighted RMSNorms on dt, B and C, attention layers (no positional encoding)
at attn_layer_period/offset, and routed SwiGLU experts at expert_layer_period/offset with a
SwiGLU MLP elsewhere. Names and conventions follow llama.cpp's conversion/jamba.py."""

from __future__ import annotations

import gguf
import numpy as np

from ._checkpoint import Checkpoint
from ._export_hybrid import HybridHParams, _num, _plan_attention, _Planned, _Planner, _pos_int


def _at(i: int, period: int, offset: int) -> bool:
    return i >= offset and (i - offset) % period == 0


def read_jamba_hparams(ckpt: Checkpoint) -> HybridHParams:
    cfg = ckpt.config
    D = _pos_int(cfg, "hidden_size")
    L = _pos_int(cfg, "num_hidden_layers")
    if cfg.get("mamba_proj_bias", False):
        raise ValueError(f"{ckpt.dir}: mamba_proj_bias is true (in_proj/out_proj biases), which "
                         "llama.cpp's format cannot hold")
    if cfg.get("hidden_act", "silu") != "silu":
        raise ValueError(f"{ckpt.dir}: hidden_act {cfg['hidden_act']!r}; only SiLU is supported")
    a_period, a_offset = _pos_int(cfg, "attn_layer_period"), int(cfg.get("attn_layer_offset", 0))
    e_period = _pos_int(cfg, "expert_layer_period", 1)
    e_offset = int(cfg.get("expert_layer_offset", 0))
    n_expert = int(cfg.get("num_experts") or cfg.get("num_local_experts") or 1)
    kinds = ["attention" if _at(i, a_period, a_offset) else "mamba" for i in range(L)]
    moe = tuple(i for i in range(L) if n_expert > 1 and _at(i, e_period, e_offset))
    n_head = _pos_int(cfg, "num_attention_heads")
    dt_rank = cfg.get("mamba_dt_rank", "auto")
    return HybridHParams(
        arch="jamba", model_type="jamba", d_model=D, n_layer=L, kinds=kinds,
        norm_eps=float(_num(cfg, "rms_norm_eps", 1e-6)),
        n_ctx=_pos_int(cfg, "max_position_embeddings", 262144),
        d_inner=int(_num(cfg, "mamba_expand", 2) * D), d_state=_pos_int(cfg, "mamba_d_state", 16),
        d_conv=_pos_int(cfg, "mamba_d_conv", 4), n_head_ssm=0, n_group=1,
        conv_bias=bool(cfg.get("mamba_conv_bias", True)), n_head=n_head,
        n_head_kv=_pos_int(cfg, "num_key_value_heads", n_head),
        head_dim=int(cfg.get("head_dim") or D // n_head), attn_bias=False, n_rot=0,
        rope_base=10000.0, n_ff=_pos_int(cfg, "intermediate_size"),
        n_expert=n_expert if moe else 0,
        n_expert_used=_pos_int(cfg, "num_experts_per_tok", 2) if moe else 0,
        n_ff_exp=_pos_int(cfg, "intermediate_size") if moe else 0,
        tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        dt_rank=-(D // -16) if dt_rank in ("auto", None) else int(dt_rank), moe_layers=moe)


def _plan_mamba1(pl: _Planner, hp: HybridHParams, p: str, b: str) -> None:
    D, E, N, K, R = hp.d_model, hp.d_inner, hp.d_state, hp.d_conv, hp.dt_rank
    pl.add(p + "in_proj.weight", b + "ssm_in.weight", (2 * E, D))
    pl.add(p + "conv1d.weight", b + "ssm_conv1d.weight", (E, K), accept=[(E, 1, K)])
    if not (hp.conv_bias and pl.add(p + "conv1d.bias", b + "ssm_conv1d.bias", (E,))):
        pl.constant(b + "ssm_conv1d.bias", np.zeros(E, dtype=np.float32))
    pl.add(p + "x_proj.weight", b + "ssm_x.weight", (R + 2 * N, E))
    pl.add(p + "dt_layernorm.weight", b + "ssm_dt_norm.weight", (R,))
    pl.add(p + "b_layernorm.weight", b + "ssm_b_norm.weight", (N,))
    pl.add(p + "c_layernorm.weight", b + "ssm_c_norm.weight", (N,))
    pl.add(p + "dt_proj.weight", b + "ssm_dt.weight", (E, R))
    pl.add(p + "dt_proj.bias", b + "ssm_dt.bias", (E,))
    pl.add(p + "A_log", b + "ssm_a", (E, N), transform=lambda a: -np.exp(a))
    pl.add(p + "D", b + "ssm_d", (E,))
    pl.add(p + "out_proj.weight", b + "ssm_out.weight", (D, E))


def _plan_experts(pl: _Planner, hp: HybridHParams, f: str, b: str) -> None:
    """Per-expert tensors (the hub's layout), or transformers 5's fused ones, stacked (X, ...)."""
    D, F, X = hp.d_model, hp.n_ff_exp, hp.n_expert
    pl.add(f + "router.weight", b + "ffn_gate_inp.weight", (X, D))
    if f + "experts.gate_up_proj" in pl.ckpt:
        pl.split(f + "experts.gate_up_proj",
                 [(b + "ffn_gate_exps.weight", (X, F, D), lambda a: a[:, :F]),
                  (b + "ffn_up_exps.weight", (X, F, D), lambda a: a[:, F:])], (X, 2 * F, D))
        pl.add(f + "experts.down_proj", b + "ffn_down_exps.weight", (X, D, F))
        return
    for name, dst, shape in (("gate_proj", "ffn_gate_exps", (F, D)),
                             ("up_proj", "ffn_up_exps", (F, D)),
                             ("down_proj", "ffn_down_exps", (D, F))):
        srcs = [f"{f}experts.{e}.{name}.weight" for e in range(X)]
        missing = [s for s in srcs if s not in pl.ckpt]
        bad = [s for s in srcs if s in pl.ckpt and pl.ckpt.shape(s) != shape]
        if missing or bad:
            pl.errors += [f"missing tensor {s!r}" for s in missing]
            pl.errors += [f"tensor {s!r} has shape {list(pl.ckpt.shape(s))}, expected "
                          f"{list(shape)}" for s in bad]
            continue
        pl.used.update(srcs)
        ckpt = pl.ckpt

        def load(srcs=srcs, ckpt=ckpt) -> np.ndarray:
            return np.stack([np.asarray(ckpt.load(s), dtype=np.float32) for s in srcs])

        pl.plan.append(_Planned(b + dst + ".weight", (X, *shape), load))


def plan_jamba(pl: _Planner, hp: HybridHParams) -> None:
    """The layers' tensors (the caller adds the embedding, the final norm and the head)."""
    D, F = hp.d_model, hp.n_ff
    for i, kind in enumerate(hp.kinds):
        p, b = f"model.layers.{i}.", f"blk.{i}."
        pl.add(p + "input_layernorm.weight", b + "attn_norm.weight", (D,))
        if kind == "mamba":
            _plan_mamba1(pl, hp, p + "mamba.", b)
        else:
            _plan_attention(pl, hp, p + "self_attn.", b)
        pl.add(p + "pre_ff_layernorm.weight", b + "ffn_norm.weight", (D,))
        f = p + "feed_forward."
        if i in hp.moe_layers:
            _plan_experts(pl, hp, f, b)
        else:
            pl.add(f + "gate_proj.weight", b + "ffn_gate.weight", (F, D))
            pl.add(f + "up_proj.weight", b + "ffn_up.weight", (F, D))
            pl.add(f + "down_proj.weight", b + "ffn_down.weight", (D, F))


def add_jamba_metadata(writer: gguf.GGUFWriter, hp: HybridHParams) -> None:
    """llama.cpp's keys for `jamba` (conversion/jamba.py)."""
    writer.add_context_length(hp.n_ctx)
    writer.add_embedding_length(hp.d_model)
    writer.add_block_count(hp.n_layer)
    writer.add_feed_forward_length(hp.n_ff)
    writer.add_head_count(hp.n_head)
    writer.add_head_count_kv([hp.n_head_kv if k == "attention" else 0 for k in hp.kinds])
    writer.add_ssm_conv_kernel(hp.d_conv)
    writer.add_ssm_inner_size(hp.d_inner)
    writer.add_ssm_state_size(hp.d_state)
    writer.add_ssm_time_step_rank(hp.dt_rank)
    writer.add_layer_norm_rms_eps(hp.norm_eps)
    if hp.n_expert > 0:
        writer.add_expert_count(hp.n_expert)
        writer.add_expert_used_count(hp.n_expert_used)
