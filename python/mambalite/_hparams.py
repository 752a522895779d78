"""Hyper-parameters of a Mamba checkpoint, whatever its config format (docs/design.md §2).

Formats: transformers (`MambaForCausalLM`, `FalconMambaForCausalLM`, `Mamba2ForCausalLM`),
mamba_ssm (`config.json` with `ssm_cfg`; `ssm_cfg.layer` "Mamba2" selects Mamba-2) and mistral's
Codestral Mamba layout (`params.json`, mamba_ssm keys with a `model.` prefix).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ._checkpoint import Checkpoint


@dataclass
class MambaHParams:
    """What the exporter needs to know about a checkpoint."""

    arch: str  # GGUF architecture: "mamba" (Mamba-1, FalconMamba) or "mamba2"
    source_format: str  # "transformers", "mamba_ssm" or "mistral"
    d_model: int
    n_layer: int
    d_inner: int
    d_state: int
    d_conv: int
    norm_eps: float
    tie_embeddings: bool
    embedding_key: str
    has_conv_bias: bool
    dt_rank: int = 0  # Mamba-1
    dt_b_c_rms: bool = False  # FalconMamba
    mixer_eps: float = 1e-6  # FalconMamba
    n_head: int = 0  # Mamba-2
    n_group: int = 1  # Mamba-2
    key_prefix: str = ""  # prepended to every tensor name ("model." for mistral)


def _int(cfg: dict, key: str, default: int | None = None) -> int:
    v = cfg.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise ValueError(f"config: {key!r} should be a positive integer, found {v!r}")
    return v


def _float(v: object) -> float:
    """A JSON number; transformers 5 writes infinities as {"__float__": "Infinity"}."""
    if isinstance(v, dict) and "__float__" in v:
        v = v["__float__"]
    try:
        return float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"config: expected a number, found {v!r}") from None


def _mamba2_from_tensors(ckpt: Checkpoint, hp: MambaHParams) -> MambaHParams:
    """Fills n_head and d_state from the first layer's tensors where the config is silent,
    and checks them where it is not (A_log has H values; in_proj has 2E + 2GN + H rows)."""
    p = f"{hp.key_prefix}backbone.layers.0.mixer."
    if p + "A_log" in ckpt and p + "in_proj.weight" in ckpt:
        H = ckpt.shape(p + "A_log")[0]
        rows = ckpt.shape(p + "in_proj.weight")[0]
        if hp.n_head == 0:
            hp.n_head = H
        extra = rows - 2 * hp.d_inner - hp.n_head
        if hp.d_state == 0 and extra > 0 and extra % (2 * hp.n_group) == 0:
            hp.d_state = extra // (2 * hp.n_group)
        if H != hp.n_head or rows != 2 * hp.d_inner + 2 * hp.n_group * hp.d_state + hp.n_head:
            raise ValueError(
                f"{ckpt.dir}: the tensors do not match the config: A_log has {H} heads and "
                f"in_proj {rows} rows, but the config gives n_head {hp.n_head}, d_inner "
                f"{hp.d_inner}, n_group {hp.n_group}, d_state {hp.d_state} (expected rows "
                f"2*d_inner + 2*n_group*d_state + n_head; checkpoints with an MLP part in "
                "in_proj, d_ssm < d_inner, are not supported)")
    if hp.n_head <= 0 or hp.d_state <= 0:
        raise ValueError(f"{ckpt.dir}: cannot tell the number of heads or d_state of this "
                         "Mamba-2 checkpoint (config and tensors lack them)")
    if hp.d_inner % hp.n_head or hp.n_head % hp.n_group:
        raise ValueError(f"{ckpt.dir}: n_head {hp.n_head} must divide d_inner {hp.d_inner} "
                         f"and n_group {hp.n_group} must divide n_head")
    return hp


def _from_mamba_ssm(ckpt: Checkpoint, cfg: dict) -> MambaHParams:
    ssm = cfg.get("ssm_cfg") or {}
    layer = ssm.get("layer", "Mamba1")
    if layer not in ("Mamba1", "Mamba2"):
        raise ValueError(f"{ckpt.dir}: ssm_cfg.layer is {layer!r}; mambalite exports Mamba1 and "
                         "Mamba2 layers")
    if not cfg.get("rms_norm", True):
        raise ValueError(f"{ckpt.dir}: rms_norm is false (LayerNorm); Mamba models in "
                         "llama.cpp's format use RMSNorm")
    d_model = _int(cfg, "d_model")
    d_inner = int(ssm.get("expand", 2) * d_model)
    common = dict(
        source_format="mamba_ssm", d_model=d_model, n_layer=_int(cfg, "n_layer"),
        d_inner=d_inner, d_conv=_int(ssm, "d_conv", 4),
        norm_eps=float(cfg.get("norm_epsilon", 1e-5)),
        tie_embeddings=bool(cfg.get("tie_embeddings", True)),
        embedding_key="backbone.embedding.weight", has_conv_bias=bool(ssm.get("conv_bias", True)),
    )
    if layer == "Mamba1":
        dt_rank = ssm.get("dt_rank", "auto")
        return MambaHParams(
            arch="mamba", d_state=_int(ssm, "d_state", 16),
            dt_rank=math.ceil(d_model / 16) if dt_rank == "auto" else _int(ssm, "dt_rank"),
            **common)
    if not ssm.get("rmsnorm", True) or ssm.get("norm_before_gate", False):
        raise ValueError(f"{ckpt.dir}: ssm_cfg has rmsnorm=false or norm_before_gate=true; the "
                         "Mamba-2 format (llama.cpp's and ours) gates first, then RMSNorm")
    if ssm.get("d_ssm") not in (None, d_inner):
        raise ValueError(f"{ckpt.dir}: ssm_cfg.d_ssm = {ssm['d_ssm']} differs from d_inner "
                         f"{d_inner} (an MLP part in in_proj), which the GGUF format cannot hold")
    headdim = _int(ssm, "headdim", 64)
    hp = MambaHParams(arch="mamba2", d_state=_int(ssm, "d_state", 128),
                      n_head=d_inner // headdim, n_group=_int(ssm, "ngroups", 1), **common)
    if d_inner % headdim:
        raise ValueError(f"{ckpt.dir}: headdim {headdim} does not divide d_inner {d_inner}")
    return _mamba2_from_tensors(ckpt, hp)


def _from_mistral(ckpt: Checkpoint, cfg: dict) -> MambaHParams:
    """Codestral Mamba's params.json: dim, n_layers, n_groups, tie_embeddings, ... (mamba_ssm
    defaults for the rest: d_state 128, head_dim 64, expand 2, d_conv 4)."""
    d_model = _int(cfg, "dim")
    d_inner = 2 * d_model
    hp = MambaHParams(
        arch="mamba2", source_format="mistral", d_model=d_model, n_layer=_int(cfg, "n_layers"),
        d_inner=d_inner, d_state=0, d_conv=_int(cfg, "d_conv", 4),
        norm_eps=float(cfg.get("norm_eps", 1e-5)),
        tie_embeddings=bool(cfg.get("tie_embeddings", False)),
        embedding_key="backbone.embedding.weight", has_conv_bias=True,
        n_group=_int(cfg, "n_groups", 1), key_prefix="model.")
    if "model.backbone.embedding.weight" not in ckpt and "backbone.embedding.weight" in ckpt:
        hp.key_prefix = ""
    return _mamba2_from_tensors(ckpt, hp)


def _from_transformers(ckpt: Checkpoint, cfg: dict, model_type: str) -> MambaHParams:
    if cfg.get("use_bias", False):
        raise ValueError(f"{ckpt.dir}: use_bias is true (in_proj/out_proj biases), which "
                         "llama.cpp's Mamba format cannot hold")
    d_model = _int(cfg, "hidden_size")
    common = dict(
        source_format="transformers", d_model=d_model, n_layer=_int(cfg, "num_hidden_layers"),
        d_conv=_int(cfg, "conv_kernel", 4), norm_eps=float(cfg.get("layer_norm_epsilon", 1e-5)),
        tie_embeddings=bool(cfg.get("tie_word_embeddings", True)),
        embedding_key="backbone.embeddings.weight",
        has_conv_bias=bool(cfg.get("use_conv_bias", True)),
    )
    if model_type == "mamba2":
        limit = cfg.get("time_step_limit", (0.0, float("inf")))
        if limit and (_float(limit[0]) > 0.0 or math.isfinite(_float(limit[1]))):
            raise ValueError(f"{ckpt.dir}: time_step_limit {limit} clamps dt, which the GGUF "
                             "format cannot express")
        if not cfg.get("rms_norm", True) or cfg.get("norm_before_gate", False):
            raise ValueError(f"{ckpt.dir}: rms_norm=false or norm_before_gate=true is not the "
                             "Mamba-2 form llama.cpp's format holds (gate, then RMSNorm)")
        d_inner = int(cfg.get("expand", 2) * d_model)
        head_dim = _int(cfg, "head_dim", 64)
        n_head = _int(cfg, "num_heads", d_inner // head_dim)
        if n_head * head_dim != d_inner:
            raise ValueError(f"{ckpt.dir}: num_heads {n_head} x head_dim {head_dim} "
                             f"!= expand x hidden_size = {d_inner}")
        hp = MambaHParams(arch="mamba2", d_inner=d_inner, d_state=_int(cfg, "state_size", 128),
                          n_head=n_head, n_group=_int(cfg, "n_groups", 1), **common)
        return _mamba2_from_tensors(ckpt, hp)
    dt_rank = cfg.get("time_step_rank", "auto")
    # FalconMamba's config carries intermediate_size (use it, not expand, as llama.cpp does).
    d_inner = cfg.get("intermediate_size") or int(cfg.get("expand", 2) * d_model)
    falcon = model_type == "falcon_mamba"
    return MambaHParams(
        arch="mamba", d_inner=int(d_inner), d_state=_int(cfg, "state_size", 16),
        dt_rank=math.ceil(d_model / 16) if dt_rank == "auto" else _int(cfg, "time_step_rank"),
        dt_b_c_rms=falcon, mixer_eps=float(cfg.get("mixer_rms_eps", 1e-6)), **common)


def read_hparams(ckpt: Checkpoint) -> MambaHParams:
    """Reads any supported Mamba config; raises ValueError for anything else."""
    cfg = ckpt.config
    if ckpt.config_name == "params.json":
        return _from_mistral(ckpt, cfg)
    model_type = cfg.get("model_type")
    archs = cfg.get("architectures") or []
    if "ssm_cfg" in cfg or ("d_model" in cfg and "hidden_size" not in cfg):
        return _from_mamba_ssm(ckpt, cfg)
    for mt, cls in (("mamba", "MambaForCausalLM"), ("falcon_mamba", "FalconMambaForCausalLM"),
                    ("mamba2", "Mamba2ForCausalLM")):
        if model_type == mt or cls in archs:
            return _from_transformers(ckpt, cfg, mt)
    raise ValueError(
        f"{ckpt.dir} is not a Mamba checkpoint (model_type {model_type!r}, architectures "
        f"{archs}); expected a transformers Mamba/FalconMamba/Mamba2 model, a mamba_ssm "
        "config.json or a mistral params.json"
    )
