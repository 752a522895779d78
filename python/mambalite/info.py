"""A human-readable description of a GGUF model file (`mambalite info`)."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from . import _core


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} GB"


_LETTER = {"mamba1": "M", "mamba2": "M", "attention": "A", "ffn": "F", "ffn_relu2": "F",
           "moe": "E"}


def layer_pattern(layers) -> str | None:
    """The layers' mixers as letters (M Mamba, A attention, F MLP-only; A+M for attention and
    Mamba in parallel), or None for a model that is all Mamba. Layers whose FFN follows the mixer
    show only the mixer."""
    by_layer: dict[int, str] = {}
    for layer in layers:
        if layer.parallel:
            by_layer[layer.layer] += "+" + _LETTER[layer.kind]
        else:
            by_layer.setdefault(layer.layer, _LETTER[layer.kind])
    letters = [by_layer[i] for i in sorted(by_layer)]
    if set(letters) == {"M"}:
        return None
    if len(set(letters)) == 1 and len(letters) > 1:
        return f"{letters[0]} in all {len(letters)} layers"
    return " ".join(letters)


def describe(path: str | os.PathLike, *, list_tensors: bool = False) -> str:
    """Architecture, shapes, tensor types, tokenizer and size of a GGUF file.

    Works on any valid GGUF file; for a model mambalite cannot run it says why.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"model file {p} does not exist")
    f = _core.GgufFile(str(p))
    md = f.metadata()
    tensors = f.tensors()
    arch = md.get("general.architecture", "?")
    lines = [f"file:          {p} ({_size(f.file_size)}, GGUF v{f.version})"]
    from .model import DEFAULT_MODEL, default_model_path

    shipped = ""
    try:
        if p.resolve() == default_model_path():
            shipped = f" (mambalite's default model, {DEFAULT_MODEL})"
    except FileNotFoundError:
        pass
    if "general.name" in md or shipped:
        lines.append(f"name:          {md.get('general.name', '?')}{shipped}")
    lines.append(f"architecture:  {arch}")

    from .model import load

    try:
        model = load(p, threads=1)
    except (ValueError, OSError) as e:
        model = None
        lines.append(f"runnable:      no: {' '.join(str(e).split())}")
    if model is not None:
        c = model.config
        lines.append(f"layers:        {c.n_layer}")
        pattern = layer_pattern(model.layers)
        if pattern is not None:
            lines.append(f"layer pattern: {pattern}")
        if c.d_inner:
            if c.n_head:
                variant = f"   heads: {c.n_head} x {c.d_inner // c.n_head}   groups: {c.n_group}"
            else:
                weighted = any(t["name"].endswith("ssm_dt_norm.weight") for t in model.tensors)
                variant = f"   dt_rank: {c.dt_rank}" + (
                    f"   dt/B/C RMSNorm ({'weighted' if weighted else 'FalconMamba'}, eps "
                    f"{c.mixer_eps:g})" if c.dt_b_c_rms else "")
            lines.append(f"d_model:       {c.d_model}   d_inner: {c.d_inner}   d_state: "
                         f"{c.d_state}   d_conv: {c.d_conv}{variant}")
        else:
            lines.append(f"d_model:       {c.d_model}")
        attn = [layer for layer in model.layers if layer.kind == "attention"]
        if attn:
            style = ", rotate-half" if c.rope_neox else ""
            pos = (f"RoPE on {c.n_rot} of {c.head_dim} dims (base {c.rope_base:g}{style})"
                   if c.n_rot else "no positional encoding")
            scale = f"   scale: {c.attn_scale:g}" if c.attn_scale else ""
            lines.append(f"attention:     {attn[0].n_head} heads x {c.head_dim}, "
                         f"{attn[0].n_head_kv} KV heads, {pos}{scale}")
        ffn = [layer for layer in model.layers if layer.kind.startswith("ffn")
               or layer.kind == "moe"]
        if ffn:
            parts = []
            moe = [layer for layer in ffn if layer.kind == "moe"]
            dense = [layer for layer in ffn if layer.kind != "moe"]
            if moe:
                shared = f" + a shared expert of {c.n_ff_shexp}" if c.n_ff_shexp else ""
                where = f" (layers {', '.join(str(m.layer) for m in moe)})" if dense else ""
                parts.append(f"MoE: {c.n_expert} experts of {moe[0].n_ff}, top "
                             f"{c.n_expert_used}{shared}{where}")
            if dense:
                act = "squared ReLU" if dense[0].kind == "ffn_relu2" else "SwiGLU"
                parts.append(f"{act} MLP of {dense[0].n_ff}" + (" elsewhere" if moe else ""))
            lines.append(f"feed-forward:  {'; '.join(parts)}")
        if (c.embedding_scale, c.residual_scale, c.logit_scale) != (1.0, 1.0, 1.0):
            lines.append(f"multipliers:   embedding {c.embedding_scale:g}   residual "
                         f"{c.residual_scale:g}   logits 1/{c.logit_scale:g}")
        lines.append(f"vocab:         {c.vocab_size}   head: "
                     f"{'tied to the embedding' if c.tied_embeddings else 'untied'}"
                     f"   rms eps: {c.norm_eps:g}")
        state = model.new_state()
        if attn:
            per_1k = state.kv_nbytes / model.n_ctx * 1000
            lines.append(f"state size:    SSM {_size(state.ssm_nbytes)} per sequence (constant) "
                         f"+ KV {_size(per_1k)} per 1k tokens (F16; {_size(state.kv_nbytes)} "
                         f"allocated for n_ctx {model.n_ctx})")
        else:
            lines.append(f"state size:    {_size(state.nbytes)} per sequence (constant)")
    n_params = 0
    for t in tensors:
        n = 1
        for d in t["shape"]:
            n *= d
        n_params += n
    lines.append(f"parameters:    {n_params / 1e6:.2f} M")
    by_type = Counter(t["type"] for t in tensors)
    bytes_by_type = Counter()
    for t in tensors:
        bytes_by_type[t["type"]] += t["nbytes"]
    lines.append("tensor types:  " + ", ".join(
        f"{ty} x{n} ({_size(bytes_by_type[ty])})" for ty, n in by_type.most_common()))
    tok_model = md.get("tokenizer.ggml.model")
    if model is not None:
        try:
            tok = model.tokenizer
            lines.append(f"tokenizer:     {tok.kind} ({tok_model}), {tok.vocab_size} tokens, "
                         f"bos {tok.bos_id}, eos {tok.eos_id}, pad {tok.pad_id}")
        except ValueError:
            lines.append("tokenizer:     none (generate from token ids only)")
    elif tok_model is not None:
        lines.append(f"tokenizer:     {tok_model}")
    if list_tensors:
        lines.append("tensors:")
        width = max((len(t["name"]) for t in tensors), default=0)
        for t in tensors:
            shape = "{" + ", ".join(str(d) for d in t["shape"]) + "}"
            lines.append(f"  {t['name']:<{width}}  {t['type']:<5} {shape:<16} "
                         f"{_size(t['nbytes'])}")
    return "\n".join(lines)
