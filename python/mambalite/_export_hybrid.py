"""Export of the Mamba-2 hybrids: IBM Granite-4.0-H (`GraniteMoeHybridForCausalLM`, dense and
MoE) and Bamba (`BambaForCausalLM`) to llama.cpp's `granitehybrid`, NVIDIA Nemotron-H
(`NemotronHForCausalLM`) to `nemotron_h`, with llama.cpp's tensor names and keys
(docs/design.md, "Hybrids"). Jamba (_export_jamba.py) and Falcon-H1 (_export_falcon_h1.py) plan
their layers in their own modules over the planner here.

Where llama.cpp's own converter is wrong, this one is not: it reads transformers 5's layer-type
names ("linear_attention" / "full_attention" / "mlp") as well as the hub's ("mamba" /
"attention", `hybrid_override_pattern`), and for partial RoPE (Bamba) it permutes only the
rotated dims of each Q/K head.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import gguf
import numpy as np

from ._checkpoint import Checkpoint

HYBRID_MODEL_TYPES = ("granitemoehybrid", "bamba", "nemotron_h", "jamba", "falcon_h1")
_MAMBA = ("mamba", "linear_attention", "M")
_ATTENTION = ("attention", "full_attention", "*")
_MLP = ("mlp", "-")


def is_hybrid(cfg: dict) -> bool:
    """Whether a checkpoint's config.json is one of the hybrids this module exports."""
    return cfg.get("model_type") in HYBRID_MODEL_TYPES


@dataclass
class HybridHParams:
    """What the hybrid exporter needs to know about a checkpoint."""

    arch: str  # "granitehybrid", "nemotron_h" or "jamba"
    model_type: str
    d_model: int
    n_layer: int
    kinds: list[str]  # per layer: "mamba", "attention" or "mlp" (Nemotron-H)
    norm_eps: float
    n_ctx: int
    # Mamba-2 layers
    d_inner: int
    d_state: int
    d_conv: int
    n_head_ssm: int
    n_group: int
    conv_bias: bool
    # attention layers
    n_head: int
    n_head_kv: int
    head_dim: int
    attn_bias: bool
    n_rot: int  # 0: no positional encoding
    rope_base: float
    # FFN
    n_ff: int  # dense FFN width (Granite: shared_intermediate_size; Nemotron-H: intermediate_size)
    ffn_bias: bool = False
    n_expert: int = 0
    n_expert_used: int = 0
    n_ff_exp: int = 0
    # Granite's multipliers
    embedding_scale: float = 1.0
    residual_scale: float = 1.0
    attention_scale: float = 0.0
    logit_scale: float = 1.0
    tie_embeddings: bool = False
    dt_rank: int = 0  # Jamba's Mamba-1 mixers
    moe_layers: tuple[int, ...] = ()  # Jamba: the layers with routed experts
    # Multipliers folded into the embedding and the head (Falcon-H1's µP); a tied head whose
    # fold differs from the embedding's is written as its own tensor.
    embd_fold: float = 1.0
    head_fold: float = 1.0
    ssm_norm: bool = True  # the Mamba-2 mixers have their gated RMSNorm (Falcon-H1: optional)
    mup: dict = field(default_factory=dict)  # Falcon-H1's other multipliers, by config key



def _num(cfg: dict, key: str, default=None):
    v = cfg.get(key, default)
    if isinstance(v, dict) and "__float__" in v:  # transformers 5 writes inf this way
        v = v["__float__"]
    if v is None or isinstance(v, bool):
        raise ValueError(f"config: {key!r} should be a number, found {v!r}")
    return float(v) if isinstance(v, str) else v


def _pos_int(cfg: dict, key: str, default=None) -> int:
    v = cfg.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise ValueError(f"config: {key!r} should be a positive integer, found {v!r}")
    return v


def _layer_kinds(ckpt: Checkpoint, cfg: dict, n_layer: int | None) -> list[str]:
    """Per-layer kinds from layer_types / layers_block_type / hybrid_override_pattern /
    attn_layer_indices, whichever the config has (hub and transformers 5 names alike)."""
    raw = (cfg.get("layers_block_type") or cfg.get("layer_types")
           or cfg.get("hybrid_override_pattern"))
    if raw is None and "attn_layer_indices" in cfg and n_layer:
        attn = set(cfg.get("attn_layer_indices") or [])
        raw = ["attention" if i in attn else "mamba" for i in range(n_layer)]
    if raw is None:
        raise ValueError(f"{ckpt.dir}: the config names no layer types (layer_types, "
                         "layers_block_type, hybrid_override_pattern or attn_layer_indices)")
    kinds = []
    for i, k in enumerate(raw):
        if k in _MAMBA:
            kinds.append("mamba")
        elif k in _ATTENTION:
            kinds.append("attention")
        elif k in _MLP:
            kinds.append("mlp")
        else:
            raise ValueError(f"{ckpt.dir}: layer {i} has type {k!r}, which mambalite does not "
                             "run (Mamba-2, attention and MLP layers are supported; Nemotron-H "
                             "MoE layers are a separate architecture, not yet)")
    if n_layer is not None and len(kinds) != n_layer:
        raise ValueError(f"{ckpt.dir}: {len(kinds)} layer types for {n_layer} layers")
    return kinds


def _check_time_step_limit(ckpt: Checkpoint, cfg: dict) -> None:
    limit = cfg.get("time_step_limit") or (0.0, math.inf)
    lo, hi = (_num({"v": v}, "v") for v in limit)
    if lo > 0.0 or math.isfinite(hi):
        raise ValueError(f"{ckpt.dir}: time_step_limit {list(limit)} clamps dt, which the GGUF "
                         "format cannot express")


def read_hybrid_hparams(ckpt: Checkpoint) -> HybridHParams:
    """Reads a Granite-4.0-H, Bamba, Nemotron-H or Jamba config; ValueError for anything else."""
    cfg = ckpt.config
    mt = cfg.get("model_type")
    if mt == "jamba":
        from ._export_jamba import read_jamba_hparams

        return read_jamba_hparams(ckpt)
    if mt == "falcon_h1":
        from ._export_falcon_h1 import read_falcon_h1_hparams

        return read_falcon_h1_hparams(ckpt)
    D = _pos_int(cfg, "hidden_size")
    _check_time_step_limit(ckpt, cfg)
    if cfg.get("mamba_proj_bias", False) or cfg.get("use_bias", False):
        raise ValueError(f"{ckpt.dir}: mamba_proj_bias is true (in_proj/out_proj biases), which "
                         "llama.cpp's format cannot hold")
    if mt == "nemotron_h":
        kinds = _layer_kinds(ckpt, cfg, None)
        n_head_ssm = _pos_int(cfg, "mamba_num_heads")
        if cfg.get("mlp_hidden_act", "relu2") != "relu2":
            raise ValueError(f"{ckpt.dir}: mlp_hidden_act {cfg['mlp_hidden_act']!r}; Nemotron-H's "
                             "MLP in llama.cpp's format is squared ReLU")
        n_head = _pos_int(cfg, "num_attention_heads")
        return HybridHParams(
            arch="nemotron_h", model_type=mt, d_model=D, n_layer=len(kinds), kinds=kinds,
            norm_eps=float(_num(cfg, "layer_norm_epsilon", 1e-5)),
            n_ctx=_pos_int(cfg, "max_position_embeddings", 4096),
            d_inner=n_head_ssm * _pos_int(cfg, "mamba_head_dim"),
            d_state=_pos_int(cfg, "ssm_state_size"), d_conv=_pos_int(cfg, "conv_kernel", 4),
            n_head_ssm=n_head_ssm, n_group=_pos_int(cfg, "n_groups", 1),
            conv_bias=bool(cfg.get("use_conv_bias", True)), n_head=n_head,
            n_head_kv=_pos_int(cfg, "num_key_value_heads", n_head),
            head_dim=_pos_int(cfg, "head_dim", D // n_head),
            attn_bias=bool(cfg.get("attention_bias", False)), n_rot=0, rope_base=10000.0,
            n_ff=_pos_int(cfg, "intermediate_size"), ffn_bias=bool(cfg.get("mlp_bias", False)),
            tie_embeddings=bool(cfg.get("tie_word_embeddings", False)))
    # granitemoehybrid and bamba share the Mamba-2 keys of the hybrid Granite family.
    n_layer = _pos_int(cfg, "num_hidden_layers")
    kinds = _layer_kinds(ckpt, cfg, n_layer)
    if "mlp" in kinds:
        raise ValueError(f"{ckpt.dir}: MLP-only layers are not part of {mt}")
    if cfg.get("hidden_act", "silu") != "silu":
        raise ValueError(f"{ckpt.dir}: hidden_act {cfg['hidden_act']!r}; only SiLU is supported")
    n_head = _pos_int(cfg, "num_attention_heads")
    head_dim = cfg.get("head_dim") or D // n_head
    n_head_ssm = _pos_int(cfg, "mamba_n_heads")
    d_inner = int(_num(cfg, "mamba_expand", 2) * D)
    d_head = cfg.get("mamba_d_head", "auto")
    if d_head not in ("auto", None) and int(d_head) * n_head_ssm != d_inner:
        raise ValueError(f"{ckpt.dir}: mamba_n_heads {n_head_ssm} x mamba_d_head {d_head} != "
                         f"mamba_expand x hidden_size = {d_inner}")
    rope = cfg.get("rope_parameters") or {}
    use_rope = mt == "bamba" or cfg.get("position_embedding_type") == "rope"
    n_rot = int(head_dim * float(rope.get("partial_rotary_factor", 1.0))) if use_rope else 0
    hp = HybridHParams(
        arch="granitehybrid", model_type=mt, d_model=D, n_layer=n_layer, kinds=kinds,
        norm_eps=float(_num(cfg, "rms_norm_eps", 1e-5)),
        n_ctx=_pos_int(cfg, "max_position_embeddings", 4096),
        d_inner=d_inner, d_state=_pos_int(cfg, "mamba_d_state"),
        d_conv=_pos_int(cfg, "mamba_d_conv", 4), n_head_ssm=n_head_ssm,
        n_group=_pos_int(cfg, "mamba_n_groups", 1),
        conv_bias=bool(cfg.get("mamba_conv_bias", True)), n_head=n_head,
        n_head_kv=_pos_int(cfg, "num_key_value_heads", n_head), head_dim=int(head_dim),
        attn_bias=bool(cfg.get("attention_bias", False)), n_rot=n_rot,
        rope_base=float(rope.get("rope_theta", cfg.get("rope_theta", 10000.0))),
        n_ff=_pos_int(cfg, "shared_intermediate_size" if mt == "granitemoehybrid"
                      else "intermediate_size"),
        ffn_bias=bool(cfg.get("mlp_bias", False)),
        tie_embeddings=bool(cfg.get("tie_word_embeddings", False)))
    if mt == "granitemoehybrid":
        hp.embedding_scale = float(_num(cfg, "embedding_multiplier", 1.0))
        hp.residual_scale = float(_num(cfg, "residual_multiplier", 1.0))
        hp.attention_scale = float(_num(cfg, "attention_multiplier", 1.0))
        hp.logit_scale = float(_num(cfg, "logits_scaling", 1.0))
        hp.n_expert = int(cfg.get("num_local_experts") or 0)
        if hp.n_expert > 0:
            hp.n_expert_used = _pos_int(cfg, "num_experts_per_tok")
            hp.n_ff_exp = _pos_int(cfg, "intermediate_size")
    if n_rot % 2:
        raise ValueError(f"{ckpt.dir}: {n_rot} rotary dims per head; RoPE needs an even number")
    return hp


def permute_rope(w: np.ndarray, n_heads: int, head_dim: int, n_rot: int) -> np.ndarray:
    """Q/K rows (n_heads * head_dim, ...) from transformers' rotate-half layout to llama.cpp's
    adjacent pairs, over the first n_rot rows of each head only (the rest are not rotated)."""
    if n_rot == 0:
        return w
    rest = w.shape[1:]
    h = w.reshape(n_heads, head_dim, *rest).copy()
    rot = h[:, :n_rot].reshape(n_heads, 2, n_rot // 2, *rest).swapaxes(1, 2)
    h[:, :n_rot] = rot.reshape(n_heads, n_rot, *rest)
    return h.reshape(w.shape)


@dataclass
class _Planned:
    name: str
    shape: tuple[int, ...]
    load: Callable[[], np.ndarray]


class _Planner:
    """Collects (GGUF name, numpy shape, loader) for each tensor, checking presence and shape,
    and every problem, so that one error lists them all."""

    def __init__(self, ckpt: Checkpoint) -> None:
        self.ckpt = ckpt
        self.plan: list[_Planned] = []
        self.errors: list[str] = []
        self.used: set[str] = set()

    def add(self, src: str, dst: str, shape: tuple[int, ...], *, accept=None,
            transform: Callable[[np.ndarray], np.ndarray] | None = None,
            optional: bool = False) -> bool:
        if src not in self.ckpt:
            if not optional:
                self.errors.append(f"missing tensor {src!r}")
            return False
        self.used.add(src)
        got = self.ckpt.shape(src)
        if got not in (accept or [shape]):
            self.errors.append(f"tensor {src!r} has shape {list(got)}, expected {list(shape)}")
            return False
        ckpt = self.ckpt

        def load(src=src, tf=transform, shape=shape) -> np.ndarray:
            a = np.asarray(ckpt.load(src), dtype=np.float32)
            return (tf(a) if tf is not None else a).reshape(shape)

        self.plan.append(_Planned(dst, shape, load))
        return True

    def split(self, src: str, dsts: list[tuple[str, tuple[int, ...], Callable]],
              shape: tuple[int, ...]) -> None:
        """One checkpoint tensor into several GGUF tensors (each a slice of it)."""
        if src not in self.ckpt:
            self.errors.append(f"missing tensor {src!r}")
            return
        self.used.add(src)
        if self.ckpt.shape(src) != shape:
            self.errors.append(f"tensor {src!r} has shape {list(self.ckpt.shape(src))}, "
                               f"expected {list(shape)}")
            return
        ckpt = self.ckpt
        for dst, part_shape, pick in dsts:
            def load(src=src, pick=pick) -> np.ndarray:
                return np.ascontiguousarray(pick(np.asarray(ckpt.load(src), dtype=np.float32)))

            self.plan.append(_Planned(dst, part_shape, load))

    def constant(self, dst: str, value: np.ndarray) -> None:
        self.plan.append(_Planned(dst, value.shape, lambda: value))


def _plan_mamba2(pl: _Planner, hp: HybridHParams, p: str, b: str, *,
                 in_proj: Callable[[np.ndarray], np.ndarray] | None = None,
                 out_proj: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
    """A Mamba-2 mixer's tensors; `in_proj` / `out_proj` transform those two (Falcon-H1 folds
    its multipliers there)."""
    D, E, N, K = hp.d_model, hp.d_inner, hp.d_state, hp.d_conv
    H, G = hp.n_head_ssm, hp.n_group
    CD = E + 2 * G * N
    pl.add(p + "in_proj.weight", b + "ssm_in.weight", (E + CD + H, D), transform=in_proj)
    pl.add(p + "conv1d.weight", b + "ssm_conv1d.weight", (CD, K), accept=[(CD, 1, K)])
    if not (hp.conv_bias and pl.add(p + "conv1d.bias", b + "ssm_conv1d.bias", (CD,))):
        pl.constant(b + "ssm_conv1d.bias", np.zeros(CD, dtype=np.float32))
    pl.add(p + "dt_bias", b + "ssm_dt.bias", (H,))
    pl.add(p + "A_log", b + "ssm_a", (H, 1), accept=[(H,)], transform=lambda a: -np.exp(a))
    pl.add(p + "D", b + "ssm_d", (H, 1), accept=[(H,)])
    if hp.ssm_norm:
        pl.add(p + "norm.weight", b + "ssm_norm.weight", (G, E // G), accept=[(E,)])
    elif p + "norm.weight" in pl.ckpt:
        pl.errors.append(f"{p}norm.weight is present but the config says the mixer has no norm")
    pl.add(p + "out_proj.weight", b + "ssm_out.weight", (D, E), transform=out_proj)


def _plan_attention(pl: _Planner, hp: HybridHParams, p: str, b: str) -> None:
    D, hd = hp.d_model, hp.head_dim
    HQ, HKV = hp.n_head * hd, hp.n_head_kv * hd

    def rq(a):
        return permute_rope(a, hp.n_head, hd, hp.n_rot)

    def rk(a):
        return permute_rope(a, hp.n_head_kv, hd, hp.n_rot)

    pl.add(p + "q_proj.weight", b + "attn_q.weight", (HQ, D), transform=rq)
    pl.add(p + "k_proj.weight", b + "attn_k.weight", (HKV, D), transform=rk)
    pl.add(p + "v_proj.weight", b + "attn_v.weight", (HKV, D))
    pl.add(p + "o_proj.weight", b + "attn_output.weight", (D, HQ))
    if hp.attn_bias:
        pl.add(p + "q_proj.bias", b + "attn_q.bias", (HQ,), transform=rq, optional=True)
        pl.add(p + "k_proj.bias", b + "attn_k.bias", (HKV,), transform=rk, optional=True)
        pl.add(p + "v_proj.bias", b + "attn_v.bias", (HKV,), optional=True)
        pl.add(p + "o_proj.bias", b + "attn_output.bias", (D,), optional=True)


def _plan_granite_ffn(pl: _Planner, hp: HybridHParams, p: str, b: str) -> None:
    D, F = hp.d_model, hp.n_ff
    suffix = "_shexp" if hp.n_expert > 0 else ""
    if hp.model_type == "bamba":
        f = p + "feed_forward."
        pl.add(f + "gate_proj.weight", b + "ffn_gate.weight", (F, D))
        pl.add(f + "up_proj.weight", b + "ffn_up.weight", (F, D))
        pl.add(f + "down_proj.weight", b + "ffn_down.weight", (D, F))
        return
    pl.split(p + "shared_mlp.input_linear.weight",
             [(b + f"ffn_gate{suffix}.weight", (F, D), lambda a: a[:F]),
              (b + f"ffn_up{suffix}.weight", (F, D), lambda a: a[F:])], (2 * F, D))
    pl.add(p + "shared_mlp.output_linear.weight", b + f"ffn_down{suffix}.weight", (D, F))
    if hp.n_expert > 0:
        X, FE = hp.n_expert, hp.n_ff_exp
        m = p + "block_sparse_moe."
        router = m + "router.layer.weight" if m + "router.layer.weight" in pl.ckpt else \
            m + "router.weight"
        pl.add(router, b + "ffn_gate_inp.weight", (X, D))
        gate_up = m + "input_linear.weight" if m + "input_linear.weight" in pl.ckpt else \
            m + "experts.gate_up_proj"
        pl.split(gate_up, [(b + "ffn_gate_exps.weight", (X, FE, D), lambda a: a[:, :FE]),
                           (b + "ffn_up_exps.weight", (X, FE, D), lambda a: a[:, FE:])],
                 (X, 2 * FE, D))
        down = m + "output_linear.weight" if m + "output_linear.weight" in pl.ckpt else \
            m + "experts.down_proj"
        pl.add(down, b + "ffn_down_exps.weight", (X, D, FE))


def plan_hybrid(ckpt: Checkpoint, hp: HybridHParams) -> tuple[list[_Planned], int]:
    """The tensors of the GGUF file, in llama.cpp's names, and the vocabulary size."""
    pl = _Planner(ckpt)
    D = hp.d_model
    nemo = hp.arch == "nemotron_h"
    root = "backbone." if nemo else "model."
    embd = root + ("embeddings.weight" if nemo else "embed_tokens.weight")
    if embd not in ckpt:
        raise ValueError(f"{ckpt.dir}: missing the embedding {embd!r}")
    V = ckpt.shape(embd)[0]
    fold_embd = None if hp.embd_fold == 1.0 else (lambda a: a * np.float32(hp.embd_fold))
    pl.add(embd, "token_embd.weight", (V, D), transform=fold_embd)
    for i, kind in enumerate(hp.kinds if hp.arch not in ("jamba", "falcon-h1") else []):
        p, b = f"{root}layers.{i}.", f"blk.{i}."
        if nemo:
            pl.add(p + "norm.weight", b + "attn_norm.weight", (D,))
            mixer = p + "mixer."
            if kind == "mamba":
                _plan_mamba2(pl, hp, mixer, b)
            elif kind == "attention":
                _plan_attention(pl, hp, mixer, b)
            else:
                pl.add(mixer + "up_proj.weight", b + "ffn_up.weight", (hp.n_ff, D))
                pl.add(mixer + "down_proj.weight", b + "ffn_down.weight", (D, hp.n_ff))
                if hp.ffn_bias:
                    pl.add(mixer + "up_proj.bias", b + "ffn_up.bias", (hp.n_ff,), optional=True)
                    pl.add(mixer + "down_proj.bias", b + "ffn_down.bias", (D,), optional=True)
            continue
        pl.add(p + "input_layernorm.weight", b + "attn_norm.weight", (D,))
        if kind == "mamba":
            _plan_mamba2(pl, hp, p + "mamba.", b)
        else:
            _plan_attention(pl, hp, p + "self_attn.", b)
        ffn_norm = "pre_ff_layernorm" if hp.model_type == "bamba" else "post_attention_layernorm"
        pl.add(p + ffn_norm + ".weight", b + "ffn_norm.weight", (D,))
        _plan_granite_ffn(pl, hp, p, b)
    if hp.arch == "jamba":
        from ._export_jamba import plan_jamba

        plan_jamba(pl, hp)
    elif hp.arch == "falcon-h1":
        from ._export_falcon_h1 import plan_falcon_h1

        plan_falcon_h1(pl, hp)
    pl.add(root + ("norm_f.weight" if nemo else "final_layernorm.weight"
                   if hp.model_type in ("bamba", "jamba", "falcon_h1") else "norm.weight"),
           "output_norm.weight", (D,))
    head = "lm_head.weight"
    fold_head = None if hp.head_fold == 1.0 else (lambda a: a * np.float32(hp.head_fold))
    own_head = hp.head_fold != hp.embd_fold  # a tied head still needs its own tensor
    if head in ckpt:
        pl.used.add(head)
        if ckpt.shape(head) != (V, D):
            pl.errors.append(f"tensor {head!r} has shape {list(ckpt.shape(head))}, expected "
                             f"{[V, D]}")
        elif own_head or not np.array_equal(ckpt.load(head), ckpt.load(embd)):
            pl.add(head, "output.weight", (V, D), transform=fold_head)
    elif not hp.tie_embeddings:
        pl.errors.append(f"config says the head is not tied, but {head!r} is missing")
    elif own_head:
        pl.add(embd, "output.weight", (V, D), transform=fold_head)
    unknown = sorted(n for n in ckpt.names() if n not in pl.used)
    if unknown:
        more = f" and {len(unknown) - 8} more" if len(unknown) > 8 else ""
        pl.errors.append(f"unexpected tensors {', '.join(unknown[:8])}{more}")
    if pl.errors:
        listed = "\n  - ".join(pl.errors[:20])
        raise ValueError(f"{ckpt.dir} is not a {hp.model_type} checkpoint this exporter "
                         f"understands:\n  - {listed}")
    return pl.plan, V


def add_hybrid_metadata(writer: gguf.GGUFWriter, hp: HybridHParams) -> None:
    """llama.cpp's keys for `granitehybrid` / `nemotron_h` / `jamba`."""
    if hp.arch == "jamba":
        from ._export_jamba import add_jamba_metadata

        add_jamba_metadata(writer, hp)
        return
    if hp.arch == "falcon-h1":
        from ._export_falcon_h1 import add_falcon_h1_metadata

        add_falcon_h1_metadata(writer, hp)
        return
    L = hp.n_layer
    writer.add_context_length(hp.n_ctx if hp.n_rot or hp.arch == "nemotron_h" else 2**20)
    writer.add_embedding_length(hp.d_model)
    writer.add_block_count(L)
    writer.add_head_count(hp.n_head)
    writer.add_head_count_kv([hp.n_head_kv if k == "attention" else 0 for k in hp.kinds])
    writer.add_key_length(hp.head_dim)
    writer.add_value_length(hp.head_dim)
    writer.add_layer_norm_rms_eps(hp.norm_eps)
    writer.add_ssm_conv_kernel(hp.d_conv)
    writer.add_ssm_inner_size(hp.d_inner)
    writer.add_ssm_state_size(hp.d_state)
    writer.add_ssm_time_step_rank(hp.n_head_ssm)  # llama.cpp keeps the head count here
    writer.add_ssm_group_count(hp.n_group)
    if hp.arch == "nemotron_h":
        writer.add_layer_norm_eps(hp.norm_eps)  # llama.cpp's loader requires this one
        writer.add_feed_forward_length([hp.n_ff if k == "mlp" else 0 for k in hp.kinds])
        return
    writer.add_feed_forward_length(hp.n_ff_exp if hp.n_expert > 0 else hp.n_ff)
    writer.add_rope_scaling_finetuned(hp.n_rot > 0)  # Granite's switch for RoPE
    if hp.n_rot > 0:
        writer.add_rope_dimension_count(hp.n_rot)
        writer.add_rope_freq_base(hp.rope_base)
    if hp.model_type == "granitemoehybrid":
        writer.add_embedding_scale(hp.embedding_scale)
        writer.add_residual_scale(hp.residual_scale)
        writer.add_attention_scale(hp.attention_scale)
        writer.add_logit_scale(hp.logit_scale)
    if hp.n_expert > 0:
        writer.add_expert_count(hp.n_expert)
        writer.add_expert_used_count(hp.n_expert_used)
        writer.add_expert_shared_feed_forward_length(hp.n_ff)


def source_name(ckpt: Checkpoint) -> str:
    return re.sub(r"[^\w.\-]+", "-", Path(ckpt.dir).resolve().name) or "model"
